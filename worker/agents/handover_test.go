package agents_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/monitor"
	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/transport"
)

// Handover: a partition leaving this worker must leave nothing behind that
// could land after its next owner's writes, must commit what it finished,
// and must not be confused with its own next assignment
// (docs/architecture.md, "Handover").

func outRec(v string) agents.Record {
	return agents.Record{Topic: "out", Key: []byte("k"), Value: []byte(v)}
}

// TestRevokeWaitsForProduceAcksPastDeadline: the agents' revoke deadline
// passes while Kafka has not acknowledged an output of the partition yet;
// the revoke waits for it (a record acknowledged after the partition left
// could land after the next owner's), then commits past it.
func TestRevokeWaitsForProduceAcksPastDeadline(t *testing.T) {
	cfg := noCommitConfig()
	cfg.RevokeTimeout = 50 * time.Millisecond
	cfg.MessageTimeout = 5 * time.Second
	h := start(t, cfg)
	a, b := delivered(h, 2)
	a.reply(b, ok(0, outRec("x")), ok(1))
	h.prod.waitCalls(t, 1)

	done := revokeAsync(h, false, 0)
	select {
	case <-done:
		t.Fatalf("Revoked returned while an output of in[0] was not acknowledged (committed %d)", h.cons.committedAt("in", 0))
	case <-time.After(10 * cfg.RevokeTimeout): // well past the agents' deadline
	}
	h.prod.answer(t, 0, nil)
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Revoked did not return once the output was acknowledged")
	}
	if got := h.cons.committedAt("in", 0); got != 2 {
		t.Errorf("committed in[0] = %d, want 2", got)
	}
}

// TestRevokeRetriesFailedFinalCommit: the last commit before a partition
// is handed back fails once; it is tried again within the revoke's time,
// so the next owner does not process everything since the previous commit
// again.
func TestRevokeRetriesFailedFinalCommit(t *testing.T) {
	cfg := noCommitConfig()
	cfg.RevokeTimeout = time.Second
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 3)
	h.settle()
	a := h.open("count", "a", 100)
	// Failed before the results come: the failed commit is the revoke's,
	// or the idle commit's (caught up) if it comes first; either way one
	// fails and one commits.
	h.cons.setFailNext(1)
	a.okAll(a.nextBatch())
	h.settle()
	select {
	case <-revokeAsync(h, false, 0):
	case <-time.After(wait):
		t.Fatal("Revoked did not return")
	}
	if got := h.cons.committedAt("in", 0); got != 3 {
		t.Errorf("committed in[0] = %d after a failed and a retried commit, want 3", got)
	}
	if n := h.cons.commitCalls(); n != 2 {
		t.Errorf("%d commits, want 2 (one failed, one retried)", n)
	}
}

// TestAssignedAgainWhileRevokePending: the consumer stopped waiting for a
// revoke (an agent holds events past the deadline the consumer allows) and
// Kafka handed the partition straight back. The new assignment is served:
// its records are delivered under a new epoch and committed; the old
// one's late results are stale.
func TestAssignedAgainWhileRevokePending(t *testing.T) {
	cfg := noCommitConfig()
	cfg.RevokeTimeout = time.Minute
	h := start(t, cfg)
	a, held := delivered(h, 3)
	old := revokeAsync(h, false, 0)
	waitFor(t, wait, func() string { return "Revoke of in[0]" }, func() bool { a.pump(); return len(a.revokes) == 1 })

	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 3) // consumption starts again at the committed offset
	var bs []*agents.Batch
	n := 0
	waitFor(t, wait, func() string { return "the 3 records of the new assignment delivered" }, func() bool {
		a.pump()
		for _, b := range a.batches {
			bs = append(bs, b)
			n += len(b.Events)
		}
		a.batches = nil
		return n >= 3
	})
	for i, b := range bs {
		if b.Epoch == held.Epoch || b.Events[0].Offset != int64(i) && len(bs) == 3 {
			t.Fatalf("batch %d after the new assignment: epoch %d offsets %v, want a new epoch (old %d)", i, b.Epoch, offsets(b), held.Epoch)
		}
	}
	select {
	case <-old:
	case <-time.After(wait):
		t.Fatal("the old revoke did not finish once the partition was assigned again")
	}
	a.okAll(held) // late, for the old assignment: dropped as stale
	for _, b := range bs {
		a.okAll(b)
	}
	h.settle()
	if !a.alive() {
		t.Fatalf("session ended: %v", a.s.Err())
	}
	select {
	case <-revokeAsync(h, false, 0):
	case <-time.After(wait):
		t.Fatal("Revoked of the new assignment did not return")
	}
	if got := h.cons.committedAt("in", 0); got != 3 {
		t.Errorf("committed in[0] = %d, want 3", got)
	}
}

