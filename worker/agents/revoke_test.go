package agents_test

import (
	"slices"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/agents"
)

// revokeAsync calls Revoked (or Lost) the way the consumer's rebalance
// callback does; the returned channel is closed when it returns.
func revokeAsync(h *harness, lost bool, part int32) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		if lost {
			h.m.Lost(tps("in", part))
		} else {
			h.m.Revoked(tps("in", part))
		}
		close(done)
	}()
	return done
}

func returned(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// noCommitConfig commits only when a partition is revoked.
func noCommitConfig() agents.Config {
	cfg := testConfig()
	cfg.CommitInterval = time.Hour
	cfg.CommitEvery = 1 << 30
	return cfg
}

func TestRevokedWaitsForInFlightThenCommits(t *testing.T) {
	cfg := noCommitConfig()
	cfg.RevokeTimeout = 10 * time.Second
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0, 1))
	h.sendRange("in", 0, 0, 3)
	h.settle()
	a := h.open("count", "a", 100)
	held := a.nextBatch()
	a.reply(held, ok(0))

	done := revokeAsync(h, false, 0)
	waitFor(t, wait, func() string { return "Revoke of in[0]" }, func() bool { a.pump(); return len(a.revokes) == 1 })
	if r := a.revokes[0]; r.Partition != 0 || r.Epoch != held.Epoch || time.Until(r.Deadline) > cfg.RevokeTimeout {
		t.Errorf("Revoke = %+v, want in[0] epoch %d, deadline within %v", r, held.Epoch, cfg.RevokeTimeout)
	}
	// Delivery stopped; in-flight work may finish.
	h.sendRange("in", 0, 3, 5)
	a.noBatch()
	if returned(done) {
		t.Fatalf("Revoked returned with events in flight")
	}
	a.reply(held, ok(1))
	h.settle()
	if returned(done) || !a.alive() {
		t.Fatalf("Revoked returned early (%v) or the session ended (%v)", returned(done), a.s.Err())
	}
	a.reply(held, ok(2))
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Revoked did not return once in[0] was quiet")
	}
	if got := h.cons.committedAt("in", 0); got != 3 {
		t.Errorf("committed in[0] = %d, want 3", got)
	}
	// Gone from this worker: later records are not delivered.
	h.sendRange("in", 0, 5, 6)
	a.noBatch()
	if ai := h.info("count"); ai.AssignedCount != 1 {
		t.Errorf("AssignedCount = %d, want 1 (in[1])", ai.AssignedCount)
	}
	// in[1] is unaffected.
	h.sendRange("in", 1, 0, 1)
	if b := a.nextBatch(); b.Partition != 1 {
		t.Errorf("batch for in[%d], want in[1]", b.Partition)
	}
}

func TestRevokedGivesUpAtDeadline(t *testing.T) {
	cfg := noCommitConfig()
	cfg.RevokeTimeout = 200 * time.Millisecond
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 3)
	h.settle()
	a := h.open("count", "a", 100)
	held := a.nextBatch()
	a.reply(held, ok(0))
	h.settle()

	began := time.Now()
	done := revokeAsync(h, false, 0)
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Revoked did not return after RevokeTimeout")
	}
	if took := time.Since(began); took < cfg.RevokeTimeout {
		t.Errorf("Revoked returned after %v, before RevokeTimeout %v", took, cfg.RevokeTimeout)
	}
	if got := h.cons.committedAt("in", 0); got != 1 {
		t.Errorf("committed in[0] = %d, want the frontier 1", got)
	}
	// Late results are stale; the session lives on.
	a.reply(held, ok(1), ok(2))
	h.settle()
	if got := h.info("count").StaleDropped; got != 2 || !a.alive() {
		t.Errorf("StaleDropped = %d (session alive %v), want 2", got, a.alive())
	}
	if got := h.info("count").Instances[0].InFlight; got != 0 {
		t.Errorf("instance InFlight = %d after its partition left, want 0", got)
	}
}

func TestLostDoesNotCommit(t *testing.T) {
	h := start(t, noCommitConfig())
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 3)
	h.settle()
	a := h.open("count", "a", 100)
	held := a.nextBatch()
	a.reply(held, ok(0), ok(1))
	h.settle()

	select {
	case <-revokeAsync(h, true, 0):
	case <-time.After(wait):
		t.Fatal("Lost did not return")
	}
	if n := h.cons.commitCalls(); n != 0 {
		t.Errorf("%d commits for a lost partition, want none", n)
	}
	h.sendRange("in", 0, 3, 4)
	a.noBatch()
	if len(a.revokes) != 1 {
		t.Errorf("revokes = %+v, want one for in[0]", a.revokes)
	}
	a.reply(held, ok(2))
	h.settle()
	if got := h.info("count").StaleDropped; got != 1 {
		t.Errorf("StaleDropped = %d, want 1", got)
	}
	if n := h.cons.commitCalls(); n != 0 {
		t.Errorf("%d commits after Lost, want none", n)
	}
}

