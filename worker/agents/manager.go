package agents

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/monitor"
	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/transport"
)

// Consumer is what the manager needs from the Kafka consumer. The methods
// must be safe to call from any goroutine (transport.Consumer's are).
type Consumer interface {
	Pause(parts []kafka.TopicPartition) error
	Resume(parts []kafka.TopicPartition) error
	Commit(offsets []kafka.TopicPartition) error
}

// Producer is what the manager needs from the Kafka producer: Produce and
// ProduceOffset call onDone exactly once, never inside the call, and
// without blocking; ProduceOffset reports the record's offset (the
// changelog offset a table store is checkpointed at).
type Producer interface {
	Produce(rec transport.Record, onDone func(error))
	ProduceOffset(rec transport.Record, onDone func(offset int64, err error))
}

// Restorer brings a table partition's local store up to its changelog's
// end; tables.Restorer is the real one. Restore is called off the
// manager's goroutine, several at once; the returned store is the
// manager's, which closes it when the partition leaves.
type Restorer interface {
	Restore(ctx context.Context, table string, partition int32) (*tables.Store, tables.Progress, error)
	// Resume brings an open store (a standby replica's, handed over) up to
	// its changelog's end; the store stays the caller's.
	Resume(ctx context.Context, st *tables.Store) (tables.Progress, error)
}

// Standbys are the worker's standby replicas (tables.Standbys is the real
// one). Take is called off the manager's goroutine when a partition's
// tables are recovered: it stops the table partition's local replica, if
// any, and hands its open store over (nil when there is none), so that
// the recovery reads only the tail of the changelog; until Release (the
// partition left), no replica of it is started.
type Standbys interface {
	Take(table string, partition int32) *tables.Store
	Release(table string, partition int32)
}

// Config configures the manager. Zero fields take the documented default.
type Config struct {
	// App is the app name; dead-letter topics are <App>-<agent>-dlq.
	App string
	// Agents are the declared agents (validated).
	Agents []config.Agent
	// MaxBatchEvents bounds the events of one EventBatch. Default: 500.
	MaxBatchEvents int
	// MaxBatchBytes bounds the key+value bytes of one EventBatch, well under
	// the 4 MiB gRPC message limit. Default: 1 MiB.
	MaxBatchBytes int
	// MaxEventBytes is the largest event delivered; a larger record cannot
	// travel on the stream and goes to the dead-letter topic with a reason.
	// Default: 3 MiB.
	MaxEventBytes int
	// BufferEvents and BufferBytes bound the records kept per partition
	// (received and not yet committed); past either the partition is paused
	// in Kafka until half is done. Defaults: 10000 events, 32 MiB.
	BufferEvents int
	BufferBytes  int
	// CommitInterval is how often the frontier is committed. Default: 1s.
	CommitInterval time.Duration
	// CommitEvery commits as soon as this many events are done since the
	// last commit. Default: 10000.
	CommitEvery int
	// RetryBackoffMin and RetryBackoffMax bound the exponential backoff
	// before a RETRY is delivered again. Defaults: 100ms, 10s.
	RetryBackoffMin time.Duration
	RetryBackoffMax time.Duration
	// RevokeTimeout is how long a revoked instance may take to finish its
	// in-flight events before they are delivered to the next owner.
	// Default: 10s.
	RevokeTimeout time.Duration
	// Logger receives lifecycle and protocol logs. Required.
	Logger *slog.Logger
	// Monitor receives metrics and stalls. Default: a monitor that records
	// nothing per event.
	Monitor *monitor.Monitor
	// StallTimeout is how long work may wait without progress before it is
	// reported as stalled. Default: 30s.
	StallTimeout time.Duration
	// Restorer restores the table partitions of agents that declare
	// tables, before any event of their partition is delivered. Required
	// when an agent declares tables.
	Restorer Restorer
	// RestoreBackoff is the first wait before a failed restore is tried
	// again (doubling up to 30 times it). Default: 200ms.
	RestoreBackoff time.Duration
	// Standbys, if set, hands over the stores of standby replicas on
	// takeover. Default: none (every recovery opens the store itself).
	Standbys Standbys
}