// TestStoodStillHoldsWritesUntilMembershipConfirmed: after the process
// stood still longer than FreezeGap, nothing more is produced until a
// commit made after the pause succeeds (the group still has this worker's
// partitions); then the held records go out.
func TestStoodStillHoldsWritesUntilMembershipConfirmed(t *testing.T) {
	cfg := freezeConfig()
	h := start(t, cfg)
	a, b := delivered(h, 2)
	h.cons.setFailNext(2) // the coordinator does not answer at first
	h.m.StandStill(time.Minute)
	a.reply(b, ok(0, outRec("x")), ok(1, outRec("y")))
	waitFor(t, wait, func() string { return "two failed membership checks and a third one" }, func() bool {
		return h.cons.commitCalls() >= 3
	})
	h.prod.waitCalls(t, 2)
	if n := h.cons.commitCalls(); n < 3 {
		t.Fatalf("records produced after %d commits, want a successful one (the third) first", n)
	}
	if h.m.HoldingWrites() {
		t.Error("still holding writes after the membership was confirmed")
	}
	// The check committed the partition's starting offset: nothing done yet
	// (the outputs were not acknowledged).
	if got := h.cons.committedAt("in", 0); got != 0 {
		t.Errorf("committed in[0] = %d, want 0", got)
	}
}

// TestStoodStillThenLostProducesNothing: after a pause that cost the
// partitions, the membership check keeps failing; Kafka then reports them
// lost. What the agent answered meanwhile is never produced.
func TestStoodStillThenLostProducesNothing(t *testing.T) {
	cfg := freezeConfig()
	h := start(t, cfg)
	a, b := delivered(h, 2)
	h.cons.setFailNext(1 << 30) // not a member any more
	h.m.StandStill(time.Minute)
	a.reply(b, ok(0, outRec("x")), ok(1, outRec("y")))
	waitFor(t, wait, func() string { return "a membership check" }, func() bool { return h.cons.commitCalls() >= 1 })
	if !h.m.HoldingWrites() {
		t.Fatal("not holding writes after the pause")
	}
	h.m.Lost(tps("in", 0))
	waitFor(t, wait, func() string { return "writes released once the partition was lost" }, func() bool {
		return !h.m.HoldingWrites()
	})
	// A record of a partition assigned afterwards goes out; the producer
	// keeps the order of records, so the held ones were dealt with first.
	h.m.Assigned(tps("in", 1))
	h.send(msg("in", 1, 0, "k", "v"))
	b1 := a.nextBatch()
	a.reply(b1, ok(0, outRec("z")))
	h.prod.waitCalls(t, 1)
	if n, r := h.prod.len(), h.prod.record(0); n != 1 || string(r.Value) != "z" {
		t.Errorf("produced %d records, first %q; want only z: nothing of the partition lost during the pause", n, r.Value)
	}
}

