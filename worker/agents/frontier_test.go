package agents_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/transport"
)

// frontierConfig commits in the round in which anything is done, so that
// after settle() the committed offset is exactly the frontier.
func frontierConfig() agents.Config {
	cfg := testConfig()
	cfg.CommitEvery = 1
	cfg.CommitInterval = time.Hour
	return cfg
}

// expectCommitted checks the consumer's committed offset (-1: none) and the
// owner's Committed notice after the manager settled.
func expectCommitted(t *testing.T, h *harness, a *fakeAgent, part int32, want int64) {
	t.Helper()
	h.settle()
	if got := h.cons.committedAt("in", part); got != want {
		t.Errorf("committed in[%d] = %d, want %d", part, got, want)
	}
	a.pump()
	got, ok := a.committed[tp{"in", part}]
	switch {
	case want < 0 && ok:
		t.Errorf("Committed notice %d before anything was committed", got)
	case want >= 0 && got != want:
		t.Errorf("Committed notice for in[%d] = %d (present %v), want %d", part, got, ok, want)
	}
}

func TestCommitFrontierWithResultsOutOfOrder(t *testing.T) {
	cfg := frontierConfig()
	cfg.MaxBatchEvents = 3
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 9)
	h.settle()
	a := h.open("count", "a", 100) // three batches of three
	batchOf := map[int64]*agents.Batch{}
	for range 3 {
		b := a.nextBatch()
		for _, o := range offsets(b) {
			batchOf[o] = b
		}
	}

	done := map[int64]bool{}
	frontier := func() int64 { // first offset not done; -1 while offset 0 is not
		f := int64(0)
		for done[f] {
			f++
		}
		if f == 0 {
			return -1
		}
		return f
	}
	for _, step := range [][]int64{{4}, {5, 3}, {0, 2}, {8}, {1}, {7}, {6}} {
		var rs []agents.Result
		for _, o := range step {
			rs = append(rs, ok(o))
			done[o] = true
		}
		a.reply(batchOf[step[0]], rs...)
		expectCommitted(t, h, a, 0, frontier())
	}
	if f := frontier(); f != 9 {
		t.Fatalf("model frontier %d, want 9", f)
	}
}

func TestProducedRecordsHoldFrontier(t *testing.T) {
	h := start(t, frontierConfig())
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 3)
	h.settle()
	a := h.open("count", "a", 100)
	b := a.nextBatch()
	out := func(v string) agents.Record {
		return agents.Record{Topic: "out", Key: []byte("k"), Value: []byte(v), Headers: []agents.Header{{Key: "h", Value: []byte(v)}}}
	}
	a.reply(b, ok(0, out("a"), out("b")), ok(1, out("c")), ok(2))
	h.prod.waitCalls(t, 3)
	for i, v := range []string{"a", "b", "c"} {
		r := h.prod.record(i)
		if r.Topic != "out" || string(r.Key) != "k" || string(r.Value) != v || r.Partition != transport.AnyPartition ||
			len(r.Headers) != 1 || r.Headers[0].Key != "h" || string(r.Headers[0].Value) != v {
			t.Errorf("produced %d = %+v, want out/k/%s, any partition, header h=%s", i, r, v, v)
		}
	}
	expectCommitted(t, h, a, 0, -1)
	h.prod.answer(t, 0, nil)
	expectCommitted(t, h, a, 0, -1) // offset 0 still waits for "b"
	h.prod.answer(t, 1, nil)
	expectCommitted(t, h, a, 0, 1) // offset 1 waits for "c"
	h.prod.answer(t, 2, nil)
	expectCommitted(t, h, a, 0, 3)
}

// A failed produce holds the frontier and is produced again; the event is
// not redelivered (TestProduceFailureRetriesRecordsNotEvent has more).
func TestProduceFailureHoldsFrontier(t *testing.T) {
	h := start(t, frontierConfig())
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 2)
	h.settle()
	a := h.open("count", "a", 100)
	b := a.nextBatch()
	a.reply(b, ok(0, agents.Record{Topic: "out", Value: []byte("x")}, agents.Record{Topic: "out", Value: []byte("y")}), ok(1))
	h.prod.waitCalls(t, 2)
	h.prod.answer(t, 0, errors.New("broker says no"))
	expectCommitted(t, h, a, 0, -1)
	h.prod.answer(t, 1, nil) // the other record of the same result made it
	expectCommitted(t, h, a, 0, -1)

	h.prod.waitCalls(t, 3)
	if r := h.prod.record(2); r.Topic != "out" || string(r.Value) != "x" {
		t.Fatalf("produced again: %s %q, want out \"x\" (only the failed record)", r.Topic, r.Value)
	}
	a.noBatch()
	expectCommitted(t, h, a, 0, -1)
	h.prod.answer(t, 2, nil)
	expectCommitted(t, h, a, 0, 2)
}

