package agents_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/agents"
)

// owners maps each partition of topic "in" to the instances that hold it
// according to the manager.
func (h *harness) owners(agent string) map[int32][]string {
	out := map[int32][]string{}
	for _, in := range h.info(agent).Instances {
		for _, p := range in.Partitions {
			out[p.Partition] = append(out[p.Partition], in.InstanceID)
		}
	}
	return out
}

// waitStable waits until the agents' own view (Assign minus Revoke) covers
// every partition of "in" exactly once and the loads are want (sorted).
func waitStable(t *testing.T, h *harness, parts int, want []int, as ...*fakeAgent) {
	t.Helper()
	view := func() (map[int32][]string, []int) {
		byPart := map[int32][]string{}
		var loads []int
		for _, a := range as {
			a.pump()
			own := a.ownedParts()
			loads = append(loads, len(own))
			for _, p := range own {
				byPart[p] = append(byPart[p], a.instance)
			}
		}
		slices.Sort(loads)
		return byPart, loads
	}
	waitFor(t, wait, func() string {
		byPart, loads := view()
		return fmt.Sprintf("%d partitions owned once with loads %v; have %v, loads %v", parts, want, byPart, loads)
	}, func() bool {
		byPart, loads := view()
		if len(byPart) != parts || !slices.Equal(loads, want) {
			return false
		}
		for _, owners := range byPart {
			if len(owners) != 1 {
				return false
			}
		}
		return true
	})
	for p, owners := range h.owners("count") {
		if len(owners) != 1 {
			t.Errorf("manager: partition %d held by %v, want exactly one instance", p, owners)
		}
	}
}

func TestPartitionsBalancedAndSticky(t *testing.T) {
	h := start(t, testConfig())
	h.m.Assigned(tps("in", 0, 1, 2, 3, 4, 5, 6, 7))
	a := h.open("count", "a", 100)
	waitStable(t, h, 8, []int{8}, a)
	b := h.open("count", "b", 100)
	waitStable(t, h, 8, []int{4, 4}, a, b)
	before := map[string][]int32{"a": a.ownedParts(), "b": b.ownedParts()}

	c := h.open("count", "c", 100)
	waitStable(t, h, 8, []int{2, 3, 3}, a, b, c)
	// Sticky: only the partitions c took moved; a and b kept the rest.
	for _, x := range []*fakeAgent{a, b} {
		for _, p := range x.ownedParts() {
			if !slices.Contains(before[x.instance], p) {
				t.Errorf("partition %d moved to %s, which only c should gain", p, x.instance)
			}
		}
	}
	if got := len(a.revokes) + len(b.revokes); got != 4+2 {
		t.Errorf("revokes = %d, want 6 (4 when b joined, 2 when c joined)", got)
	}
	if un := h.info("count").Unassigned; len(un) != 0 {
		t.Errorf("Unassigned = %v, want none", un)
	}
}

// Instances that connect while earlier moves are still under way must still
// end up balanced: 8 partitions over 3 instances is 3/3/2.
func TestPartitionsBalancedWhenInstancesJoinTogether(t *testing.T) {
	h := start(t, testConfig())
	h.m.Assigned(tps("in", 0, 1, 2, 3, 4, 5, 6, 7))
	a := h.open("count", "a", 100)
	// a holds one event of every partition, so no move finishes before
	// it answers.
	for p := int32(0); p < 8; p++ {
		h.sendRange("in", p, 0, 1)
	}
	a.takeEvents(8)
	b := h.open("count", "b", 100)
	c := h.open("count", "c", 100)
	h.settle()
	for _, bt := range a.takeBatches() {
		t.Fatalf("a got a batch while revoking: %v", offsets(bt))
	}
	// Answer everything a holds; the moves finish.
	for _, o := range a.log {
		if o.Batch != nil {
			a.okAll(o.Batch)
		}
	}
	waitStable(t, h, 8, []int{2, 3, 3}, a, b, c)
}