// TestLostPurgesQueuedRecords: a lost assignment withdraws what the
// producer still queues (it must not go out after the next owners'
// writes); an orderly revoke does not.
func TestLostPurgesQueuedRecords(t *testing.T) {
	h := start(t, noCommitConfig())
	h.m.Assigned(tps("in", 0, 1))
	h.settle()
	<-revokeAsync(h, false, 1)
	if n := h.prod.purgeCalls(); n != 0 {
		t.Errorf("%d purges after an orderly revoke, want 0", n)
	}
	<-revokeAsync(h, true, 0)
	if n := h.prod.purgeCalls(); n != 1 {
		t.Errorf("%d purges after the assignment was lost, want 1", n)
	}
}

// TestAssignedButUnknownIsStalled: a partition Kafka assigned to this
// worker that the manager does not serve (its records would be dropped)
// is reported as stalled, and no longer once it is served.
func TestAssignedButUnknownIsStalled(t *testing.T) {
	cfg := testConfig()
	cfg.StallTimeout = 50 * time.Millisecond
	cfg.Monitor = monitor.New("app", "", false)
	h := start(t, cfg)
	h.cons.setAssignment(tps("in", 0, 1))
	h.m.Assigned(tps("in", 0)) // in[1] never reaches the manager
	stalled := func(part int32) bool {
		for _, st := range cfg.Monitor.Stalls() {
			if st.Topic == "in" && st.Partition == part && strings.Contains(st.Reason, "not served") {
				return true
			}
		}
		return false
	}
	waitFor(t, wait, func() string { return fmt.Sprintf("in[1] reported stalled: %+v", cfg.Monitor.Stalls()) },
		func() bool { return stalled(1) })
	if stalled(0) {
		t.Error("in[0], which the manager serves, is reported as not served")
	}
	h.m.Assigned(tps("in", 1))
	waitFor(t, wait, func() string { return "in[1] no longer stalled" }, func() bool { return !stalled(1) })
}

// TestNotFetchedIsStalled: a served partition that the consumer does not
// fetch (librdkafka's statistics show it waiting for its committed offset)
// has no lag librdkafka knows of and nothing waiting; it is reported as
// stalled all the same, with the fetch state, and no longer once the
// consumer fetches it.
func TestNotFetchedIsStalled(t *testing.T) {
	cfg := testConfig()
	cfg.StallTimeout = 50 * time.Millisecond
	cfg.Monitor = monitor.New("app", "", true)
	h := start(t, cfg)
	h.cons.setAssignment(tps("in", 0, 1))
	h.m.Assigned(tps("in", 0, 1))
	h.settle()
	cfg.Monitor.SetLag("in", 0, -1)
	cfg.Monitor.SetFetch("in", 0, monitor.Fetch{State: "offset-query", Next: -1001, Stable: 7, High: 7})
	cfg.Monitor.SetFetch("in", 1, monitor.Fetch{State: "active", Next: 7, Stable: 7, High: 7})
	stalled := func(part int32) bool {
		for _, st := range cfg.Monitor.Stalls() {
			if st.Topic == "in" && st.Partition == part && strings.Contains(st.Reason, "fetch state offset-query") {
				return true
			}
		}
		return false
	}
	waitFor(t, wait, func() string { return fmt.Sprintf("in[0] reported stalled: %+v", cfg.Monitor.Stalls()) },
		func() bool { return stalled(0) })
	if len(cfg.Monitor.Stalls()) != 1 {
		t.Errorf("stalls %+v, want in[0] only (in[1] is fetched and has nothing to do)", cfg.Monitor.Stalls())
	}
	cfg.Monitor.SetFetch("in", 0, monitor.Fetch{State: "active", Next: 7, Stable: 7, High: 7})
	waitFor(t, wait, func() string { return "in[0] no longer stalled" }, func() bool { return !stalled(0) })
}

