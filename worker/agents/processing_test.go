package agents_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/monitor"
)

// processingConfig gives agent "count" a short processing timeout and a
// monitor the test can read.
func processingConfig(timeout time.Duration) agents.Config {
	cfg := testConfig()
	d := config.Duration(timeout)
	cfg.Agents[0].ProcessingTimeout = &d
	cfg.Monitor = monitor.New(cfg.App, "", true)
	return cfg
}

// A hung instance (events delivered, no result) loses its session at the
// agent's processing timeout; its events go to another instance and the
// timeout is counted. Before the fix it held the partition for ever.
func TestProcessingTimeoutEndsHungSession(t *testing.T) {
	cfg := processingConfig(300 * time.Millisecond)
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 3)
	h.settle()
	hung := h.open("count", "hung", 100)
	held := hung.nextBatch()
	if got := offsets(held); !slices.Equal(got, span(0, 3)) {
		t.Fatalf("delivered %v, want [0 1 2]", got)
	}
	other := h.open("count", "other", 100) // one partition: no move
	h.settle()
	other.noBatch()

	if err := hung.waitDone(); !errors.Is(err, agents.ErrProcessingTimeout) {
		t.Fatalf("hung session ended with %v, want ErrProcessingTimeout", err)
	}
	b := other.nextBatch()
	if got := offsets(b); b.Partition != 0 || !slices.Equal(got, span(0, 3)) {
		t.Fatalf("other got in[%d] %v, want in[0] [0 1 2]", b.Partition, got)
	}
	if got := cfg.Monitor.Agent("count").ProcessingTimeouts.Load(); got != 1 {
		t.Errorf("ProcessingTimeouts = %d, want 1", got)
	}
	other.okAll(b)
	h.waitCommitted("in", 0, 3)
}

// Without another instance the events wait for one.
func TestProcessingTimeoutWaitsForAnInstance(t *testing.T) {
	cfg := processingConfig(300 * time.Millisecond)
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 2)
	h.settle()
	hung := h.open("count", "hung", 100)
	hung.nextBatch()
	if err := hung.waitDone(); !errors.Is(err, agents.ErrProcessingTimeout) {
		t.Fatalf("hung session ended with %v, want ErrProcessingTimeout", err)
	}
	waitFor(t, wait, func() string { return "in[0] paused without an instance" }, func() bool { return h.cons.isPaused("in", 0) })
	next := h.open("count", "next", 100)
	if got := offsets(next.nextBatch()); !slices.Equal(got, span(0, 2)) {
		t.Errorf("next got %v, want [0 1]", got)
	}
}

// The timeout counts from the partition's last progress at the instance,
// not from delivery: an instance working through a queue, each event well
// within the timeout, keeps its session however long the whole batch takes.
func TestProcessingTimeoutCountsFromLastResult(t *testing.T) {
	cfg := processingConfig(2 * time.Second)
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 4)
	h.settle()
	a := h.open("count", "a", 100)
	b := a.nextBatch()
	delivered := time.Now()
	for _, e := range b.Events {
		// Pacing, not synchronisation: the test is about time passing.
		time.Sleep(700 * time.Millisecond)
		a.reply(b, ok(e.Offset))
	}
	h.waitCommitted("in", 0, 4)
	if took := time.Since(delivered); took < cfg.Agents[0].Processing() {
		t.Fatalf("the batch took %v, under the timeout %v: the test proves nothing", took, cfg.Agents[0].Processing())
	}
	if !a.alive() {
		t.Errorf("session ended: %v", a.s.Err())
	}
	if got := cfg.Monitor.Agent("count").ProcessingTimeouts.Load(); got != 0 {
		t.Errorf("ProcessingTimeouts = %d, want 0", got)
	}
}