func TestUnownedPartitionPausedUntilInstanceConnects(t *testing.T) {
	h := start(t, testConfig())
	h.m.Assigned(tps("in", 0))
	h.settle()
	if !h.cons.isPaused("in", 0) {
		t.Fatalf("in[0] without an instance is not paused; consumer log %v", h.cons.pauseLog())
	}
	if un := h.info("count").Unassigned; len(un) != 1 || un[0].Partition != 0 {
		t.Errorf("Unassigned = %v, want [in[0]]", un)
	}
	h.sendRange("in", 0, 0, 3) // prefetched before the pause took effect

	a := h.open("count", "a", 100)
	b := a.nextBatch()
	if got := offsets(b); !slices.Equal(got, span(0, 3)) {
		t.Errorf("first batch offsets = %v, want [0 1 2]", got)
	}
	if h.cons.isPaused("in", 0) {
		t.Errorf("in[0] still paused after an instance connected; consumer log %v", h.cons.pauseLog())
	}

	a.s.Close(nil)
	a.waitDone()
	h.settle()
	if !h.cons.isPaused("in", 0) {
		t.Errorf("in[0] not paused after its last instance left; consumer log %v", h.cons.pauseLog())
	}
}

func TestEventsInOffsetOrderWithAssignEpoch(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBatchEvents = 3
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0, 1))
	a := h.open("count", "a", 1000)
	for off := int64(0); off < 10; off++ {
		h.sendRange("in", 0, off, off+1)
		h.sendRange("in", 1, off, off+1)
	}
	got := map[int32][]int64{}
	waitFor(t, wait, func() string { return fmt.Sprintf("20 events, have %v", got) }, func() bool {
		a.pump()
		for _, b := range a.batches {
			if len(b.Events) > 3 {
				t.Errorf("batch of %d events, MaxBatchEvents is 3", len(b.Events))
			}
			if b.Epoch != a.epoch[tp{b.Topic, b.Partition}] {
				t.Errorf("batch epoch %d, Assign epoch %d", b.Epoch, a.epoch[tp{b.Topic, b.Partition}])
			}
			for _, e := range b.Events {
				got[b.Partition] = append(got[b.Partition], e.Offset)
				if e.Attempt != 1 || string(e.Value) != fmt.Sprintf("v%d", e.Offset) {
					t.Errorf("event %+v: want attempt 1 and value v%d", e, e.Offset)
				}
			}
		}
		a.batches = nil
		return len(got[0])+len(got[1]) >= 20
	})
	for p := int32(0); p < 2; p++ {
		if !slices.Equal(got[p], span(0, 10)) {
			t.Errorf("in[%d] offsets = %v, want 0..9 in order", p, got[p])
		}
	}
	if a.epoch[tp{"in", 0}] == a.epoch[tp{"in", 1}] {
		t.Errorf("in[0] and in[1] share epoch %d", a.epoch[tp{"in", 0}])
	}
}

