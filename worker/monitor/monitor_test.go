package monitor

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestQuantiles(t *testing.T) {
	var h Histogram
	for i := 0; i < 990; i++ {
		h.Observe(time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		h.Observe(5 * time.Second)
	}
	var s histSnapshot
	h.addTo(&s)
	if p50 := s.quantile(0.5); p50 < 500*time.Microsecond || p50 > time.Millisecond {
		t.Errorf("p50: got %v, want about 1ms", p50)
	}
	if p99 := s.quantile(0.99); p99 > time.Millisecond {
		t.Errorf("p99: got %v, want at most 1ms (990 of 1000 are 1ms)", p99)
	}
	if p999 := s.quantile(0.999); p999 < 2500*time.Millisecond || p999 > 5*time.Second {
		t.Errorf("p99.9: got %v, want in the 2.5s-5s bucket", p999)
	}
}

func TestCountersAndExposition(t *testing.T) {
	m := New("app", "v1", true)
	s := m.Partition("count", "lines", 3)
	now := time.Now()
	for i := 0; i < 7; i++ {
		s.AddReceived(1)
		s.AddDelivered(1)
		s.Result(i >= 5, now.Add(-time.Millisecond), now)
		if i < 5 {
			s.AddProcessed()
		}
	}
	s.AddDeadLettered()
	snap := m.Snapshot()
	if len(snap.Partitions) != 1 {
		t.Fatalf("partitions: got %d, want 1", len(snap.Partitions))
	}
	p := snap.Partitions[0]
	if p.Received != 7 || p.Delivered != 7 || p.Processed != 5 || p.Retried != 2 || p.DeadLettered != 1 || p.InFlight != 0 {
		t.Errorf("got %+v", p)
	}
	want := `
# HELP eddy_events_processed_total Events done with an OK result: Kafka acknowledged every record they produced. An event is processed or dead-lettered, never both.
# TYPE eddy_events_processed_total counter
eddy_events_processed_total{agent="count",partition="3",topic="lines"} 5
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "eddy_events_processed_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndLint(m.Registry()); err != nil || len(n) > 0 {
		t.Errorf("lint: %v %v", err, n)
	}
	// A disabled monitor records nothing and costs nothing.
	off := New("app", "v1", false)
	if off.Partition("count", "lines", 0) != nil {
		t.Errorf("disabled monitor returned partition stats")
	}
}

// BenchmarkRecordEvent is the monitor's cost per event on the hot path:
// received, delivered, result with a latency observation.
func BenchmarkRecordEvent(b *testing.B) {
	m := New("app", "v1", true)
	s := m.Partition("count", "lines", 0)
	now := time.Now()
	sent := now.Add(-3 * time.Millisecond)
	b.ReportAllocs()
	for b.Loop() {
		s.AddReceived(1)
		s.AddDelivered(1)
		s.Result(false, sent, now)
		s.AddProcessed()
	}
}

func TestLagByAgent(t *testing.T) {
	m := New("app", "v1", true)
	m.Partition("count", "lines", 0)
	m.Partition("count", "lines", 1)
	m.Partition("route", "orders", 0)
	m.SetLag("lines", 0, 7)
	m.SetLag("lines", 1, 5)
	// orders[0] lag unknown (-1): not counted.
	got := m.LagByAgent()
	if got["count"] != 12 || got["route"] != 0 {
		t.Errorf("got %v, want count 12, route 0", got)
	}
}

// TestLagFromOwnCommits: the lag counts from the worker's own committed
// offset once it has one, not from librdkafka's consumer_lag, which under
// exactly-once counts from the offset read at assignment (the commits go
// in the producer's transactions) and so never falls: an idle, fully
// committed partition looked lagging, and stalled.
func TestLagFromOwnCommits(t *testing.T) {
	m := New("app", "v1", true)
	s := m.Partition("count", "words", 0)
	f := Fetch{State: "active", Next: 120, Stable: 120, High: 130}
	m.SetConsumerView("words", 0, 100, f) // nothing committed by the worker yet: librdkafka's
	if got := s.Lag.Load(); got != 100 {
		t.Errorf("lag before the worker's first commit = %d, want librdkafka's 100", got)
	}
	s.CommittedAt(120, nil, time.Now())
	m.SetConsumerView("words", 0, 100, f) // librdkafka still counts from the offset read at assignment
	if got := s.Lag.Load(); got != 0 {
		t.Errorf("lag with everything below the last stable offset committed = %d, want 0", got)
	}
	m.SetConsumerView("words", 0, 100, Fetch{State: "active", Next: 120, Stable: -1, High: 130})
	if got := s.Lag.Load(); got != 10 {
		t.Errorf("lag without a last stable offset = %d, want 10 (to the high watermark)", got)
	}
}

func TestCommitFailuresExposed(t *testing.T) {
	m := New("app", "v1", true)
	want := `
# HELP eddy_commit_failures_total Offset commits that failed and will be retried at the next commit cycle.
# TYPE eddy_commit_failures_total counter
eddy_commit_failures_total %d
`
	// Exported from the start, so an alert on its increase sees the first one.
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(fmt.Sprintf(want, 0)), "eddy_commit_failures_total"); err != nil {
		t.Error(err)
	}
	m.CommitFailures.Add(2)
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(fmt.Sprintf(want, 2)), "eddy_commit_failures_total"); err != nil {
		t.Error(err)
	}
}
