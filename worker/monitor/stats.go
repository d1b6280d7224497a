package monitor

import (
	"fmt"
	"sync/atomic"
	"time"
)

// PartitionStats are the counters of one source partition on this worker.
// The owner records with atomics (no locks); readers may read at any time.
// A nil *PartitionStats records nothing, so recording can be switched off.
type PartitionStats struct {
	Agent     string
	Topic     string
	Partition int32

	Received     atomic.Uint64
	Delivered    atomic.Uint64
	Processed    atomic.Uint64 // processed: done with an OK result
	Retried      atomic.Uint64
	DeadLettered atomic.Uint64
	InFlight     atomic.Int64
	Lag          atomic.Int64          // from librdkafka statistics; -1 unknown
	Fetch        atomic.Pointer[Fetch] // from librdkafka statistics; nil unknown
	Committed    atomic.Int64
	Processing   Histogram // delivered → result
	EndToEnd     Histogram // record timestamp → committed

	// lastMove is when the frontier last moved, in UnixNano.
	lastMove atomic.Int64
	// rate is processed events per second over the last sampling period,
	// stored as math.Float64bits.
	rate          atomic.Uint64
	lastProcessed uint64    // sampler only
	lastSample    time.Time // sampler only
}

// Each recording method is a no-op on a nil receiver.

func (s *PartitionStats) AddReceived(n int) {
	if s != nil {
		s.Received.Add(uint64(n))
	}
}

func (s *PartitionStats) AddDelivered(n int) {
	if s != nil {
		s.Delivered.Add(uint64(n))
		s.InFlight.Add(int64(n))
	}
}

// Result records one result of a delivery made at deliveredAt: retry for
// a RETRY. An OK result is counted as processed only once the event is
// done (AddProcessed): its writes may still fail and dead-letter it.
func (s *PartitionStats) Result(retry bool, deliveredAt, now time.Time) {
	if s == nil {
		return
	}
	s.InFlight.Add(-1)
	if retry {
		s.Retried.Add(1)
	}
	if !deliveredAt.IsZero() {
		s.Processing.Observe(now.Sub(deliveredAt))
	}
}

// AddProcessed records an event done with an OK result: Kafka has every
// record it produced (eddy_events_processed_total). An event is processed
// or dead-lettered, never both.
func (s *PartitionStats) AddProcessed() {
	if s != nil {
		s.Processed.Add(1)
	}
}

// Undelivered records deliveries taken back without a result.
func (s *PartitionStats) Undelivered(n int) {
	if s != nil {
		s.InFlight.Add(-int64(n))
	}
}

func (s *PartitionStats) AddDeadLettered() {
	if s != nil {
		s.DeadLettered.Add(1)
	}
}

// FrontierMoved records that the frontier passed records at now.
func (s *PartitionStats) FrontierMoved(now time.Time) {
	if s != nil {
		s.lastMove.Store(now.UnixNano())
	}
}

// CommittedAt records a commit of offset, observing the end-to-end
// latency of the records it covered (their timestamps, in UnixNano).
func (s *PartitionStats) CommittedAt(offset int64, timestamps []int64, now time.Time) {
	if s == nil {
		return
	}
	s.Committed.Store(offset)
	n := now.UnixNano()
	for _, ts := range timestamps {
		if ts > 0 {
			s.EndToEnd.Observe(time.Duration(n - ts))
		}
	}
}

// SetLag records the consumer lag reported by librdkafka.
func (s *PartitionStats) SetLag(lag int64) {
	if s != nil {
		s.Lag.Store(lag)
	}
}

// Fetch is the consumer's view of a partition in librdkafka's statistics:
// why a partition with lag receives nothing shows here (a fetch state other
// than "active", or a last stable offset held back by an open transaction).
type Fetch struct {
	State  string // fetch_state: "active", "offset-query", "offset-wait", "stopped", …
	Next   int64  // next_offset: the next offset fetched
	Stable int64  // ls_offset: the last stable offset (read_committed reads below it)
	High   int64  // hi_offset: the high watermark
	Queued int64  // fetchq_cnt: messages fetched, not yet polled
}

func (f *Fetch) String() string {
	return fmt.Sprintf("fetch state %s, next offset %d, last stable offset %d, high watermark %d, %d queued",
		f.State, f.Next, f.Stable, f.High, f.Queued)
}

// SetFetch records the consumer's fetch state reported by librdkafka.
func (s *PartitionStats) SetFetch(f Fetch) {
	if s != nil {
		s.Fetch.Store(&f)
	}
}

// LastMove is when the frontier last moved.
func (s *PartitionStats) LastMove() time.Time {
	if s == nil {
		return time.Time{}
	}
	return time.Unix(0, s.lastMove.Load())
}
