package live

import (
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
)

// TestScanMergeEmptyPage: when every entry read sorts after the cut of a
// page that has more (entries of a partition not asked for, dropped), the
// page is empty but not the end: its token continues after the cut.
func TestScanMergeEmptyPage(t *testing.T) {
	m := newScanMerge(2, "w1")
	m.add([]Entry{{Key: []byte("b"), Partition: 0}, {Key: []byte("c"), Partition: 0}}, nil, []int32{0}, nil)
	m.add([]Entry{{Key: []byte("d"), Partition: 1}}, &Entry{Key: []byte("a"), Partition: 5}, []int32{1}, nil)
	r := m.response()
	from, err := DecodePageToken(r.NextPageToken)
	if len(r.Entries) != 0 || err != nil || !from.Set || string(from.Key) != "a" || from.Partition != 5 {
		t.Fatalf("page %v with token %q (%+v, %v); want no entries and a token after a/5", r.Entries, r.NextPageToken, from, err)
	}
}

// TestDecodeWindowKeys: the client's page of a windowed table has plain
// keys and window starts.
func TestDecodeWindowKeys(t *testing.T) {
	start := time.UnixMilli(1700000040000)
	es := []Entry{{Key: tables.WindowKey([]byte("k\x00y"), start), Value: []byte("3")}}
	DecodeWindowKeys(es)
	e := es[0]
	if string(e.Key) != "k\x00y" || !e.WindowStart.Equal(start) || string(e.Value) != "3" {
		t.Errorf("entry %v, want key k\\x00y at %v = 3", e, start)
	}
}
