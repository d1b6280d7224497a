package agents_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/config"
)

func TestFullBufferPausesPartition(t *testing.T) {
	cfg := frontierConfig()
	cfg.BufferEvents = 4
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0, 1))
	a := h.open("count", "a", 100)
	h.sendRange("in", 0, 0, 3)
	a.takeEvents(3)
	if h.cons.isPaused("in", 0) {
		t.Fatalf("paused with 3 of 4 buffered")
	}
	h.sendRange("in", 0, 3, 4)
	a.takeEvents(1)
	if !h.cons.isPaused("in", 0) {
		t.Fatalf("not paused with 4 of 4 buffered; consumer log %v", h.cons.pauseLog())
	}
	if h.cons.isPaused("in", 1) {
		t.Errorf("in[1] paused by in[0]'s buffer")
	}
	var b *agents.Batch
	for _, o := range a.log {
		if o.Batch != nil {
			b = o.Batch // one epoch: any batch names it
		}
	}
	a.reply(b, ok(3)) // done, but behind 0..2: still buffered
	h.settle()
	if !h.cons.isPaused("in", 0) {
		t.Fatalf("resumed while the frontier has not moved")
	}
	a.reply(b, ok(0))
	h.settle()
	if !h.cons.isPaused("in", 0) {
		t.Fatalf("resumed with 3 of 4 still buffered")
	}
	a.reply(b, ok(1)) // 2 of 4 left: half done
	h.settle()
	if h.cons.isPaused("in", 0) {
		t.Fatalf("still paused with half the buffer done; consumer log %v", h.cons.pauseLog())
	}
	a.reply(b, ok(2))
	expectCommitted(t, h, a, 0, 4)
	h.sendRange("in", 0, 4, 5)
	if got := eventOffsets(a.takeEvents(1)); !slices.Equal(got, []int64{4}) {
		t.Errorf("after resume: %v, want [4]", got)
	}
}

func TestSetPausedStopsDelivery(t *testing.T) {
	cfg := frontierConfig()
	cfg.Agents = []config.Agent{agentCfg("count", "", 3, "in"), agentCfg("audit", "key", 3, "audit-in")}
	h := start(t, cfg)
	h.m.Assigned(append(tps("in", 0), tps("audit-in", 0)...))
	h.sendRange("in", 0, 0, 1)
	h.settle()
	a := h.open("count", "a", 100)
	au := h.open("audit", "x", 100)
	held := a.nextBatch()

	h.m.SetPaused("count", true)
	h.settle()
	if !h.cons.isPaused("in", 0) || h.cons.isPaused("audit-in", 0) {
		t.Fatalf("paused: in[0] %v, audit-in[0] %v; want only in[0]", h.cons.isPaused("in", 0), h.cons.isPaused("audit-in", 0))
	}
	if !h.info("count").Paused || h.info("audit").Paused {
		t.Errorf("Info Paused: count %v, audit %v", h.info("count").Paused, h.info("audit").Paused)
	}
	h.sendRange("in", 0, 1, 3)
	a.noBatch()
	a.okAll(held) // results of in-flight events are still taken
	expectCommitted(t, h, a, 0, 1)
	h.sendRange("audit-in", 0, 0, 1)
	au.okAll(au.nextBatch())

	h.m.SetPaused("", true)
	h.settle()
	if !h.cons.isPaused("audit-in", 0) {
		t.Errorf("SetPaused(\"\") did not pause audit-in[0]")
	}
	h.m.SetPaused("", false)
	if got := offsets(a.nextBatch()); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("after resume: %v, want [1 2]", got)
	}
	if h.cons.isPaused("in", 0) || h.cons.isPaused("audit-in", 0) {
		t.Errorf("still paused after SetPaused(\"\", false)")
	}
}

func TestShutdownEndsSessions(t *testing.T) {
	h := start(t, testConfig())
	h.m.Assigned(tps("in", 0, 1))
	a := h.open("count", "a", 100)
	b := h.open("count", "b", 100)
	h.settle()
	if err := h.stop(); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	for _, x := range []*fakeAgent{a, b} {
		if err := x.waitDone(); !errors.Is(err, agents.ErrShuttingDown) {
			t.Errorf("%s ended with %v, want ErrShuttingDown", x.instance, err)
		}
	}
	// Calls after Run returned do not block.
	done := make(chan struct{})
	go func() {
		h.m.Revoked(tps("in", 0))
		h.m.Info()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Revoked or Info blocked after Run returned")
	}
}

// A session opened while (or after) the manager shuts down must end too,
// or its stream handler waits forever.
func TestOpenAfterShutdown(t *testing.T) {
	h := start(t, testConfig())
	h.settle()
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	s, _, err := h.m.Open(agents.Hello{Agent: "count", InstanceID: "late", ProtocolVersion: agents.ProtocolVersion, CreditEvents: 1})
	if err != nil {
		if !errors.Is(err, agents.ErrShuttingDown) {
			t.Fatalf("Open after shutdown = %v, want ErrShuttingDown", err)
		}
		return
	}
	select {
	case <-s.Done():
		if !errors.Is(s.Err(), agents.ErrShuttingDown) {
			t.Errorf("late session ended with %v, want ErrShuttingDown", s.Err())
		}
	case <-time.After(time.Second):
		t.Fatal("a session opened after shutdown never ends")
	}
}
