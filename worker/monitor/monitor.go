// Package monitor keeps the worker's metrics: counters, gauges and latency
// histograms recorded with atomics on the hot path, read by snapshots
// (MonitorService, workerctl top) and by Prometheus at scrape time.
package monitor

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Monitor owns the worker's metrics. It is safe for concurrent use.
type Monitor struct {
	enabled bool
	reg     *prometheus.Registry
	state   *prometheus.GaugeVec
	kafka   *prometheus.CounterVec

	mu        sync.Mutex
	misrouted map[string]*atomic.Uint64 // by topic
	parts     map[partKey]*PartitionStats
	agents    map[string]*AgentStats
	stalls    []Stall

	// Rebalances counts consumer-group rebalances (assignments and
	// revocations) since start.
	Rebalances atomic.Uint64
	// Freezes counts the times the worker's process stood still long
	// enough to have lost its partitions unknowingly (docs/agents.md).
	Freezes atomic.Uint64
	// RebalanceDuration times each revocation: from Revoked to the commit.
	RebalanceDuration Histogram
	// ProduceLatency times Produce to acknowledgement.
	ProduceLatency Histogram
	// CommitLatency times offset commits.
	CommitLatency Histogram
	// CommitFailures counts offset commits Kafka refused (each logged as
	// "commit failed; will retry"); their offsets are retried next cycle.
	CommitFailures atomic.Uint64
	// TxnCommits and TxnAborts count the transactions of exactly_once
	// (docs/monitoring.md); ProducerResets the transactional producers
	// re-created after a fatal error (fenced, timed out).
	TxnCommits     atomic.Uint64
	TxnAborts      atomic.Uint64
	ProducerResets atomic.Uint64
	// WatchDropped counts snapshots not sent to slow watchers.
	WatchDropped atomic.Uint64
	// InflightBytes is what the agents manager holds against
	// limits.inflight_bytes: results not yet applied, and the records they
	// produced until Kafka acknowledged them.
	InflightBytes atomic.Int64
	// StreamWaits counts the times reading an agent's stream waited for
	// room (limits.inflight_bytes or the session's queue bound).
	StreamWaits atomic.Uint64
}

type partKey struct {
	topic     string
	partition int32
}

// AgentStats are the session counters of one agent.
type AgentStats struct {
	Name         string
	Sessions     atomic.Int64
	Connects     atomic.Uint64
	Disconnects  atomic.Uint64
	StaleDropped atomic.Uint64
	// Refused counts results refused with INVALID_ARGUMENT (a record for
	// a topic agents may not write); their events were dead-lettered.
	Refused atomic.Uint64
	// ProduceRetries counts the worker's produce attempts that failed and
	// were retried after a backoff.
	ProduceRetries atomic.Uint64
	// DeadLettersWithoutValue counts dead letters written without their
	// value because Kafka refused them in full.
	DeadLettersWithoutValue atomic.Uint64
	// ProcessingTimeouts counts sessions ended because an instance held an
	// event past the agent's processing_timeout.
	ProcessingTimeouts atomic.Uint64
	// TableReadErrors counts reads of the agent's table stores that failed;
	// each held its event back, to be read again after a backoff.
	TableReadErrors atomic.Uint64
	// TableWriteErrors counts writes of the agent's table changes to their
	// stores that failed (a full or read-only disk); each is tried again
	// at the next commit cycle, the changes held in memory meanwhile.
	TableWriteErrors atomic.Uint64
}

// Stall is a partition or agent instance that stopped making progress.
type Stall struct {
	Agent      string
	Topic      string
	Partition  int32
	InstanceID string
	Since      time.Time
	Reason     string
	// Error: the stall is also one of the worker's errors
	// (GetStatus.errors), a condition that holds memory and needs an
	// operator: a table store that cannot be written.
	Error bool
}

