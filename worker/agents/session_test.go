package agents_test

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/worker/agents"
)

// Two instances, a owning in[0] with events 0..2 in flight and b idle.
func twoInstances(t *testing.T) (*harness, *fakeAgent, *fakeAgent, *agents.Batch) {
	t.Helper()
	h := start(t, frontierConfig())
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 3)
	h.settle()
	a := h.open("count", "a", 100)
	held := a.nextBatch()
	b := h.open("count", "b", 100)
	b.noBatch()
	return h, a, b, held
}

func TestSessionEndRedeliversUnderNewEpoch(t *testing.T) {
	tests := []struct {
		name    string
		end     func(a *fakeAgent, held *agents.Batch)
		wantErr func(error) bool
	}{
		{"close", func(a *fakeAgent, _ *agents.Batch) { a.s.Close(io.EOF) }, func(err error) bool { return errors.Is(err, io.EOF) }},
		{"protocol violation", func(a *fakeAgent, held *agents.Batch) { a.reply(held, ok(1), ok(99)) },
			func(err error) bool { return errors.Is(err, agents.ErrBadRequest) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, a, b, held := twoInstances(t)
			tt.end(a, held)
			if err := a.waitDone(); !tt.wantErr(err) {
				t.Fatalf("session ended with %v", err)
			}
			got := b.nextBatch()
			if got.Epoch == held.Epoch || got.Epoch != b.epoch[tp{"in", 0}] {
				t.Errorf("redelivered under epoch %d; want b's new Assign epoch %d, not %d", got.Epoch, b.epoch[tp{"in", 0}], held.Epoch)
			}
			if o := offsets(got); !slices.Equal(o, span(0, 3)) {
				t.Errorf("redelivered offsets %v, want [0 1 2] (nothing of a violating message applied)", o)
			}
			// Attempt after a disconnect: see design_test.go (Q2).
			expectCommitted(t, h, b, 0, -1)

			// Results a sends afterwards under its old epoch are dropped and
			// counted, not applied.
			before := h.info("count").StaleDropped
			a.okAll(held)
			h.settle()
			if got := h.info("count").StaleDropped; got != before+3 {
				t.Errorf("StaleDropped = %d, want %d", got, before+3)
			}
			expectCommitted(t, h, b, 0, -1)
			b.okAll(got)
			expectCommitted(t, h, b, 0, 3)
			if ai := h.info("count"); ai.Disconnects != 1 || len(ai.Instances) != 1 {
				t.Errorf("Disconnects %d, instances %d; want 1, 1", ai.Disconnects, len(ai.Instances))
			}
		})
	}
}

// An instance that reconnects replaces its old session; results under the
// old session's epoch are stale.
func TestReconnectReplacesSession(t *testing.T) {
	h := start(t, frontierConfig())
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 2)
	h.settle()
	a := h.open("count", "a", 100)
	held := a.nextBatch()

	a2 := h.open("count", "a", 100)
	if err := a.waitDone(); err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("old session ended with %v, want a 'replaced' error", err)
	}
	b := a2.nextBatch()
	if b.Epoch <= held.Epoch || !slices.Equal(offsets(b), span(0, 2)) {
		t.Fatalf("new session: epoch %d offsets %v; want epoch above %d and [0 1]", b.Epoch, offsets(b), held.Epoch)
	}
	// The new stream answers for what the old one was given: stale.
	a2.reply(held, ok(0), ok(1))
	h.settle()
	if got := h.info("count").StaleDropped; got != 2 {
		t.Errorf("StaleDropped = %d, want 2", got)
	}
	if !a2.alive() {
		t.Fatalf("stale results ended the session: %v", a2.s.Err())
	}
	a2.okAll(b)
	expectCommitted(t, h, a2, 0, 2)
}