func (c *Config) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxBatchEvents, 500)
	def(&c.MaxBatchBytes, 1<<20)
	def(&c.MaxEventBytes, 3<<20)
	def(&c.BufferEvents, 10000)
	def(&c.BufferBytes, 32<<20)
	def(&c.CommitEvery, 10000)
	defD(&c.CommitInterval, time.Second)
	defD(&c.RetryBackoffMin, 100*time.Millisecond)
	defD(&c.RetryBackoffMax, 10*time.Second)
	defD(&c.RevokeTimeout, 10*time.Second)
	defD(&c.StallTimeout, 30*time.Second)
	defD(&c.RestoreBackoff, 200*time.Millisecond)
	if c.Monitor == nil {
		c.Monitor = monitor.New(c.App, "", false)
	}
}

// DLQTopic is the dead-letter topic of an agent.
func DLQTopic(app, agent string) string { return app + "-" + agent + "-dlq" }

// Manager runs agent sessions and partition delivery. Create it with New,
// Attach the consumer, then Run it. Its exported methods are safe for
// concurrent use.
type Manager struct {
	cfg            Config
	log            *slog.Logger
	producer       Producer
	consumer       Consumer
	in             inbox
	prodQ          produceQueue
	mon            *monitor.Monitor
	now            time.Time // set by dispatch: the time of the deliveries it makes
	stalls         map[stallKey]*monitor.Stall
	lastStallCheck time.Time
	running        atomic.Bool
	stopped        chan struct{}
	ctx            context.Context // Run's: restores end with it
	restores       sync.WaitGroup  // running restore goroutines
	recovering     atomic.Int64    // partitions restoring their tables

	// Owned by the Run goroutine.
	agents     map[string]*agentState
	parts      map[tpKey]*partition
	revokes    []*revokeReq
	epochSeq   uint64
	lastCommit time.Time
	doneCount  int // events done since the last commit
}

type tpKey struct {
	topic     string
	partition int32
}

// agentState is one declared agent, owned by the Run goroutine.
type agentState struct {
	cfg      config.Agent
	mon      *monitor.AgentStats
	byKey    bool
	tables   bool // declares tables: key-busy dispatch, state with events
	dlq      string
	paused   bool
	sessions []*session // in connection order
	parts    map[tpKey]*partition
	stats    agentStats
}

type agentStats struct {
	connects, disconnects, delivered, acked, retried, deadLettered, stale uint64
}

// New returns a manager. Attach must be called before Run.
func New(cfg Config, producer Producer) *Manager {
	cfg.defaults()
	m := &Manager{
		cfg:      cfg,
		log:      cfg.Logger,
		mon:      cfg.Monitor,
		stalls:   map[stallKey]*monitor.Stall{},
		producer: producer,
		stopped:  make(chan struct{}),
		agents:   map[string]*agentState{},
		parts:    map[tpKey]*partition{},
	}
	m.in.wake = make(chan struct{}, 1)
	m.prodQ.wake = make(chan struct{}, 1)
	for _, a := range cfg.Agents {
		m.agents[a.Name] = &agentState{
			cfg:    a,
			mon:    cfg.Monitor.Agent(a.Name),
			byKey:  a.Ordering == "key",
			tables: len(a.Tables) > 0,
			dlq:    DLQTopic(cfg.App, a.Name),
			parts:  map[tpKey]*partition{},
		}
	}
	return m
}

// Attach sets the consumer whose partitions the manager pauses, resumes and
// commits. Call it once, before Run.
func (m *Manager) Attach(c Consumer) { m.consumer = c }

// inbox is the manager's non-blocking input: records from the poll loop,
// everything else as control items. Control items are handled before
// records of the same round, so an assignment is in place before its
// records.
type inbox struct {
	mu     sync.Mutex
	msgs   []*kafka.Message
	ctl    []any
	wake   chan struct{}
	closed bool // Run returned: nothing will be taken any more
}