func TestCommitFailureIsRetried(t *testing.T) {
	cfg := testConfig() // CommitInterval 10ms
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 2)
	h.settle()
	a := h.open("count", "a", 100)
	h.cons.setCommitErr(errors.New("coordinator unavailable"))
	a.okAll(a.nextBatch())
	waitFor(t, wait, func() string { return "a commit attempt" }, func() bool { return h.cons.commitCalls() > 0 })
	a.pump()
	if off, ok := a.committed[tp{"in", 0}]; ok {
		t.Fatalf("Committed notice %d although the commit failed", off)
	}
	h.cons.setCommitErr(nil)
	h.waitCommitted("in", 0, 2)
	waitFor(t, wait, func() string { return "Committed notice 2" }, func() bool {
		a.pump()
		return a.committed[tp{"in", 0}] == 2
	})
}

// transport.Consumer.Commit joins a real failure with a NotAssignedError
// when some partitions were not assigned; the real failure must not be
// taken for success.
func TestCommitFailureJoinedWithNotAssigned(t *testing.T) {
	h := start(t, testConfig())
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 2)
	h.settle()
	a := h.open("count", "a", 100)
	other := "gone"
	h.cons.setCommitErr(errors.Join(
		fmt.Errorf("transport: commit in[0]: %w", kafka.NewError(kafka.ErrRequestTimedOut, "timed out", false)),
		&transport.NotAssignedError{Offsets: []transport.PartitionOffset{{Topic: other, Partition: 3, Offset: 7}}},
	))
	a.okAll(a.nextBatch())
	waitFor(t, wait, func() string { return "a commit attempt" }, func() bool { return h.cons.commitCalls() > 0 })
	h.settle()
	a.pump()
	if off, ok := a.committed[tp{"in", 0}]; ok {
		t.Errorf("Committed notice %d although the commit of in[0] failed", off)
	}
	h.cons.setCommitErr(nil)
	h.waitCommitted("in", 0, 2) // retried
}

// Records the poll loop hands over again (librdkafka re-fetching from an
// earlier position) are not delivered twice, whether or not the frontier
// already released everything before them.
func TestRefetchedRecordsNotDeliveredAgain(t *testing.T) {
	h := start(t, frontierConfig())
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 3)
	h.settle()
	a := h.open("count", "a", 100)
	b := a.nextBatch()
	a.reply(b, ok(0), ok(1))
	expectCommitted(t, h, a, 0, 2)

	h.sendRange("in", 0, 1, 3) // 2 still buffered
	a.noBatch()

	a.reply(b, ok(2))
	expectCommitted(t, h, a, 0, 3)
	h.sendRange("in", 0, 0, 3) // buffer empty now
	a.noBatch()
	h.sendRange("in", 0, 3, 4)
	if got := offsets(a.nextBatch()); !slices.Equal(got, []int64{3}) {
		t.Errorf("offsets = %v, want [3]", got)
	}
}

// TestPositionPassesCommitMarkers: the consumer's position past the last
// record (a transactional topic ends with a commit marker) moves the
// frontier there once every record before it is done, so the committed
// offset reaches the end of the partition; before that it does not. An
// assignment that starts at a marker gets the position and no record.
func TestPositionPassesCommitMarkers(t *testing.T) {
	cfg := frontierConfig()
	cfg.CommitInterval = 10 * time.Millisecond
	h := start(t, cfg)
	in0 := transport.TopicPartition{Topic: "in", Partition: 0}
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 3)
	h.m.Position(in0, 4) // the marker at 3
	h.settle()
	a := h.open("count", "a", 100)
	b := a.nextBatch()
	a.reply(b, ok(0), ok(1))
	expectCommitted(t, h, a, 0, 2)
	a.reply(b, ok(2))
	waitFor(t, wait, func() string { return fmt.Sprintf("committed in[0] = %d, want 4", h.cons.committedAt("in", 0)) },
		func() bool { return h.cons.committedAt("in", 0) == 4 })
	h.sendRange("in", 0, 4, 6)
	a.okAll(a.nextBatch())
	waitFor(t, wait, func() string { return fmt.Sprintf("committed in[0] = %d, want 6", h.cons.committedAt("in", 0)) },
		func() bool { return h.cons.committedAt("in", 0) == 6 })

	h.m.Assigned(tps("in", 1)) // it starts at a marker at 7
	h.m.Position(transport.TopicPartition{Topic: "in", Partition: 1}, 8)
	waitFor(t, wait, func() string { return fmt.Sprintf("committed in[1] = %d, want 8", h.cons.committedAt("in", 1)) },
		func() bool { return h.cons.committedAt("in", 1) == 8 })
}