// A new instance takes a partition only once the old owner is done with
// it: quiet (all results in), RevokeAck, or the revoke deadline.
func TestJoinMovesPartitionGracefully(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		finish  func(t *testing.T, old *fakeAgent, b *agents.Batch) // how the old owner lets go
		redeliv bool                                                // the held events go to the new owner
	}{
		{name: "quiet", timeout: 10 * time.Second, finish: func(t *testing.T, old *fakeAgent, b *agents.Batch) { old.okAll(b) }},
		{name: "revoke ack", timeout: 10 * time.Second, redeliv: true, finish: func(t *testing.T, old *fakeAgent, b *agents.Batch) {
			old.s.RevokeAck(agents.PartitionRef{Topic: b.Topic, Partition: b.Partition, Epoch: b.Epoch})
		}},
		{name: "deadline", timeout: 200 * time.Millisecond, redeliv: true, finish: func(t *testing.T, old *fakeAgent, b *agents.Batch) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.RevokeTimeout = tt.timeout
			h := start(t, cfg)
			h.m.Assigned(tps("in", 0, 1))
			h.sendRange("in", 0, 0, 3)
			h.sendRange("in", 1, 0, 1)
			h.settle()
			a := h.open("count", "a", 100)
			var held *agents.Batch
			for _, b := range []*agents.Batch{a.nextBatch(), a.nextBatch()} {
				if b.Partition == 0 {
					held = b
				} else {
					a.okAll(b)
				}
			}
			oldEpoch := held.Epoch

			joined := time.Now()
			n := h.open("count", "b", 100)
			h.settle()
			a.pump()
			if len(a.revokes) != 1 || a.revokes[0].Partition != 0 || a.revokes[0].Epoch != oldEpoch {
				t.Fatalf("old owner's revokes = %+v, want one for in[0] epoch %d", a.revokes, oldEpoch)
			}
			if d := time.Until(a.revokes[0].Deadline); d <= 0 || d > tt.timeout {
				t.Errorf("Revoke deadline in %v, want within RevokeTimeout %v", d, tt.timeout)
			}
			// Nobody gets in[0] while the old owner may still work on it.
			h.sendRange("in", 0, 3, 5)
			a.noBatch()
			n.noBatch()
			if n.owned[tp{"in", 0}] {
				t.Fatalf("new instance got in[0] before the old one let go")
			}

			tt.finish(t, a, held)
			b := n.nextBatch()
			if tt.name == "deadline" && time.Since(joined) < tt.timeout {
				t.Errorf("moved after %v, before the revoke deadline %v", time.Since(joined), tt.timeout)
			}
			if b.Partition != 0 || b.Epoch <= oldEpoch || b.Epoch != n.epoch[tp{"in", 0}] {
				t.Fatalf("new owner's batch: %s epoch %d; want in[0] with its Assign epoch above %d", tp{b.Topic, b.Partition}, b.Epoch, oldEpoch)
			}
			want := span(3, 5)
			if tt.redeliv {
				want = span(0, 5)
			}
			if got := offsets(b); !slices.Equal(got, want) {
				t.Errorf("new owner's offsets = %v, want %v", got, want)
			}
			// Attempt of the redelivered events: see design_test.go (Q2).
			if tt.redeliv {
				// The old owner's late results are stale: dropped, counted.
				stale := h.info("count").StaleDropped
				a.okAll(held)
				h.settle()
				if got := h.info("count").StaleDropped; got != stale+3 {
					t.Errorf("StaleDropped = %d, want %d", got, stale+3)
				}
				if !a.alive() {
					t.Errorf("old owner's session ended by stale results: %v", a.s.Err())
				}
			}
			n.okAll(b)
			h.waitCommitted("in", 0, 5)
		})
	}
}

// A Kafka revoke of a partition that is moving between instances must not
// leave the move's target counted as loaded.
func TestKafkaRevokeDuringMoveKeepsLoads(t *testing.T) {
	tests := []struct {
		name   string
		finish func(a *fakeAgent, held *agents.Batch) // how the old owner lets go
	}{
		{name: "quiet", finish: func(a *fakeAgent, held *agents.Batch) { a.okAll(held) }},
		{name: "revoke ack", finish: func(a *fakeAgent, held *agents.Batch) {
			a.s.RevokeAck(agents.PartitionRef{Topic: held.Topic, Partition: held.Partition, Epoch: held.Epoch})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.RevokeTimeout = 10 * time.Second
			h := start(t, cfg)
			h.m.Assigned(tps("in", 0, 1))
			h.sendRange("in", 0, 0, 1)
			h.settle()
			a := h.open("count", "a", 100)
			held := a.nextBatch() // keeps the move of in[0] open
			h.open("count", "b", 100)
			h.settle()
			a.pump()
			if len(a.revokes) != 1 || a.revokes[0].Partition != 0 {
				t.Fatalf("revokes = %+v, want in[0] moving to b", a.revokes)
			}

			done := make(chan struct{})
			go func() { h.m.Revoked(tps("in", 0)); close(done) }()
			// The revoke under way before the old owner lets go: else the
			// move could finish first, and the revoke then wait for b's
			// ack, which b never sends.
			waitFor(t, wait, func() string { return "the revoke of in[0] under way" }, func() bool { return h.m.Revoking() == 1 })
			tt.finish(a, held)
			select {
			case <-done:
			case <-time.After(wait):
				t.Fatal("Revoked did not return once the old owner let go")
			}

			// a holds in[1]; b holds nothing. A new partition goes to b.
			h.m.Assigned(tps("in", 2))
			waitFor(t, wait, func() string { return fmt.Sprintf("in[2] assigned; owners %v", h.owners("count")) }, func() bool {
				return len(h.owners("count")[2]) == 1
			})
			if got := h.owners("count")[2]; got[0] != "b" {
				t.Errorf("in[2] went to %v; want b, which holds no partition (a holds in[1])", got)
			}
		})
	}
}