func (b *inbox) notify() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *inbox) pushMsg(msg *kafka.Message) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.msgs = append(b.msgs, msg)
	n := len(b.msgs)
	b.mu.Unlock()
	if n == 1 {
		b.notify()
	}
}

// push queues a control item; false once the inbox is closed.
func (b *inbox) push(item any) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	b.ctl = append(b.ctl, item)
	b.mu.Unlock()
	b.notify()
	return true
}

// close refuses further items and returns the control items never taken.
func (b *inbox) close() []any {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	ctl := b.ctl
	b.msgs, b.ctl = nil, nil
	return ctl
}

func (b *inbox) take(msgs []*kafka.Message, ctl []any) ([]*kafka.Message, []any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	gotM, gotC := b.msgs, b.ctl
	b.msgs, b.ctl = msgs[:0], ctl[:0]
	return gotM, gotC
}

// Control items.
type (
	assignReq struct{ parts []kafka.TopicPartition }
	revokeReq struct {
		parts    []kafka.TopicPartition
		lost     bool
		started  time.Time
		deadline time.Time
		done     chan struct{}
	}
	openReq  struct{ s *session }
	closeReq struct {
		s   *session
		err error
	}
	creditReq struct {
		s      *session
		events uint32
		bytes  uint64
	}
	resultsReq struct {
		s *session
		r *Results
	}
	ackReq struct {
		s      *session
		ref    PartitionRef
		revoke bool
	}
	produceAck struct {
		p   *partition
		r   *rec
		err error
	}
	recoveredReq struct {
		p       *partition
		stores  []*tables.Store
		records int64
		took    time.Duration
		err     error
	}
	changelogAck struct {
		p   *partition
		r   *rec
		tp  *tablePart
		mut tables.Mutation
		off int64
		err error
	}
	pauseReq struct {
		agent  string
		paused bool
	}
	infoReq struct{ reply chan []AgentInfo }
)

// Message takes one record from the poll loop. It never blocks.
func (m *Manager) Message(msg *kafka.Message) { m.in.pushMsg(msg) }

// Assigned takes partitions newly assigned to this worker.
func (m *Manager) Assigned(parts []kafka.TopicPartition) { m.in.push(&assignReq{parts: parts}) }

// Revoked takes partitions away in an orderly rebalance: delivery stops,
// their instances get Revoke and may finish in-flight events (up to
// RevokeTimeout), then the frontier is committed. It returns when that is
// done, so the consumer gives the partitions up only after.
func (m *Manager) Revoked(parts []kafka.TopicPartition) { m.revoke(parts, false) }

// Lost drops partitions that may already belong to another worker, without
// committing.
func (m *Manager) Lost(parts []kafka.TopicPartition) { m.revoke(parts, true) }

func (m *Manager) revoke(parts []kafka.TopicPartition, lost bool) {
	req := &revokeReq{parts: parts, lost: lost, done: make(chan struct{})}
	m.in.push(req)
	select {
	case <-req.done:
	case <-m.stopped:
	case <-time.After(m.cfg.RevokeTimeout + 10*time.Second):
		m.log.Error("revoke did not finish in time; giving the partitions up uncommitted", "partitions", len(parts))
	}
}

// SetPaused pauses or resumes delivery to one agent, or to all ("").
func (m *Manager) SetPaused(agent string, paused bool) {
	m.in.push(&pauseReq{agent: agent, paused: paused})
}

