package monitor

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A percentile is never larger than the largest observation: after a 16 s
// run, whose latencies all fall in the 10-30 s bucket, the p99 is at most
// 16 s (interpolating in the bucket said 29.8 s).
func TestQuantileNeverAboveLargest(t *testing.T) {
	m := New("app", "v1", true)
	s := m.Partition("count", "lines", 0)
	now := time.Now()
	for i := range 1000 {
		s.AddDelivered(1)
		s.Result(false, now.Add(-time.Duration(11000+5*i)*time.Millisecond), now) // 11 s .. 16 s
		s.CommittedAt(int64(i+1), []int64{now.Add(-16 * time.Second).UnixNano()}, now)
	}
	p := m.Snapshot().Partitions[0]
	for name, got := range map[string]time.Duration{"processing p99": p.ProcessingP99, "end-to-end p99": p.EndToEndP99, "processing p50": p.ProcessingP50} {
		if got > 16*time.Second || got < 10*time.Second {
			t.Errorf("%s = %v, want within 10s..16s (the largest observation is 16s)", name, got)
		}
	}
	var h Histogram
	h.Observe(90 * time.Second) // beyond the last bucket
	var snap histSnapshot
	h.addTo(&snap)
	if got := snap.quantile(0.99); got != 90*time.Second {
		t.Errorf("p99 of one 90s observation = %v, want 90s", got)
	}
}

// Values the worker does not know are left out, not exported as -1: the
// lag before librdkafka's statistics, the committed offset before the
// first commit.
func TestUnknownSeriesLeftOut(t *testing.T) {
	m := New("app", "v1", true)
	s := m.Partition("count", "lines", 0)
	for _, name := range []string{"eddy_consumer_lag", "eddy_committed_offset"} {
		if n := testutil.CollectAndCount(collector{m}, name); n != 0 {
			t.Errorf("%s: %d series while unknown, want none", name, n)
		}
	}
	s.SetLag(0)
	s.CommittedAt(42, nil, time.Now())
	want := `
# HELP eddy_committed_offset The last committed offset (the next to consume); no series before this worker's first commit of the partition.
# TYPE eddy_committed_offset gauge
eddy_committed_offset{agent="count",partition="0",topic="lines"} 42
# HELP eddy_consumer_lag Records between the committed offset and the partition end (librdkafka statistics); no series while unknown.
# TYPE eddy_consumer_lag gauge
eddy_consumer_lag{agent="count",partition="0",topic="lines"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "eddy_consumer_lag", "eddy_committed_offset"); err != nil {
		t.Error(err)
	}
}

// eddy_worker_state is a state set: every state has a series, the current
// one is 1.
func TestWorkerStateSet(t *testing.T) {
	m := New("app", "v1", true)
	all := []string{"STARTING", "RUNNING", "STOPPED"}
	m.SetState("STARTING", all)
	m.SetState("RUNNING", all)
	want := `
# HELP eddy_worker_state Lifecycle state as a state set: 1 for the current state, 0 for the others.
# TYPE eddy_worker_state gauge
eddy_worker_state{state="RUNNING"} 1
eddy_worker_state{state="STARTING"} 0
eddy_worker_state{state="STOPPED"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "eddy_worker_state"); err != nil {
		t.Error(err)
	}
}