// Moves survive either side leaving midway; nothing is lost.
func TestMoveWhenAnInstanceLeaves(t *testing.T) {
	for _, leaver := range []string{"old owner", "new owner"} {
		t.Run(leaver, func(t *testing.T) {
			cfg := frontierConfig()
			cfg.RevokeTimeout = 10 * time.Second
			h := start(t, cfg)
			h.m.Assigned(tps("in", 0, 1))
			h.sendRange("in", 0, 0, 2)
			h.settle()
			a := h.open("count", "a", 100)
			held := a.nextBatch() // in[0] 0..1, keeps the move open
			n := h.open("count", "n", 100)
			h.settle()
			a.pump()
			if len(a.revokes) != 1 || a.revokes[0].Partition != 0 {
				t.Fatalf("revokes = %+v, want in[0] moving", a.revokes)
			}
			var next *fakeAgent
			if leaver == "old owner" {
				a.s.Close(nil)
				a.waitDone()
				next = n
			} else {
				n.s.Close(nil)
				n.waitDone()
				a.okAll(held) // quiet: the move finishes, back to a
				next = a
			}
			h.sendRange("in", 0, 2, 3)
			want := span(0, 3) // the old owner's events, redelivered
			if leaver == "new owner" {
				want = span(2, 3) // the old owner finished its events
			}
			got := next.takeEvents(len(want))
			if !slices.Equal(eventOffsets(got), want) {
				t.Errorf("%s got %v, want %v", next.instance, eventOffsets(got), want)
			}
			if e := next.epoch[tp{"in", 0}]; e <= held.Epoch {
				t.Errorf("%s holds in[0] under epoch %d, want a new one above %d", next.instance, e, held.Epoch)
			}
			for _, o := range next.log {
				if o.Batch != nil {
					next.okAll(o.Batch)
				}
			}
			h.waitCommitted("in", 0, 3)
			for p, owners := range h.owners("count") {
				if len(owners) != 1 {
					t.Errorf("in[%d] held by %v", p, owners)
				}
			}
		})
	}
}

// TestFailedResumeIsRetried: a resume Kafka refuses (during a rebalance)
// is tried again: a paused partition receives nothing, so no event would
// ever resume it (partitions stalled for good that way).
func TestFailedResumeIsRetried(t *testing.T) {
	h := start(t, testConfig())
	h.m.Assigned(tps("in", 0))
	h.settle()
	if !h.cons.isPaused("in", 0) {
		t.Fatal("a partition without an instance is not paused")
	}
	h.cons.mu.Lock()
	h.cons.resumeFail = 1
	h.cons.mu.Unlock()
	h.open("count", "a", 100) // its connection resumes the partition: refused once
	waitFor(t, wait, func() string { return "in[0] resumed after the refusal" }, func() bool { return !h.cons.isPaused("in", 0) })
}
