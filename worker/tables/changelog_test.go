package tables_test

import (
	"errors"
	"testing"

	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/transport"
)

func TestChangelogSpecAndRecords(t *testing.T) {
	t.Parallel()
	cl := tables.Changelog{App: "wordcount", Table: "counts"}
	if got, want := cl.Topic(), "wordcount-counts-changelog"; got != want {
		t.Errorf("Topic = %q, want %q", got, want)
	}
	spec := cl.Spec(8, 3)
	if spec.Name != cl.Topic() || spec.Partitions != 8 || spec.ReplicationFactor != 3 {
		t.Errorf("Spec = %+v", spec)
	}
	if spec.Config["cleanup.policy"] != "compact" || spec.Config["delete.retention.ms"] != "86400000" {
		t.Errorf("Spec.Config = %v, want cleanup.policy=compact, delete.retention.ms=86400000", spec.Config)
	}

	recs, err := cl.Records(5, []tables.Mutation{
		{Key: []byte("a"), Value: []byte("1")},
		{Key: []byte("b"), Delete: true, Value: []byte("ignored")},
		{Key: []byte("c")},
		{Key: []byte("d"), Value: []byte{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4", len(recs))
	}
	for i, r := range recs {
		if r.Topic != cl.Topic() || r.Partition != 5 || r.Partition == transport.AnyPartition {
			t.Errorf("record %d goes to %s[%d], want %s[5]", i, r.Topic, r.Partition, cl.Topic())
		}
	}
	if string(recs[0].Value) != "1" {
		t.Errorf("set a: value %q", recs[0].Value)
	}
	if recs[1].Value != nil {
		t.Errorf("delete b: value %q, want nil (tombstone)", recs[1].Value)
	}
	for _, i := range []int{2, 3} {
		if recs[i].Value == nil || len(recs[i].Value) != 0 {
			t.Errorf("record %d: value %#v, want empty and non-nil (not a tombstone)", i, recs[i].Value)
		}
	}

	if _, err := cl.Records(0, []tables.Mutation{{Key: []byte("a")}, {Key: nil}}); !errors.Is(err, tables.ErrEmptyKey) {
		t.Errorf("Records with an empty key: %v, want ErrEmptyKey", err)
	}
	if _, err := cl.Records(-1, nil); err == nil {
		t.Error("Records for partition -1 succeeded")
	}
}