// New returns a Monitor with Go runtime and process collectors registered,
// labelled with the app name and version. With enabled false, per-event
// recording is off (Partition returns nil); lifecycle metrics remain.
func New(app, version string, enabled bool) *Monitor {
	reg := prometheus.NewRegistry()
	m := &Monitor{
		enabled: enabled,
		reg:     reg,
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eddy_worker_state",
			Help: "Lifecycle state as a state set: 1 for the current state, 0 for the others.",
		}, []string{"state"}),
		kafka: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_kafka_errors_total",
			Help: "Errors reported by the Kafka clients (those status lists), by librdkafka's symbolic error name, e.g. _ALL_BROKERS_DOWN.",
		}, []string{"code"}),
		parts:     map[partKey]*PartitionStats{},
		agents:    map[string]*AgentStats{},
		misrouted: map[string]*atomic.Uint64{},
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "eddy_build_info",
		Help:        "Always 1; labelled with the app and the worker version.",
		ConstLabels: prometheus.Labels{"app": app, "version": version},
	})
	info.Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		info, m.state, m.kafka, collector{m},
	)
	return m
}

// Registry is the registry /metrics serves.
func (m *Monitor) Registry() *prometheus.Registry { return m.reg }

// SetState records the lifecycle state current, one of all (every state,
// each exported: 1 for current, 0 for the others).
func (m *Monitor) SetState(current string, all []string) {
	for _, s := range all {
		v := 0.0
		if s == current {
			v = 1
		}
		m.state.WithLabelValues(s).Set(v)
	}
}

// KafkaError counts one Kafka client error by librdkafka's symbolic name
// of its code (transport.CodeName: a bounded set, never message text).
func (m *Monitor) KafkaError(code string) { m.kafka.WithLabelValues(code).Inc() }

// Partition returns the stats of a partition now owned by agent, creating
// them; nil when recording is off. The same partition owned again later
// continues its counters.
func (m *Monitor) Partition(agent, topic string, partition int32) *PartitionStats {
	if !m.enabled {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := partKey{topic, partition}
	s := m.parts[k]
	if s == nil {
		s = &PartitionStats{Agent: agent, Topic: topic, Partition: partition}
		s.Lag.Store(-1)
		s.Committed.Store(-1)
		s.lastMove.Store(time.Now().UnixNano())
		m.parts[k] = s
	}
	return s
}

// Misrouted returns the counter of topic's records whose key its declared
// partitioner puts on another partition than the one they were read from
// (eddy_misrouted_records_total{topic}), creating it at 0. Recorded
// whether or not per-event recording is on.
func (m *Monitor) Misrouted(topic string) *atomic.Uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.misrouted[topic]
	if c == nil {
		c = &atomic.Uint64{}
		m.misrouted[topic] = c
	}
	return c
}

// Release forgets a partition that left this worker (its series vanish).
func (m *Monitor) Release(topic string, partition int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.parts, partKey{topic, partition})
}

// Agent returns the session counters of an agent, creating them.
func (m *Monitor) Agent(name string) *AgentStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.agents[name]
	if a == nil {
		a = &AgentStats{Name: name}
		m.agents[name] = a
	}
	return a
}

// SetLag records librdkafka's consumer lag of a partition, if owned.
func (m *Monitor) SetLag(topic string, partition int32, lag int64) {
	m.mu.Lock()
	s := m.parts[partKey{topic, partition}]
	m.mu.Unlock()
	s.SetLag(lag)
}

// SetFetch records librdkafka's fetch state of a partition, if owned.
func (m *Monitor) SetFetch(topic string, partition int32, f Fetch) {
	m.mu.Lock()
	s := m.parts[partKey{topic, partition}]
	m.mu.Unlock()
	s.SetFetch(f)
}

// SetConsumerView records the consumer's statistics of a partition, if
// owned: its fetch state, and its lag. The lag is counted from the
// worker's own committed offset when it has one: librdkafka's consumer_lag
// counts from the offset its consumer committed, and under exactly-once
// the offsets go in the producer's transactions, so it would keep the
// offset read at assignment and grow for ever. consumerLag (librdkafka's)
// is used until the worker has committed.
func (m *Monitor) SetConsumerView(topic string, partition int32, consumerLag int64, f Fetch) {
	m.mu.Lock()
	s := m.parts[partKey{topic, partition}]
	m.mu.Unlock()
	if s == nil {
		return
	}
	s.SetFetch(f)
	end := f.Stable
	if end < 0 {
		end = f.High
	}
	if c := s.Committed.Load(); c >= 0 && end >= 0 {
		consumerLag = max(end-c, 0)
	}
	s.SetLag(consumerLag)
}