func TestProtocolViolationsEndSession(t *testing.T) {
	tests := []struct {
		name    string
		send    func(a *fakeAgent, b *agents.Batch)
		wantMsg string
		done    []int64 // offsets legitimately done before the violation
	}{
		{"offset received but not delivered", func(a *fakeAgent, b *agents.Batch) { a.reply(b, ok(4)) }, "not delivered", nil},
		{"offset never received", func(a *fakeAgent, b *agents.Batch) { a.reply(b, ok(99)) }, "not delivered", nil},
		{"duplicate in one message", func(a *fakeAgent, b *agents.Batch) { a.reply(b, ok(0), ok(0)) }, "duplicate", nil},
		{"duplicate across messages", func(a *fakeAgent, b *agents.Batch) { a.reply(b, ok(1)); a.reply(b, ok(1)) }, "duplicate", []int64{1}},
		{"duplicate past the frontier", func(a *fakeAgent, b *agents.Batch) { a.reply(b, ok(0)); a.reply(b, ok(0)) }, "duplicate", []int64{0}},
		{"status unspecified", func(a *fakeAgent, b *agents.Batch) { a.reply(b, agents.Result{Offset: 0}) }, "status", nil},
		{"produced record without topic", func(a *fakeAgent, b *agents.Batch) {
			a.reply(b, ok(0, agents.Record{Value: []byte("x")}))
		}, "topic", nil},
		{"mutation", func(a *fakeAgent, b *agents.Batch) {
			a.reply(b, agents.Result{Offset: 0, Status: agents.StatusOK, Mutations: []agents.Mutation{{Table: "counts", Key: []byte("k")}}})
		}, "counts", nil},
		{"epoch never issued", func(a *fakeAgent, b *agents.Batch) {
			a.s.Results(&agents.Results{Topic: b.Topic, Partition: b.Partition, Epoch: b.Epoch + 1000, Results: []agents.Result{ok(0)}})
		}, "never issued", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, frontierConfig())
			h.m.Assigned(tps("in", 0))
			h.sendRange("in", 0, 0, 6)
			h.settle()
			a := h.open("count", "a", 2)
			b := a.nextBatch()
			if !slices.Equal(offsets(b), []int64{0, 1}) {
				t.Fatalf("offsets %v, want [0 1]", offsets(b))
			}
			tt.send(a, b)
			err := a.waitDone()
			if !errors.Is(err, agents.ErrBadRequest) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("session ended with %v, want ErrBadRequest mentioning %q", err, tt.wantMsg)
			}
			if h.prod.len() != 0 {
				t.Errorf("a violating message produced %d records", h.prod.len())
			}
			// Nothing is lost: the next instance gets every undone event.
			var want []int64
			for _, o := range span(0, 6) {
				if !slices.Contains(tt.done, o) {
					want = append(want, o)
				}
			}
			n := h.open("count", "n", 100)
			if got := eventOffsets(n.takeEvents(len(want))); !slices.Equal(got, want) {
				t.Errorf("next instance got %v, want %v", got, want)
			}
		})
	}
}

// Acks with a wrong epoch are dropped and counted; AssignAck is informational.
func TestStaleAcksCounted(t *testing.T) {
	h := start(t, testConfig())
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 1)
	h.settle()
	a := h.open("count", "a", 100)
	b := a.nextBatch()
	a.s.AssignAck(agents.PartitionRef{Topic: "in", Partition: 0, Epoch: b.Epoch})
	// A RevokeAck for a partition that was never revoked, or under a wrong
	// epoch, changes nothing.
	a.s.RevokeAck(agents.PartitionRef{Topic: "in", Partition: 0, Epoch: b.Epoch})
	a.s.RevokeAck(agents.PartitionRef{Topic: "in", Partition: 0, Epoch: b.Epoch + 7})
	h.settle()
	if got := h.info("count").StaleDropped; got != 2 {
		t.Errorf("StaleDropped = %d, want 2", got)
	}
	if !a.alive() || len(h.owners("count")[0]) != 1 {
		t.Fatalf("acks disturbed the session or ownership")
	}
	a.okAll(b)
	h.waitCommitted("in", 0, 1)
}

// An instance that does not read its stream is disconnected; its work goes
// to the others.
func TestStalledSessionEnded(t *testing.T) {
	if testing.Short() {
		t.Skip("sends more than the outbox holds")
	}
	cfg := testConfig()
	cfg.MaxBatchEvents = 1
	cfg.BufferEvents = 1 << 20
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0))
	const n = 17000 // more batches than the outbox holds (16384)
	for off := int64(0); off < n; off++ {
		h.send(msg("in", 0, off, "", "v"))
	}
	h.settle()
	a := h.open("count", "a", n)
	if err := a.waitDone(); !errors.Is(err, agents.ErrStalled) {
		t.Fatalf("session ended with %v, want ErrStalled", err)
	}
	b := h.open("count", "b", 5)
	if got := eventOffsets(b.takeEvents(5)); !slices.Equal(got, span(0, 5)) {
		t.Errorf("next instance got %v, want 0..4", got)
	}
}
