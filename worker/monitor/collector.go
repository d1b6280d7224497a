package monitor

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	partLabels  = []string{"agent", "topic", "partition"}
	agentLabels = []string{"agent"}

	descReceived      = prometheus.NewDesc("eddy_events_received_total", "Records consumed from Kafka.", partLabels, nil)
	descDelivered     = prometheus.NewDesc("eddy_events_delivered_total", "Events sent to agents, redeliveries included.", partLabels, nil)
	descProcessed     = prometheus.NewDesc("eddy_events_processed_total", "Events done with an OK result: Kafka acknowledged every record they produced. An event is processed or dead-lettered, never both.", partLabels, nil)
	descRetried       = prometheus.NewDesc("eddy_events_retried_total", "RETRY results of agents (the worker's own produce retries are eddy_produce_retries_total).", partLabels, nil)
	descDeadLettered  = prometheus.NewDesc("eddy_events_dead_lettered_total", "Events sent to the dead-letter topic.", partLabels, nil)
	descInFlight      = prometheus.NewDesc("eddy_events_in_flight", "Events delivered to agents without a result.", partLabels, nil)
	descLag           = prometheus.NewDesc("eddy_consumer_lag", "Records between the committed offset and the partition end (librdkafka statistics); no series while unknown.", partLabels, nil)
	descCommitted     = prometheus.NewDesc("eddy_committed_offset", "The last committed offset (the next to consume); no series before this worker's first commit of the partition.", partLabels, nil)
	descProcessing    = prometheus.NewDesc("eddy_processing_latency_seconds", "Time from delivering an event to an agent to its result.", agentLabels, nil)
	descEndToEnd      = prometheus.NewDesc("eddy_end_to_end_latency_seconds", "Time from a record's timestamp to the commit that covers it.", agentLabels, nil)
	descInflightB     = prometheus.NewDesc("eddy_inflight_bytes", "Bytes held for results on their way to Kafka, against limits.inflight_bytes.", nil, nil)
	descStreamWaits   = prometheus.NewDesc("eddy_agent_stream_waits_total", "Times reading an agent stream waited for memory (limits.inflight_bytes or the session queue bound).", nil, nil)
	descSessions      = prometheus.NewDesc("eddy_agent_sessions", "Connected agent instances.", agentLabels, nil)
	descConnects      = prometheus.NewDesc("eddy_agent_connects_total", "Agent sessions opened.", agentLabels, nil)
	descDisconnects   = prometheus.NewDesc("eddy_agent_disconnects_total", "Agent sessions closed.", agentLabels, nil)
	descStale         = prometheus.NewDesc("eddy_stale_results_total", "Results and acknowledgements dropped for a stale epoch.", agentLabels, nil)
	descRefused       = prometheus.NewDesc("eddy_agent_results_refused_total", "Agent results refused with INVALID_ARGUMENT (a record for an internal or undeclared topic); their events were dead-lettered.", agentLabels, nil)
	descProduceRetry  = prometheus.NewDesc("eddy_produce_retries_total", "Produce attempts of the worker (outputs, changelog writes, dead letters) that failed and were retried after a backoff.", agentLabels, nil)
	descDLQNoValue    = prometheus.NewDesc("eddy_dead_letters_without_value_total", "Dead letters Kafka refused in full, written without the value (the original stays in the source topic).", agentLabels, nil)
	descProcTimeouts  = prometheus.NewDesc("eddy_agent_processing_timeouts_total", "Agent sessions ended because an instance held an event past the agent's processing_timeout.", agentLabels, nil)
	descTableReadErr  = prometheus.NewDesc("eddy_table_read_errors_total", "Reads of the agent's table stores that failed; each held its event back, to be read again after a backoff (not counted as a retry of the agent's).", agentLabels, nil)
	descTableWriteErr = prometheus.NewDesc("eddy_table_write_errors_total", "Writes of the agent's table changes to their stores that failed (a full or read-only disk); each is tried again at the next commit cycle, the changes held in memory meanwhile.", agentLabels, nil)
	descStalled       = prometheus.NewDesc("eddy_stalled", "Partitions and agent instances that stopped making progress.", agentLabels, nil)
	descRebalances    = prometheus.NewDesc("eddy_rebalances_total", "Consumer-group assignments and revocations.", nil, nil)
	descFreezes       = prometheus.NewDesc("eddy_freezes_total", "Times the worker's process stood still long enough to have lost its partitions unknowingly; it then produces nothing until the group confirms them.", nil, nil)
	descRebalanceDur  = prometheus.NewDesc("eddy_rebalance_duration_seconds", "Time to drain and commit revoked partitions.", nil, nil)
	descProduce       = prometheus.NewDesc("eddy_produce_latency_seconds", "Time from producing a record to Kafka's acknowledgement.", nil, nil)
	descCommit        = prometheus.NewDesc("eddy_commit_latency_seconds", "Time to commit offsets.", nil, nil)
	descTxnCommits    = prometheus.NewDesc("eddy_transactions_committed_total", "Transactions committed (processing_guarantee exactly_once): each holds the outputs, changelog and dead-letter records of the events below the offsets it commits.", nil, nil)
	descTxnAborts     = prometheus.NewDesc("eddy_transactions_aborted_total", "Transactions aborted (exactly_once): their records are invisible to read_committed readers, and their events are processed again from the committed offsets.", nil, nil)
	descProdResets    = prometheus.NewDesc("eddy_producer_resets_total", "Transactional producers re-created after a fatal error (fenced by a newer producer of the same transactional id, or the transaction timed out).", nil, nil)
	descCommitFailed  = prometheus.NewDesc("eddy_commit_failures_total", "Offset commits that failed and will be retried at the next commit cycle.", nil, nil)
	descMisrouted     = prometheus.NewDesc("eddy_misrouted_records_total", "Records consumed whose key the topic's declared partitioner (topics[].partitioner) puts on another partition: table reads by key miss them.", []string{"topic"}, nil)
	descWatchDropped  = prometheus.NewDesc("eddy_watch_snapshots_dropped_total", "Snapshots not sent to slow Watch callers.", nil, nil)
)