// TestNoInstanceIsStalled: a partition no agent instance serves is paused,
// so it fetches nothing and librdkafka knows neither its watermarks nor
// its lag; it is stalled all the same once StallTimeout passed, and no
// longer once an instance connects. (TestExactlyOnceKills saw a worker
// whose agents never reached it hold its partitions for minutes without a
// word.)
func TestNoInstanceIsStalled(t *testing.T) {
	cfg := testConfig()
	cfg.StallTimeout = 50 * time.Millisecond
	cfg.Monitor = monitor.New("app", "", true)
	h := start(t, cfg)
	h.cons.setAssignment(tps("in", 0))
	h.m.Assigned(tps("in", 0))
	h.settle()
	cfg.Monitor.SetLag("in", 0, -1)
	cfg.Monitor.SetFetch("in", 0, monitor.Fetch{State: "active", Next: -1001, Stable: -1001, High: -1001})
	stalled := func() bool {
		for _, st := range cfg.Monitor.Stalls() {
			if st.Topic == "in" && st.Partition == 0 && strings.Contains(st.Reason, "no agent instance is connected") {
				return true
			}
		}
		return false
	}
	waitFor(t, wait, func() string { return fmt.Sprintf("in[0] reported stalled: %+v", cfg.Monitor.Stalls()) }, stalled)
	h.open("count", "a", 10)
	waitFor(t, wait, func() string { return fmt.Sprintf("in[0] no longer stalled: %+v", cfg.Monitor.Stalls()) },
		func() bool { return !stalled() })
}

// TestStoreCheckpointStopsAtForeignRecords: records this worker did not
// write land among its own changelog records (a previous owner's late
// writes). The store gets this worker's mutations, but its checkpoint
// stays before the foreign records, so a restore from it reads them; a
// checkpoint past them would skip them for good.
func TestStoreCheckpointStopsAtForeignRecords(t *testing.T) {
	r := newFakeRestorer(t)
	close(r.release)
	cfg := tableConfig(r, "")
	cfg.CommitInterval = time.Hour
	cfg.CommitEvery = 1 << 30
	h := start(t, cfg)
	a := h.open("count", "a", 100)
	h.m.Assigned(tps("in", 0))
	h.send(msg("in", 0, 0, "a", ""), msg("in", 0, 1, "b", ""), msg("in", 0, 2, "c", ""))
	b := a.nextBatch()
	a.reply(b, set(0, "a", "1"))
	h.prod.waitCalls(t, 1)
	h.prod.answer(t, 0, nil)                         // changelog offset 0: ours
	h.prod.skipOffsets("app-counts-changelog", 0, 3) // offsets 1..3: another writer's
	a.reply(b, set(1, "b", "1"), set(2, "c", "1"))
	h.prod.waitCalls(t, 3)
	h.prod.answer(t, 1, nil) // offset 4
	h.prod.answer(t, 2, nil) // offset 5
	h.settle()
	select {
	case <-revokeAsync(h, false, 0): // flushes the acknowledged mutations to the store
	case <-time.After(wait):
		t.Fatal("Revoked did not return")
	}
	st, err := tables.Open(r.dir, "counts", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := st.LastOffset(); got != 0 {
		t.Errorf("store checkpoint = %d, want 0 (before the foreign records at 1..3)", got)
	}
	for _, k := range []string{"a", "b", "c"} {
		if v, ok, err := st.Get([]byte(k)); err != nil || !ok || string(v) != "1" {
			t.Errorf("store %s = %q (found %v, %v), want 1", k, v, ok, err)
		}
	}
}

// gatedConsumer is a fakeConsumer whose commits can be held on a gate or
// failed with a fixed error.
type gatedConsumer struct {
	*fakeConsumer
	gmu     sync.Mutex
	gate    chan struct{}
	err     error
	calls   int
	entered chan struct{} // a commit began
}

func newGatedConsumer() *gatedConsumer {
	return &gatedConsumer{fakeConsumer: newFakeConsumer(), entered: make(chan struct{}, 16)}
}

func (g *gatedConsumer) Commit(o []transport.PartitionOffset) error {
	g.gmu.Lock()
	gate, err := g.gate, g.err
	g.calls++
	g.gmu.Unlock()
	g.entered <- struct{}{}
	if gate != nil {
		<-gate
	}
	if err != nil {
		return err
	}
	return g.fakeConsumer.Commit(o)
}

func (g *gatedConsumer) n() int {
	g.gmu.Lock()
	defer g.gmu.Unlock()
	return g.calls
}

func (g *gatedConsumer) set(gate chan struct{}, err error) {
	g.gmu.Lock()
	defer g.gmu.Unlock()
	g.gate, g.err = gate, err
}

func startGated(t *testing.T, cfg agents.Config, g *gatedConsumer) *harness {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	h := &harness{t: t, cons: g.fakeConsumer, prod: &fakeProducer{}}
	h.m = agents.New(cfg, h.prod)
	h.m.Attach(g)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.m.Run(ctx) }()
	go func() { // drain commit notices nobody waits for
		for range g.entered {
		}
	}()
	t.Cleanup(func() {
		g.set(nil, nil)
		cancel()
		<-done
	})
	return h
}