// A partition revoked and assigned again starts afresh, with a new epoch.
func TestReassignedAfterRevoke(t *testing.T) {
	h := start(t, noCommitConfig())
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 2)
	h.settle()
	a := h.open("count", "a", 100)
	first := a.nextBatch()
	a.okAll(first)
	h.settle()
	<-revokeAsync(h, false, 0)
	if got := h.cons.committedAt("in", 0); got != 2 {
		t.Fatalf("committed = %d, want 2", got)
	}
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 2, 3)
	b := a.nextBatch()
	if b.Epoch <= first.Epoch || offsets(b)[0] != 2 {
		t.Errorf("after reassignment: epoch %d offsets %v; want epoch above %d, [2]", b.Epoch, offsets(b), first.Epoch)
	}
	if h.cons.isPaused("in", 0) {
		t.Errorf("in[0] paused after reassignment")
	}
}

func TestRevokedKeyOrderedPartition(t *testing.T) {
	cfg := keyConfig()
	cfg.CommitInterval = time.Hour
	cfg.CommitEvery = 1 << 30
	cfg.RevokeTimeout = 10 * time.Second
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0))
	for off := int64(0); off < 10; off++ {
		h.m.Message(msg("in", 0, off, string(rune('a'+off%5)), "v"))
	}
	h.settle()
	x := h.open("count", "x", 100)
	y := h.open("count", "y", 100)
	h.settle()
	// Whatever each got, it holds it until the revoke.
	hx, hy := x.takeBatches(), y.takeBatches()
	done := revokeAsync(h, false, 0)
	waitFor(t, wait, func() string { return "Revoke to both instances" }, func() bool {
		x.pump()
		y.pump()
		return len(x.revokes) == 1 && len(y.revokes) == 1
	})
	for _, b := range hx {
		x.okAll(b)
	}
	h.settle()
	if len(hy) > 0 && returned(done) {
		t.Fatalf("Revoked returned while y still had events in flight")
	}
	for _, b := range hy {
		y.okAll(b)
	}
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Revoked did not return")
	}
	n := 0
	for _, b := range append(hx, hy...) {
		n += len(b.Events)
	}
	if got := h.cons.committedAt("in", 0); n == 10 && got != 10 {
		t.Errorf("committed %d, want 10", got)
	}
}

// A RevokeAck says the instance holds no more work for the partition (the
// SDKs drop queued events on Revoke): the Kafka revoke finishes at once,
// commits the frontier, and the events the instance gave back without a
// result are not committed here, so the next owner consumes them again.
// Before the fix the revoke waited the whole RevokeTimeout.
func TestRevokedReturnsOnRevokeAck(t *testing.T) {
	tests := []struct {
		name string
		cfg  func() agents.Config
	}{
		{name: "partition ordering", cfg: noCommitConfig},
		{name: "key ordering", cfg: func() agents.Config {
			cfg := keyConfig()
			cfg.CommitInterval = time.Hour
			cfg.CommitEvery = 1 << 30
			return cfg
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg()
			cfg.RevokeTimeout = time.Minute // far beyond wait: only the ack can end the revoke
			h := start(t, cfg)
			h.m.Assigned(tps("in", 0))
			h.sendRange("in", 0, 0, 3)
			h.settle()
			a := h.open("count", "a", 100)
			evs := a.takeEvents(3)
			if got := eventOffsets(evs); !slices.Equal(got, span(0, 3)) {
				t.Fatalf("delivered %v, want [0 1 2]", got)
			}
			epoch := a.epoch[tp{"in", 0}]
			a.s.Results(&agents.Results{Topic: "in", Partition: 0, Epoch: epoch, Results: []agents.Result{ok(0)}})
			h.settle()

			done := revokeAsync(h, false, 0)
			waitFor(t, wait, func() string { return "Revoke of in[0]" }, func() bool { a.pump(); return len(a.revokes) == 1 })
			if returned(done) {
				t.Fatalf("Revoked returned with events in flight and no RevokeAck")
			}
			// The instance drops 1 and 2 (queued) and acknowledges.
			a.s.RevokeAck(agents.PartitionRef{Topic: "in", Partition: 0, Epoch: epoch})
			select {
			case <-done:
			case <-time.After(wait):
				t.Fatalf("Revoked did not return within %v of the RevokeAck (RevokeTimeout %v)", wait, cfg.RevokeTimeout)
			}
			if got := h.cons.committedAt("in", 0); got != 1 {
				t.Errorf("committed in[0] = %d, want 1 (the given-back events are the next owner's)", got)
			}
			if !a.alive() {
				t.Errorf("session ended: %v", a.s.Err())
			}
			if got := h.info("count").Instances[0].InFlight; got != 0 {
				t.Errorf("instance InFlight = %d after its partition left, want 0", got)
			}
			// Anything the instance still sends for that epoch is stale.
			a.s.Results(&agents.Results{Topic: "in", Partition: 0, Epoch: epoch, Results: []agents.Result{ok(1)}})
			h.settle()
			if !a.alive() {
				t.Errorf("a late result ended the session: %v", a.s.Err())
			}
		})
	}
}