// Run owns all state until ctx ends; then it ends every session with
// ErrShuttingDown and returns. Stop the consumer first: its final
// revocations need Run to drain in-flight work.
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("agents: Run called twice")
	}
	defer close(m.stopped)
	for _, a := range m.agents {
		if a.tables && m.cfg.Restorer == nil {
			return fmt.Errorf("agents: agent %q declares tables but Config.Restorer is nil", a.cfg.Name)
		}
	}
	m.ctx = ctx
	stopProducer, producerDone := make(chan struct{}), make(chan struct{})
	go m.runProducer(stopProducer, producerDone)
	defer func() { close(stopProducer); <-producerDone }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	m.lastCommit = time.Now()
	var msgs []*kafka.Message
	var ctl []any
	for {
		select {
		case <-ctx.Done():
			m.shutdown()
			return nil
		case <-m.in.wake:
		case <-tick.C:
			m.tick(time.Now())
		}
		msgs, ctl = m.in.take(msgs, ctl)
		for i, item := range ctl {
			m.handle(item)
			ctl[i] = nil
		}
		for i, msg := range msgs {
			m.receive(msg)
			msgs[i] = nil
		}
		m.dispatch()
		now := time.Now()
		m.maybeCommit(now)
		m.checkRevokes(now)
		m.checkStalls(now)
	}
}

func (m *Manager) shutdown() {
	// A session opened concurrently with shutdown is still in the inbox:
	// end it too, or its stream handler waits for Done forever. Open
	// refuses new ones from here on.
	for _, item := range m.in.close() {
		switch it := item.(type) {
		case *openReq:
			it.s.ended = true
			it.s.err = ErrShuttingDown
			close(it.s.done)
		case *recoveredReq:
			for _, st := range it.stores {
				_ = st.Close()
			}
		}
	}
	for _, a := range m.agents {
		for _, s := range append([]*session(nil), a.sessions...) {
			m.endSession(s, ErrShuttingDown)
		}
	}
	for _, r := range m.revokes {
		close(r.done)
	}
	m.revokes = nil
	// Partitions never revoked (the consumer did not stop first): their
	// acknowledged mutations go to their stores, which are closed. Run's
	// context is done, so restores under way end; wait for them, so no
	// store is left open.
	for _, p := range m.parts {
		m.closeTables(p)
	}
	m.restores.Wait()
}

func (m *Manager) handle(item any) {
	switch it := item.(type) {
	case *assignReq:
		m.assign(it.parts)
	case *revokeReq:
		m.startRevoke(it)
	case *openReq:
		m.register(it.s)
	case *closeReq:
		m.endSession(it.s, it.err)
	case *creditReq:
		if !it.s.ended {
			it.s.creditEvents += int64(it.events)
			it.s.creditBytes += int64(it.bytes)
		}
	case *resultsReq:
		if it.s.ended {
			// Its lanes are gone, so every epoch it names is stale:
			// dropped and counted, like any stale result (§4).
			it.s.agent.addStale(len(it.r.Results))
		} else {
			if err := m.results(it.s, it.r); err != nil {
				m.log.Warn("agent broke the protocol; ending its session", "agent", it.s.agent.cfg.Name,
					"instance", it.s.instance, "err", err)
				m.endSession(it.s, err)
			}
		}
	case *stateGetReq:
		if !it.s.ended {
			if err := m.stateGet(it.s, it.req); err != nil {
				m.log.Warn("agent broke the protocol; ending its session", "agent", it.s.agent.cfg.Name,
					"instance", it.s.instance, "err", err)
				m.endSession(it.s, err)
			}
		}
	case *ackReq:
		if !it.s.ended {
			m.ack(it.s, it.ref, it.revoke)
		} else if it.revoke {
			it.s.agent.addStale(1) // as for results above
		}
	case *produceAck:
		m.produced(it.p, it.r, it.err)
	case *changelogAck:
		m.changelogAcked(it)
	case *recoveredReq:
		m.recovered(it)
	case *pauseReq:
		for name, a := range m.agents {
			if it.agent == "" || it.agent == name {
				a.paused = it.paused
				for _, p := range a.parts {
					m.applyPause(p)
				}
			}
		}
	case *infoReq:
		it.reply <- m.info()
	case *tableQuery:
		it.handle(m)
	}
}