// TestFenceNotAssignedIsNotConfirmation: after a pause, the membership
// check gets only "not assigned" back (the consumer already forgot the
// partitions it is about to report lost). That proves nothing: the held
// records stay held.
func TestFenceNotAssignedIsNotConfirmation(t *testing.T) {
	cfg := freezeConfig()
	g := newGatedConsumer()
	h := startGated(t, cfg, g)
	a, b := delivered(h, 2)
	g.set(nil, &transport.NotAssignedError{Offsets: []transport.PartitionOffset{{Topic: "in", Partition: 0}}})
	h.m.StandStill(time.Minute)
	a.reply(b, ok(0, outRec("x")), ok(1, outRec("y")))
	waitFor(t, wait, func() string { return "three membership checks" }, func() bool { return g.n() >= 3 })
	if n := h.prod.len(); n > 0 || !h.m.HoldingWrites() {
		t.Errorf("%d records produced (holding: %v) after checks that said only 'not assigned', want 0 and held", n, h.m.HoldingWrites())
	}
}

// TestSecondPauseDuringFence: the process stands still again while the
// membership check's commit is in flight; that commit's success may
// predate the second pause, so the check runs again before anything is
// produced.
func TestSecondPauseDuringFence(t *testing.T) {
	cfg := freezeConfig()
	g := newGatedConsumer()
	h := startGated(t, cfg, g)
	a, b := delivered(h, 1)
	gate := make(chan struct{})
	g.set(gate, nil)
	h.m.StandStill(time.Minute)
	a.reply(b, ok(0, outRec("x")))
	waitFor(t, wait, func() string { return "a membership check" }, func() bool { return g.n() >= 1 })
	before := h.m.GapSeenAt()
	h.m.StandStill(time.Minute) // again, with the check in flight
	waitFor(t, wait, func() string { return "the pulse to see the second pause" }, func() bool { return h.m.GapSeenAt() != before })
	g.set(nil, nil)
	close(gate)
	h.prod.waitCalls(t, 1)
	if n := g.n(); n < 2 {
		t.Errorf("produced after %d membership checks, want a second one after the second pause", n)
	}
}

// TestRevokingPartitionDoesNotRewrite: a failed output waits for its
// backoff when the partition's revoke begins. It is not produced again by
// this worker (a write handed to Kafka after the revoke drained could land
// after the next owner's); the event is left to the next owner.
func TestRevokingPartitionDoesNotRewrite(t *testing.T) {
	cfg := noCommitConfig()
	cfg.RevokeTimeout = 50 * time.Millisecond
	cfg.RetryBackoffMin = 100 * time.Millisecond
	cfg.RetryBackoffMax = 100 * time.Millisecond
	h := start(t, cfg)
	a, b := delivered(h, 3)
	a.reply(b, ok(0), ok(1), ok(2, outRec("x")))
	h.prod.waitCalls(t, 1)
	h.prod.answer(t, 0, kafkaErr(kafka.ErrMsgTimedOut))
	h.cons.setFailNext(3) // the final commit takes a few tries, past the backoff
	select {
	case <-revokeAsync(h, false, 0):
	case <-time.After(wait):
		t.Fatal("Revoked did not return")
	}
	if n := h.prod.len(); n != 1 {
		t.Errorf("%d produces, want 1: the failed output was produced again while its partition was leaving", n)
	}
	if got := h.cons.committedAt("in", 0); got != 2 {
		t.Errorf("committed in[0] = %d, want 2 (offset 2 is not done)", got)
	}
}

