package agents_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/tables/live"
)

// seed writes entries (key, value, ...) to a store of r's directory.
func seed(t *testing.T, r *fakeRestorer, partition int32, kv ...string) {
	t.Helper()
	st, err := tables.Open(r.dir, "counts", partition)
	if err != nil {
		t.Fatal(err)
	}
	var muts []tables.Mutation
	for i := 0; i < len(kv); i += 2 {
		muts = append(muts, tables.Mutation{Key: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	if err := st.Apply(muts, int64(len(muts)-1)); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

func entriesString(es []live.Entry) string {
	s := ""
	for _, e := range es {
		s += fmt.Sprintf("%s/%d=%s ", e.Key, e.Partition, e.Value)
	}
	return s
}

// TestTableReads: Get and Scan read through the overlay (acknowledged
// mutations not yet in the store are visible), Scan merges partitions in
// (key, partition) order and pages from any position, unowned partitions
// are ErrNotOwned.
func TestTableReads(t *testing.T) {
	r := newFakeRestorer(t)
	seed(t, r, 0, "a", "1", "b", "2", "c", "3")
	seed(t, r, 1, "b", "x", "d", "4")
	close(r.release)
	cfg := tableConfig(r, "")
	cfg.CommitInterval = time.Hour // nothing leaves the overlay during the test
	cfg.CommitEvery = 1 << 30
	h := start(t, cfg)
	a := h.open("count", "a", 100)
	h.m.Assigned(append(tps("in", 0), tps("in", 1)...))
	waitFor(t, wait, func() string { return "restores to finish" }, func() bool {
		h.settle()
		return h.m.Recovering() == 0
	})
	ctx := context.Background()

	if v, found, err := h.m.TableGet(ctx, "counts", 0, []byte("a")); err != nil || !found || string(v) != "1" {
		t.Fatalf("Get a = %q/%v/%v, want 1", v, found, err)
	}
	if _, _, err := h.m.TableGet(ctx, "counts", 2, []byte("a")); !errors.Is(err, live.ErrNotOwned) {
		t.Fatalf("Get of partition 2: err %v, want ErrNotOwned", err)
	}

	// An event of in[1] the agent holds: the worker is not caught up, so
	// no idle commit applies the overlay to the store during the test.
	h.send(msg("in", 1, 0, "zz", "x"))
	_ = a.nextBatch()

	// a=10, delete c, bb=new (each by an event of its key), acknowledged
	// but not applied.
	for i, mu := range []agents.Mutation{
		{Table: "counts", Key: []byte("a"), Value: []byte("10")},
		{Table: "counts", Key: []byte("c"), Delete: true},
		{Table: "counts", Key: []byte("bb"), Value: []byte("new")},
	} {
		h.send(msg("in", 0, int64(i), string(mu.Key), "x"))
		b := a.nextBatch()
		a.reply(b, agents.Result{Offset: int64(i), Status: agents.StatusOK, Mutations: []agents.Mutation{mu}})
		h.prod.waitCalls(t, i+1)
		h.prod.answer(t, i, nil)
	}
	h.settle()
	if v, found, err := h.m.TableGet(ctx, "counts", 0, []byte("a")); err != nil || !found || string(v) != "10" {
		t.Fatalf("Get a after ack = %q/%v/%v, want 10 from the overlay", v, found, err)
	}
	if v, found, err := h.m.TableGet(ctx, "counts", 0, []byte("c")); err != nil || found {
		t.Fatalf("Get c after delete = %q/%v/%v, want not found", v, found, err)
	}
	st0 := r.store(0)
	if st0.Partition() != 0 {
		st0 = r.store(1)
	}
	if v, _, _ := st0.Get([]byte("a")); string(v) != "1" {
		t.Fatalf("store has a=%q, want 1 (the test needs the overlay unapplied)", v)
	}

	scan := func(ctx context.Context, table string, prefix []byte, from live.ScanFrom, limit int, only []int32) ([]live.Entry, bool, []int32, []int32, error) {
		r, err := h.m.TableScan(ctx, table, prefix, from, limit, only)
		return r.Entries, r.More, r.Partitions, r.Skipped, err
	}
	want := "a/0=10 b/0=2 b/1=x bb/0=new d/1=4 "
	all, more, parts, _, err := scan(ctx, "counts", nil, live.ScanFrom{}, 100, nil)
	if err != nil || more || entriesString(all) != want || len(parts) != 2 {
		t.Fatalf("Scan = %q more=%v parts=%v err=%v, want %q", entriesString(all), more, parts, err, want)
	}
	for _, size := range []int{1, 2, 3} {
		var got []live.Entry
		from := live.ScanFrom{}
		for {
			page, more, _, _, err := scan(ctx, "counts", nil, from, size, nil)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page...)
			if !more {
				break
			}
			last := page[len(page)-1]
			from = live.ScanFrom{Set: true, Key: last.Key, Partition: last.Partition}
		}
		if entriesString(got) != want {
			t.Errorf("pages of %d: %q, want %q", size, entriesString(got), want)
		}
	}
	if got, _, _, _, _ := scan(ctx, "counts", []byte("b"), live.ScanFrom{}, 100, nil); entriesString(got) != "b/0=2 b/1=x bb/0=new " {
		t.Errorf("prefix b: %q", entriesString(got))
	}
	if got, _, parts, _, _ := scan(ctx, "counts", nil, live.ScanFrom{}, 100, []int32{1, 5}); entriesString(got) != "b/1=x d/1=4 " || !slices.Equal(parts, []int32{1}) {
		t.Errorf("only partitions 1 and 5: %q from %v, want b/1=x d/1=4 from [1]", entriesString(got), parts)
	}

	stats, err := h.m.TableStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 2 || stats[0].Keys != 3 || stats[1].Keys != 2 {
		t.Errorf("TableStats = %+v, want partition 0 with 3 keys, partition 1 with 2", stats)
	}
}
