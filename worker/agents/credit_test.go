package agents_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/worker/agents"
)

func TestCreditBoundsEventsInFlight(t *testing.T) {
	h := start(t, testConfig())
	h.m.Assigned(tps("in", 0, 1))
	h.sendRange("in", 0, 0, 10)
	h.sendRange("in", 1, 0, 10)
	h.settle()
	a := h.open("count", "a", 3)

	// The credit is the instance's, shared by its partitions.
	first := a.takeEvents(3)
	a.noBatch()
	in := h.info("count").Instances[0]
	if in.InFlight != 3 || in.CreditEvents != 0 {
		t.Errorf("instance InFlight %d, CreditEvents %d; want 3, 0", in.InFlight, in.CreditEvents)
	}

	// Results free nothing: only Credit does (the SDK refills).
	for _, o := range a.log {
		if o.Batch != nil {
			a.okAll(o.Batch)
		}
	}
	a.noBatch()

	a.s.Credit(4, 0)
	more := a.takeEvents(4)
	a.noBatch()
	a.s.Credit(100, 0)
	rest := a.takeEvents(20 - 7)
	if n := len(first) + len(more) + len(rest); n != 20 {
		t.Errorf("delivered %d events, want 20", n)
	}
}

func TestCreditBoundsBytes(t *testing.T) {
	h := start(t, testConfig())
	h.m.Assigned(tps("in", 0))
	a := h.openHello(agents.Hello{Agent: "count", InstanceID: "a", ProtocolVersion: agents.ProtocolVersion,
		CreditEvents: 100, CreditBytes: 10})
	// key "k" + value "abc": 4 bytes each.
	for off := int64(0); off < 5; off++ {
		h.send(msg("in", 0, off, "k", "abc"))
	}
	got := a.takeEvents(2) // 8 of 10 bytes
	a.noBatch()
	a.s.Credit(0, 4) // 6 bytes left: one more event
	got = append(got, a.takeEvents(1)...)
	a.noBatch()
	a.s.Credit(0, 100)
	got = append(got, a.takeEvents(2)...)
	if o := eventOffsets(got); !slices.Equal(o, span(0, 5)) {
		t.Errorf("offsets = %v, want 0..4", o)
	}
}

// An event larger than the byte credit goes to an instance with nothing in
// flight, alone, so it cannot wedge the partition. While the byte credit is
// overdrawn, the instance gets one event at a time, only when idle.
func TestCreditOversizedEventWhenIdle(t *testing.T) {
	h := start(t, testConfig())
	h.m.Assigned(tps("in", 0))
	a := h.openHello(agents.Hello{Agent: "count", InstanceID: "a", ProtocolVersion: agents.ProtocolVersion,
		CreditEvents: 100, CreditBytes: 10})
	h.send(msg("in", 0, 0, "k", strings.Repeat("x", 19)), msg("in", 0, 1, "k", "abc"), msg("in", 0, 2, "k", "abc"))
	b := a.nextBatch()
	if got := offsets(b); !slices.Equal(got, []int64{0}) {
		t.Fatalf("offsets = %v, want the 20-byte event alone", got)
	}
	a.noBatch() // -10 bytes left and an event in flight
	a.okAll(b)
	b = a.nextBatch() // idle again: one event
	if got := offsets(b); !slices.Equal(got, []int64{1}) {
		t.Fatalf("offsets = %v, want [1] alone", got)
	}
	a.noBatch()
	a.s.Credit(0, 100)
	if got := eventOffsets(a.takeEvents(1)); !slices.Equal(got, []int64{2}) {
		t.Errorf("offsets = %v, want [2]", got)
	}
}

func TestBatchLimits(t *testing.T) {
	tests := []struct {
		name      string
		maxEvents int
		maxBytes  int
		want      []int // batch sizes
	}{
		{name: "events", maxEvents: 3, maxBytes: 1 << 20, want: []int{3, 3, 3, 3}},
		{name: "bytes", maxEvents: 100, maxBytes: 10, want: []int{2, 2, 2, 2, 2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxBatchEvents = tt.maxEvents
			cfg.MaxBatchBytes = tt.maxBytes
			h := start(t, cfg)
			h.m.Assigned(tps("in", 0))
			for off := int64(0); off < 12; off++ {
				h.send(msg("in", 0, off, "k", "abc")) // 4 bytes
			}
			h.settle()
			// All of it is pending when the instance connects: with ample
			// credit, one round sends every batch.
			a := h.open("count", "a", 1000)
			var sizes []int
			var offs []int64
			for _, b := range a.takeBatches() {
				sizes = append(sizes, len(b.Events))
				offs = append(offs, offsets(b)...)
			}
			if !slices.Equal(sizes, tt.want) || !slices.Equal(offs, span(0, 12)) {
				t.Errorf("batch sizes %v (offsets %v), want %v over 0..11", sizes, offs, tt.want)
			}
		})
	}
}
