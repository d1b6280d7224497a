package agents_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/agents"
)

// big is an output of n bytes.
func big(n int) agents.Record {
	return agents.Record{Topic: "out", Value: bytes.Repeat([]byte{'x'}, n)}
}

// TestInflightCapStopsDispatch: outputs held until Kafka acknowledges them
// count against Config.InflightBytes; at the cap nothing more is delivered,
// whatever the agent's credit, and delivery resumes once acknowledgements
// bring the held bytes below it.
func TestInflightCapStopsDispatch(t *testing.T) {
	cfg := testConfig()
	cfg.InflightBytes = 5000
	cfg.MaxBatchEvents = 1
	h := start(t, cfg)
	a := h.open("count", "a", 2)
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 10)
	evs := a.takeEvents(2)
	b := &agents.Batch{PartitionRef: agents.PartitionRef{Topic: "in", Partition: 0, Epoch: a.epoch[tp{"in", 0}]}}
	a.reply(b, ok(evs[0].Offset, big(3000)), ok(evs[1].Offset, big(3000)))
	a.s.Credit(2, 0)
	h.prod.waitCalls(t, 2)
	// 6000 bytes held, over the cap: the credit given back is not used.
	a.noBatch()
	if got := h.m.InflightBytes(); got < 6000 {
		t.Errorf("InflightBytes() = %d with two 3000-byte outputs unacknowledged, want at least 6000", got)
	}

	h.prod.answer(t, 0, nil) // 3000 held: below the cap
	evs = a.takeEvents(2)
	if evs[0].Offset != 2 || evs[1].Offset != 3 {
		t.Errorf("delivered %v after the acknowledgement, want [2 3]", eventOffsets(evs))
	}
	h.prod.answer(t, 1, nil)
	waitFor(t, wait, func() string { return "InflightBytes() to drop to 0" }, func() bool { return h.m.InflightBytes() == 0 })
}

// TestWaitRoomOverCap: a session's stream is not read while the manager
// holds InflightBytes or more, and is read again once it holds less.
func TestWaitRoomOverCap(t *testing.T) {
	cfg := testConfig()
	cfg.InflightBytes = 5000
	h := start(t, cfg)
	a := h.open("count", "a", 10)
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 1)
	b := a.nextBatch()
	a.reply(b, ok(b.Events[0].Offset, big(6000)))
	h.prod.waitCalls(t, 1)

	// With its context done, WaitRoom says at once whether there is room.
	if err := a.s.WaitRoom(canceled()); err != context.Canceled {
		t.Fatalf("WaitRoom = %v while 6000 bytes are held over a cap of 5000, want it to wait (context.Canceled)", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waited := make(chan error, 1)
	go func() { waited <- a.s.WaitRoom(ctx) }()
	h.prod.answer(t, 0, nil)
	select {
	case err := <-waited:
		if err != nil {
			t.Errorf("WaitRoom = %v once below the cap, want nil", err)
		}
	case <-time.After(wait):
		t.Fatal("WaitRoom did not return once the output was acknowledged")
	}

	// A waiting reader also ends with its stream.
	a.reply(b) // nothing: keeps the session alive
	h.sendRange("in", 0, 1, 2)
	b = a.nextBatch()
	a.reply(b, ok(b.Events[0].Offset, big(6000)))
	h.prod.waitCalls(t, 2)
	h.settle()
	go func() { waited <- a.s.WaitRoom(ctx) }()
	cancel()
	select {
	case err := <-waited:
		if err != context.Canceled {
			t.Errorf("WaitRoom = %v after its context ended, want context.Canceled", err)
		}
	case <-time.After(wait):
		t.Fatal("WaitRoom did not return when its context ended")
	}
}

// TestWaitRoomSessionQueue: Results a session queued and the manager has
// not taken yet count against Config.SessionQueueBytes: past it the
// session's stream is not read until the manager took them.
func TestWaitRoomSessionQueue(t *testing.T) {
	cfg := testConfig()
	cfg.SessionQueueBytes = 4000
	cfg.Logger = testLogger()
	prod := &fakeProducer{auto: true}
	m := agents.New(cfg, prod)
	m.Attach(newFakeConsumer())
	s, _, err := m.Open(agents.Hello{Agent: "count", InstanceID: "a", ProtocolVersion: agents.ProtocolVersion, CreditEvents: 10})
	if err != nil {
		t.Fatal(err)
	}
	// Run has not started: nothing is taken from the inbox.
	for range 2 {
		s.Results(&agents.Results{Topic: "in", Partition: 0, Epoch: 0,
			Results: []agents.Result{ok(0, big(2500))}})
	}
	if err := s.WaitRoom(canceled()); err != context.Canceled {
		t.Fatalf("WaitRoom = %v with 5000 bytes queued over a bound of 4000, want it to wait (context.Canceled)", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waited := make(chan error, 1)
	go func() { waited <- s.WaitRoom(ctx) }()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case err := <-waited:
		if err != nil {
			t.Errorf("WaitRoom = %v once the manager took the results, want nil", err)
		}
	case <-time.After(wait):
		t.Fatal("WaitRoom did not return once the manager took the results")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// canceled is a context that is already done.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