// TestFlushDoesNotWaitForCommit: a commit stuck at the group coordinator
// does not keep acknowledged table mutations out of the store: their
// bytes are released on schedule, and delivery goes on under the cap.
func TestFlushDoesNotWaitForCommit(t *testing.T) {
	r := newFakeRestorer(t)
	close(r.release)
	cfg := tableConfig(r, "")
	cfg.InflightBytes = 1000
	g := newGatedConsumer()
	h := startGated(t, cfg, g)
	a := h.open("count", "a", 100)
	h.m.Assigned(tps("in", 0))
	gate := make(chan struct{})
	g.set(gate, nil)
	ref := func() *agents.Batch {
		return &agents.Batch{PartitionRef: agents.PartitionRef{Topic: "in", Partition: 0, Epoch: a.epoch[tp{"in", 0}]}}
	}
	h.send(msg("in", 0, 0, "k0", "x"))
	a.takeEvents(1)
	a.reply(ref(), set(0, "k0", "v"))
	h.prod.waitCalls(t, 1)
	h.prod.answer(t, 0, nil)
	waitFor(t, wait, func() string { return "a commit in flight" }, func() bool { return g.n() >= 1 })
	h.send(msg("in", 0, 1, "k1", "x"))
	a.takeEvents(1)
	a.reply(ref(), set(1, "k1", string(make([]byte, 950))))
	h.prod.waitCalls(t, 2)
	h.prod.answer(t, 1, nil) // now near the cap, until the mutation reaches the store
	h.send(msg("in", 0, 2, "k2", "x"))
	a.takeEvents(1) // delivered: the held bytes were released without the commit
	close(gate)
}

// freezeConfig commits only on revoke and suspects a pause of 200 ms.
func freezeConfig() agents.Config {
	cfg := noCommitConfig()
	cfg.FreezeGap = 200 * time.Millisecond
	return cfg
}

// delivered assigns in[0], sends its offsets 0..n-1 and returns instance
// "a" holding their batch.
func delivered(h *harness, n int64) (*fakeAgent, *agents.Batch) {
	h.t.Helper()
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, n)
	h.settle()
	a := h.open("count", "a", 100)
	return a, a.nextBatch()
}

// TestStoodStillPurgesQueuedRecords: when the pulse sees the process stood
// still, what the producer still queues is withdrawn at once — librdkafka
// could send it before its timeout scan fails it, after the partitions'
// next owners wrote (TestChurnFreezeAndKill saw such a late record).
func TestStoodStillPurgesQueuedRecords(t *testing.T) {
	h := start(t, freezeConfig())
	h.settle()
	before := h.prod.purgeCalls()
	h.m.StandStill(time.Minute)
	waitFor(t, wait, func() string { return "a purge after the pause" }, func() bool { return h.prod.purgeCalls() > before })
}

// TestNewAssignmentResumesAStalePause: a pause meant for a partition's
// previous assignment reached the consumer after the partition was
// assigned again (the consumer gave up waiting for the revoke; the manager
// paused the leaving partition after that). The new assignment, with an
// instance to deliver to, resumes it: it does not assume the consumer has
// it resumed (it would then never resume it, and the partition would fetch
// nothing, for good).
func TestNewAssignmentResumesAStalePause(t *testing.T) {
	h := start(t, noCommitConfig())
	h.open("count", "a", 100)
	if err := h.cons.Pause(tps("in", 0)); err != nil { // the stale pause
		t.Fatal(err)
	}
	h.m.Assigned(tps("in", 0))
	h.settle()
	if h.cons.isPaused("in", 0) {
		t.Fatalf("in[0] still paused in the consumer after its new assignment; consumer calls %v", h.cons.log)
	}
}