// nextEpoch returns a new epoch, unique within this worker process.
func (m *Manager) nextEpoch() uint64 {
	m.epochSeq++
	return m.epochSeq
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// addStale counts results and acknowledgements dropped for a stale epoch.
func (a *agentState) addStale(n int) {
	a.stats.stale += uint64(n)
	a.mon.StaleDropped.Add(uint64(n))
}

// commitAll commits the frontier of every partition that moved past its
// last commit, and tells the owners.
func (m *Manager) commitAll(only map[*partition]bool) {
	var offsets []kafka.TopicPartition
	var ps []*partition
	for _, p := range m.parts {
		if only != nil && !only[p] {
			continue
		}
		if p.frontier > p.committed {
			offsets = append(offsets, kafka.TopicPartition{Topic: &p.ktp.topic, Partition: p.ktp.partition, Offset: kafka.Offset(p.frontier)})
			ps = append(ps, p)
		}
	}
	m.lastCommit = time.Now()
	m.doneCount = 0
	m.flushTables()
	if len(offsets) == 0 {
		return
	}
	start := time.Now()
	err := m.consumer.Commit(offsets)
	m.mon.CommitLatency.Observe(time.Since(start))
	if err != nil && !onlyNotAssigned(err) {
		m.log.Warn("commit failed; will retry", "err", err)
		return
	}
	for _, p := range ps {
		p.committed = p.frontier
		p.stats.CommittedAt(p.committed, p.doneTs, time.Now())
		p.doneTs = p.doneTs[:0]
		for _, l := range p.lanes {
			m.send(l.s, Outbound{Committed: &Committed{Topic: p.ktp.topic, Partition: p.ktp.partition, Offset: p.committed}})
		}
	}
}

// onlyNotAssigned reports whether err consists only of ErrNotAssigned
// (partitions given up, not worth retrying). transport.Consumer.Commit
// joins real failures with a *NotAssignedError, and errors.Is alone would
// take such a failure for success: a Committed notice for offsets Kafka
// does not have, and no retry.
func onlyNotAssigned(err error) bool {
	switch e := err.(type) {
	case nil:
		return false
	case interface{ Unwrap() []error }:
		errs := e.Unwrap()
		for _, x := range errs {
			if !onlyNotAssigned(x) {
				return false
			}
		}
		return len(errs) > 0
	}
	if errors.Is(err, transport.ErrNotAssigned) {
		// A plain ErrNotAssigned or *NotAssignedError, or a wrapper:
		// look through wrappers for a join inside.
		if u := errors.Unwrap(err); u != nil {
			return onlyNotAssigned(u)
		}
		return true
	}
	return false
}

// Besides the interval and the count, it commits soon (at most every
// idleCommitGap) once the worker has caught up — nothing buffered
// anywhere — so a quiet stream's last events are not left uncommitted for
// a whole interval.
func (m *Manager) maybeCommit(now time.Time) {
	switch {
	case m.doneCount >= m.cfg.CommitEvery, now.Sub(m.lastCommit) >= m.cfg.CommitInterval:
		m.commitAll(nil)
	case m.doneCount > 0 && now.Sub(m.lastCommit) >= idleCommitGap && m.caughtUp():
		m.commitAll(nil)
	}
}

// idleCommitGap bounds how often a caught-up worker commits.
const idleCommitGap = 50 * time.Millisecond

func (m *Manager) caughtUp() bool {
	for _, p := range m.parts {
		if p.len() > 0 {
			return false
		}
	}
	return true
}

// produceJob is one record for the producer goroutine.
type produceJob struct {
	rec      transport.Record
	onDone   func(error)
	onOffset func(int64, error) // instead of onDone: ProduceOffset
}

// produceQueue hands records from the Run goroutine to the producer
// goroutine, so the cgo cost of Produce (and its blocking when librdkafka's
// queue is full) runs beside the bookkeeping instead of inside it. One
// goroutine keeps the order of records. Unbounded, but bounded in practice
// by the records delivered and not yet done.
type produceQueue struct {
	mu   sync.Mutex
	jobs []produceJob
	wake chan struct{}
}

func (m *Manager) produce(rec transport.Record, onDone func(error)) {
	m.enqueueProduce(produceJob{rec: rec, onDone: onDone})
}

// produceOffset is produce for records whose offset matters (changelogs).
func (m *Manager) produceOffset(rec transport.Record, onDone func(int64, error)) {
	m.enqueueProduce(produceJob{rec: rec, onOffset: onDone})
}

func (m *Manager) enqueueProduce(j produceJob) {
	q := &m.prodQ
	q.mu.Lock()
	q.jobs = append(q.jobs, j)
	n := len(q.jobs)
	q.mu.Unlock()
	if n == 1 {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// runProducer hands queued records to the producer until stop is closed,
// then hands over what is left (every callback must run).
func (m *Manager) runProducer(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	q := &m.prodQ
	var jobs []produceJob
	for {
		q.mu.Lock()
		jobs, q.jobs = q.jobs, jobs[:0]
		q.mu.Unlock()
		for i, j := range jobs {
			m.handOver(j)
			jobs[i] = produceJob{}
		}
		if len(jobs) > 0 {
			continue
		}
		select {
		case <-q.wake:
		case <-stop:
			q.mu.Lock()
			left := q.jobs
			q.jobs = nil
			q.mu.Unlock()
			for _, j := range left {
				m.handOver(j)
			}
			return
		}
	}
}

func (m *Manager) handOver(j produceJob) {
	if j.onOffset != nil {
		m.producer.ProduceOffset(j.rec, j.onOffset)
	} else {
		m.producer.Produce(j.rec, j.onDone)
	}
}

// Info reports every declared agent, its instances and partitions.
func (m *Manager) Info() []AgentInfo {
	req := &infoReq{reply: make(chan []AgentInfo, 1)}
	m.in.push(req)
	select {
	case r := <-req.reply:
		return r
	case <-m.stopped:
		return nil
	}
}

// AgentInfo describes one agent on this worker.
type AgentInfo struct {
	Name, Ordering  string
	Topics, Tables  []string
	Paused          bool
	Instances       []InstanceInfo
	Unassigned      []kafka.TopicPartition
	InFlight        int64
	Delivered       uint64
	Acked           uint64
	Retried         uint64
	DeadLettered    uint64
	StaleDropped    uint64
	Connects        uint64
	Disconnects     uint64
	AssignedCount   int
	BufferedRecords int
}

// InstanceInfo describes one connected instance.
type InstanceInfo struct {
	InstanceID, SessionID, Peer string
	ConnectedAt                 time.Time
	Partitions                  []kafka.TopicPartition
	InFlight                    int64
	CreditEvents                int64
}

func (m *Manager) info() []AgentInfo {
	var out []AgentInfo
	for _, a := range m.agents {
		ai := AgentInfo{
			Name: a.cfg.Name, Ordering: a.cfg.Ordering, Topics: a.cfg.Topics, Tables: a.cfg.Tables,
			Paused: a.paused, Delivered: a.stats.delivered, Acked: a.stats.acked, Retried: a.stats.retried,
			DeadLettered: a.stats.deadLettered, StaleDropped: a.stats.stale,
			Connects: a.stats.connects, Disconnects: a.stats.disconnects, AssignedCount: len(a.parts),
		}
		for _, s := range a.sessions {
			ii := InstanceInfo{InstanceID: s.instance, SessionID: s.id, Peer: s.peer, ConnectedAt: s.connectedAt,
				InFlight: s.inflight, CreditEvents: s.creditEvents}
			for p := range s.lanes {
				ii.Partitions = append(ii.Partitions, p.ref())
			}
			sortTPs(ii.Partitions)
			ai.InFlight += s.inflight
			ai.Instances = append(ai.Instances, ii)
		}
		for _, p := range a.parts {
			if len(p.lanes) == 0 {
				ai.Unassigned = append(ai.Unassigned, p.ref())
			}
			ai.BufferedRecords += p.len()
		}
		sortTPs(ai.Unassigned)
		out = append(out, ai)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func sortTPs(tps []kafka.TopicPartition) {
	sort.Slice(tps, func(i, j int) bool {
		if *tps[i].Topic != *tps[j].Topic {
			return *tps[i].Topic < *tps[j].Topic
		}
		return tps[i].Partition < tps[j].Partition
	})
}
