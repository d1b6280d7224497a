package tables_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/transport"
)

// fakeLog is one changelog partition of fakeReader: record i has offset i.
// Once a stream's position reaches cutAt, the records before cutTo are
// deleted (the low watermark moves), as retention or DeleteRecords do.
type fakeLog struct {
	low          int64
	recs         []transport.ChangelogEvent
	cutAt, cutTo int64
}

// fakeReader is a tables.ChangelogReader over in-memory partitions of one
// topic, for tests of the restore logic without Kafka. Safe for concurrent
// use.
type fakeReader struct {
	topic string
	mu    sync.Mutex
	parts []*fakeLog
	open  map[int32]bool
	adds  []int64 // the from offset of each Add
}

func (f *fakeReader) DescribeTopic(_ context.Context, topic string) (transport.TopicInfo, error) {
	if topic != f.topic {
		return transport.TopicInfo{}, fmt.Errorf("%w: %q", transport.ErrUnknownTopic, topic)
	}
	return transport.TopicInfo{ID: "fake-id", Partitions: len(f.parts)}, nil
}

func (f *fakeReader) Watermarks(_ context.Context, topic string, p int32) (int64, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.parts[p]
	return l.low, int64(len(l.recs)), nil
}

func (f *fakeReader) Add(topic string, p int32, from int64) (tables.ChangelogStream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.open[p] {
		return nil, fmt.Errorf("partition %d added twice", p)
	}
	f.open[p] = true
	f.adds = append(f.adds, from)
	return &fakeStream{f: f, log: f.parts[p], next: from}, nil
}

func (f *fakeReader) Remove(_ string, p int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.open, p)
}

type fakeStream struct {
	f    *fakeReader
	log  *fakeLog
	next int64
}

// Fetch hands out up to 50 records at a time, then the end.
func (s *fakeStream) Fetch(ctx context.Context, _ time.Duration) ([]transport.ChangelogEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	l := s.log
	if l.cutTo > l.low && s.next >= l.cutAt {
		l.low = l.cutTo
	}
	if s.next < l.low {
		return nil, fmt.Errorf("%w: at %d, low watermark %d", transport.ErrOffsetOutOfRange, s.next, l.low)
	}
	end := int64(len(l.recs))
	if s.next >= end {
		return []transport.ChangelogEvent{{Offset: end, EOF: true}}, nil
	}
	upto := min(s.next+50, end)
	out := slices.Clone(l.recs[s.next:upto])
	s.next = upto
	return out, nil
}

func fakeEvents(muts []tables.Mutation) []transport.ChangelogEvent {
	out := make([]transport.ChangelogEvent, len(muts))
	for i, m := range muts {
		ev := transport.ChangelogEvent{Offset: int64(i), Key: m.Key}
		if !m.Delete {
			ev.Value = append([]byte{}, m.Value...)
		}
		out[i] = ev
	}
	return out
}

// TestRestoreThroughReader restores from a fake reader: records are read
// into the store, and records deleted under the restore (the stream ends
// with transport.ErrOffsetOutOfRange) make it start over from the new low
// watermark, rebuilding the store to the fold of what is left.
func TestRestoreThroughReader(t *testing.T) {
	t.Parallel()
	muts := mutations(7, "fake", 300)
	f := &fakeReader{topic: tables.ChangelogTopic("fakeapp", "counts"), open: map[int32]bool{}, parts: []*fakeLog{
		{recs: fakeEvents(muts[:120])},
		{recs: fakeEvents(muts), cutAt: 100, cutTo: 200},
	}}
	logger, logs := testLogger(t)
	r, err := tables.NewRestorer(tables.Config{App: "fakeapp", Dir: t.TempDir(), Reader: f, Logger: logger})
	if err != nil {
		t.Fatalf("NewRestorer: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	st, p, err := r.Restore(ctx, "counts", 0)
	if err != nil {
		t.Fatalf("Restore(0): %v", err)
	}
	checkProgress(t, p, 120, true)
	checkState(t, st, fold(nil, muts[:120]))
	closeStore(t, st)

	st, p, err = r.Restore(ctx, "counts", 1)
	if err != nil {
		t.Fatalf("Restore(1): %v", err)
	}
	defer closeStore(t, st)
	if !p.Rebuild || p.From != 200 || st.LastOffset() != 299 {
		t.Errorf("Progress = %+v, last offset %d; want a rebuild from 200 to 299", p, st.LastOffset())
	}
	checkState(t, st, fold(nil, muts[200:]))
	f.mu.Lock()
	defer f.mu.Unlock()
	if want := []int64{0, 0, 200}; !slices.Equal(f.adds, want) || len(f.open) != 0 {
		t.Errorf("Add offsets %v, open %v; want %v and every partition removed", f.adds, f.open, want)
	}
	if !strings.Contains(logs.String(), "changelog offsets out of range during restore; starting over") {
		t.Errorf("no log line about starting over:\n%s", logs.String())
	}
}