// LagByAgent sums the known consumer lag (librdkafka statistics) of each
// agent's owned partitions.
func (m *Monitor) LagByAgent() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int64{}
	for _, s := range m.parts {
		if lag := s.Lag.Load(); lag > 0 {
			out[s.Agent] += lag
		}
	}
	return out
}

// SetStalls replaces the list of stalls.
func (m *Monitor) SetStalls(stalls []Stall) {
	m.mu.Lock()
	m.stalls = stalls
	m.mu.Unlock()
}

// Stalls returns the current stalls.
func (m *Monitor) Stalls() []Stall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Stall(nil), m.stalls...)
}

// Snapshot is the worker's metrics at one moment.
type Snapshot struct {
	TakenAt    time.Time
	Partitions []PartitionSnapshot
	Agents     []AgentSnapshot
	Rebalances uint64
	Stalled    []Stall
}

// PartitionSnapshot are the counters of one partition.
type PartitionSnapshot struct {
	Agent, Topic                                          string
	Partition                                             int32
	Received, Delivered, Processed, Retried, DeadLettered uint64
	InFlight, Lag, Committed                              int64
	ProcessingP50, ProcessingP95, ProcessingP99           time.Duration
	EndToEndP50, EndToEndP95, EndToEndP99                 time.Duration
	EventsPerSecond                                       float64
}

// AgentSnapshot are the counters of one agent.
type AgentSnapshot struct {
	Agent                            string
	Sessions                         int64
	Connects, Disconnects, Processed uint64
	InFlight                         int64
	StaleDropped                     uint64
}

// rateWindow is the shortest period a rate is measured over.
const rateWindow = time.Second

// Snapshot reads every counter. Rates are processed events per second over
// the last rate window.
func (m *Monitor) Snapshot() Snapshot {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	snap := Snapshot{TakenAt: now, Rebalances: m.Rebalances.Load(), Stalled: append([]Stall(nil), m.stalls...)}
	agents := map[string]*AgentSnapshot{}
	for name, a := range m.agents {
		agents[name] = &AgentSnapshot{Agent: name, Sessions: a.Sessions.Load(), Connects: a.Connects.Load(),
			Disconnects: a.Disconnects.Load(), StaleDropped: a.StaleDropped.Load()}
	}
	for _, s := range m.parts {
		ps := PartitionSnapshot{
			Agent: s.Agent, Topic: s.Topic, Partition: s.Partition,
			Received: s.Received.Load(), Delivered: s.Delivered.Load(), Processed: s.Processed.Load(),
			Retried: s.Retried.Load(), DeadLettered: s.DeadLettered.Load(),
			InFlight: s.InFlight.Load(), Lag: s.Lag.Load(), Committed: s.Committed.Load(),
		}
		var proc, e2e histSnapshot
		s.Processing.addTo(&proc)
		s.EndToEnd.addTo(&e2e)
		ps.ProcessingP50, ps.ProcessingP95, ps.ProcessingP99 = proc.quantile(0.5), proc.quantile(0.95), proc.quantile(0.99)
		ps.EndToEndP50, ps.EndToEndP95, ps.EndToEndP99 = e2e.quantile(0.5), e2e.quantile(0.95), e2e.quantile(0.99)
		if since := now.Sub(s.lastSample); s.lastSample.IsZero() || since >= rateWindow {
			if !s.lastSample.IsZero() {
				s.rate.Store(math.Float64bits(float64(ps.Processed-s.lastProcessed) / since.Seconds()))
			}
			s.lastProcessed, s.lastSample = ps.Processed, now
		}
		ps.EventsPerSecond = math.Float64frombits(s.rate.Load())
		snap.Partitions = append(snap.Partitions, ps)
		a := agents[s.Agent]
		if a == nil {
			a = &AgentSnapshot{Agent: s.Agent}
			agents[s.Agent] = a
		}
		a.Processed += ps.Processed
		a.InFlight += ps.InFlight
	}
	for _, a := range agents {
		snap.Agents = append(snap.Agents, *a)
	}
	sort.Slice(snap.Partitions, func(i, j int) bool {
		x, y := snap.Partitions[i], snap.Partitions[j]
		if x.Topic != y.Topic {
			return x.Topic < y.Topic
		}
		return x.Partition < y.Partition
	})
	sort.Slice(snap.Agents, func(i, j int) bool { return snap.Agents[i].Agent < snap.Agents[j].Agent })
	return snap
}