// collector exposes the monitor's atomics at scrape time, so recording
// never touches Prometheus.
type collector struct{ m *Monitor }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReceived, descDelivered, descProcessed, descRetried, descDeadLettered,
		descInFlight, descLag, descCommitted, descProcessing, descEndToEnd, descSessions, descConnects,
		descDisconnects, descStale, descRefused, descProduceRetry, descDLQNoValue, descProcTimeouts, descTableReadErr, descTableWriteErr, descStalled,
		descRebalances, descFreezes, descRebalanceDur, descProduce, descCommit, descCommitFailed, descTxnCommits, descTxnAborts, descProdResets, descWatchDropped, descInflightB,
		descStreamWaits, descMisrouted} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	m.mu.Lock()
	proc := map[string]*histSnapshot{}
	e2e := map[string]*histSnapshot{}
	stalled := map[string]int{}
	for _, s := range m.parts {
		l := []string{s.Agent, s.Topic, strconv.Itoa(int(s.Partition))}
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
		}
		gauge := func(d *prometheus.Desc, v int64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), l...)
		}
		counter(descReceived, s.Received.Load())
		counter(descDelivered, s.Delivered.Load())
		counter(descProcessed, s.Processed.Load())
		counter(descRetried, s.Retried.Load())
		counter(descDeadLettered, s.DeadLettered.Load())
		gauge(descInFlight, s.InFlight.Load())
		// Unknown values (-1) are left out, not exported as a number.
		if v := s.Lag.Load(); v >= 0 {
			gauge(descLag, v)
		}
		if v := s.Committed.Load(); v >= 0 {
			gauge(descCommitted, v)
		}
		if proc[s.Agent] == nil {
			proc[s.Agent], e2e[s.Agent] = &histSnapshot{}, &histSnapshot{}
		}
		s.Processing.addTo(proc[s.Agent])
		s.EndToEnd.addTo(e2e[s.Agent])
	}
	for _, st := range m.stalls {
		stalled[st.Agent]++
	}
	misrouted := make(map[string]uint64, len(m.misrouted))
	for topic, c := range m.misrouted {
		misrouted[topic] = c.Load()
	}
	agents := make([]*AgentStats, 0, len(m.agents))
	for _, a := range m.agents {
		agents = append(agents, a)
	}
	m.mu.Unlock()

	for agent, h := range proc {
		ch <- prometheus.MustNewConstHistogram(descProcessing, h.count, h.sum, h.cumulative(), agent)
		e := e2e[agent]
		ch <- prometheus.MustNewConstHistogram(descEndToEnd, e.count, e.sum, e.cumulative(), agent)
	}
	for _, a := range agents {
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(a.Sessions.Load()), a.Name)
		ch <- prometheus.MustNewConstMetric(descConnects, prometheus.CounterValue, float64(a.Connects.Load()), a.Name)
		ch <- prometheus.MustNewConstMetric(descDisconnects, prometheus.CounterValue, float64(a.Disconnects.Load()), a.Name)
		ch <- prometheus.MustNewConstMetric(descStale, prometheus.CounterValue, float64(a.StaleDropped.Load()), a.Name)
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(a.Refused.Load()), a.Name)
		ch <- prometheus.MustNewConstMetric(descProduceRetry, prometheus.CounterValue, float64(a.ProduceRetries.Load()), a.Name)
		ch <- prometheus.MustNewConstMetric(descDLQNoValue, prometheus.CounterValue, float64(a.DeadLettersWithoutValue.Load()), a.Name)
		ch <- prometheus.MustNewConstMetric(descProcTimeouts, prometheus.CounterValue, float64(a.ProcessingTimeouts.Load()), a.Name)
		ch <- prometheus.MustNewConstMetric(descTableReadErr, prometheus.CounterValue, float64(a.TableReadErrors.Load()), a.Name)
		ch <- prometheus.MustNewConstMetric(descTableWriteErr, prometheus.CounterValue, float64(a.TableWriteErrors.Load()), a.Name)
		ch <- prometheus.MustNewConstMetric(descStalled, prometheus.GaugeValue, float64(stalled[a.Name]), a.Name)
	}
	ch <- prometheus.MustNewConstMetric(descRebalances, prometheus.CounterValue, float64(m.Rebalances.Load()))
	ch <- prometheus.MustNewConstMetric(descFreezes, prometheus.CounterValue, float64(m.Freezes.Load()))
	for d, h := range map[*prometheus.Desc]*Histogram{descRebalanceDur: &m.RebalanceDuration, descProduce: &m.ProduceLatency, descCommit: &m.CommitLatency} {
		var s histSnapshot
		h.addTo(&s)
		ch <- prometheus.MustNewConstHistogram(d, s.count, s.sum, s.cumulative())
	}
	ch <- prometheus.MustNewConstMetric(descCommitFailed, prometheus.CounterValue, float64(m.CommitFailures.Load()))
	ch <- prometheus.MustNewConstMetric(descTxnCommits, prometheus.CounterValue, float64(m.TxnCommits.Load()))
	ch <- prometheus.MustNewConstMetric(descTxnAborts, prometheus.CounterValue, float64(m.TxnAborts.Load()))
	ch <- prometheus.MustNewConstMetric(descProdResets, prometheus.CounterValue, float64(m.ProducerResets.Load()))
	ch <- prometheus.MustNewConstMetric(descWatchDropped, prometheus.CounterValue, float64(m.WatchDropped.Load()))
	ch <- prometheus.MustNewConstMetric(descInflightB, prometheus.GaugeValue, float64(m.InflightBytes.Load()))
	ch <- prometheus.MustNewConstMetric(descStreamWaits, prometheus.CounterValue, float64(m.StreamWaits.Load()))
	for topic, n := range misrouted {
		ch <- prometheus.MustNewConstMetric(descMisrouted, prometheus.CounterValue, float64(n), topic)
	}
}
