package agents

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/monitor"
	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/tables/live"
	"github.com/eddy-streams/eddy/worker/transport"
)

// Consumer is what the manager needs from the Kafka consumer. The methods
// must be safe to call from any goroutine (transport.Consumer's are).
type Consumer interface {
	Pause(parts []transport.TopicPartition) error
	Resume(parts []transport.TopicPartition) error
	Commit(offsets []transport.PartitionOffset) error
}

// Producer is what the manager needs from the Kafka producer: Produce and
// ProduceOffset call onDone exactly once, never inside the call, and
// without blocking; ProduceOffset reports the record's offset (the
// changelog offset a table store is checkpointed at).
type Producer interface {
	Produce(rec transport.Record, onDone func(error))
	ProduceOffset(rec transport.Record, onDone func(offset int64, err error))
}

// Config configures the manager. Zero fields take the documented default.
type Config struct {
	// App is the app name; dead-letter topics are <App>-<agent>-dlq.
	App string
	// Agents are the declared agents (validated).
	Agents []config.Agent
	// Outputs are the topics agents may write records to: the app's
	// declared topics minus its internal ones (changelogs and dead-letter
	// topics). An OK result with a record for any other topic (internal,
	// or not declared) is refused at once: none of its records or
	// mutations is applied, the event goes to the agent's dead-letter
	// topic with the reason (naming the topic) in eddy.error, and the
	// partition moves on. The session is not ended: the refusal is logged
	// (Warn, code INVALID_ARGUMENT) and counted
	// (eddy_agent_results_refused_total); see docs/protocol.md. Default:
	// none (every produced record is refused).
	Outputs []string
	// Partitioners place the records agents produce, per topic
	// (topics[].partitioner, docs/configuration.md). Default: none (the
	// producer's murmur2_random).
	Partitioners transport.TopicPartitioners
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
	// InflightBytes caps the bytes held for results on their way to Kafka,
	// over all partitions and sessions: Results read from agents and not
	// yet applied, and the records they produced (outputs, changelog
	// records) until Kafka acknowledges them — table mutations until they
	// are applied to the store. While the cap is reached no event is
	// delivered and no further message is read from any agent's stream
	// (Session.WaitRoom). Default: 256 MiB.
	InflightBytes int64
	// SessionQueueBytes bounds the Results one session may have queued for
	// the manager (read from its stream, not yet applied); past it the
	// session's stream is not read (Session.WaitRoom). Default: 16 MiB.
	SessionQueueBytes int64
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
	// MessageTimeout is the producer's message timeout: a record Kafka
	// has not acknowledged by then is failed. A partition leaving this
	// worker waits up to this long past RevokeTimeout for the
	// acknowledgements of what it produced, so none of its writes lands
	// after the next owner's. Default: 10s.
	MessageTimeout time.Duration
	// FreezeGap is how long the process may stand still (SIGSTOP, a
	// paused VM) before the manager suspects it lost its partitions
	// without knowing, and produces nothing more until the group confirms
	// it still owns them (freeze.go). It must be shorter than the session
	// timeout less the heartbeat interval. Default: 5s.
	FreezeGap time.Duration
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
	Restorer live.Restorer
	// RestoreBackoff is the first wait before a failed restore is tried
	// again (doubling up to 30 times it). Default: 200ms.
	RestoreBackoff time.Duration
	// Windows are the windows of the windowed tables, by table name.
	Windows map[string]tables.Window
	// WindowSweepEvery is how often, at most, a pass over a windowed table
	// partition's store looks for expired windows. Default: 10s.
	WindowSweepEvery time.Duration
	// Standbys, if set, hands over the stores of standby replicas on
	// takeover. Default: none (every recovery opens the store itself).
	Standbys live.Standbys
	// ExactlyOnce runs every commit cycle as a transaction
	// (processing_guarantee exactly_once, eos.go): the producer must be a
	// TxnProducer (transactional) and the consumer a TxnConsumer reading
	// read_committed. Default: false (at-least-once).
	ExactlyOnce bool
	// SourcePartitions is the partition count of each source topic when
	// the app started, which is what the changelogs of its tables have
	// (docs/tables.md#partitions). A partition of an agent with tables
	// numbered at or above it has no changelog partition: it is never
	// restored or written, and its agent is blocked (Block). Default:
	// none (not checked).
	SourcePartitions map[string]int
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
	if c.InflightBytes <= 0 {
		c.InflightBytes = DefaultInflightBytes
	}
	if c.SessionQueueBytes <= 0 {
		c.SessionQueueBytes = 16 << 20
	}
	defD(&c.CommitInterval, time.Second)
	defD(&c.WindowSweepEvery, 10*time.Second)
	defD(&c.RetryBackoffMin, 100*time.Millisecond)
	defD(&c.RetryBackoffMax, 10*time.Second)
	defD(&c.RevokeTimeout, 10*time.Second)
	defD(&c.MessageTimeout, 10*time.Second)
	defD(&c.FreezeGap, 5*time.Second)
	defD(&c.StallTimeout, 30*time.Second)
	defD(&c.RestoreBackoff, 200*time.Millisecond)
	if c.Monitor == nil {
		c.Monitor = monitor.New(c.App, "", false)
	}
}

// DefaultInflightBytes is the default of Config.InflightBytes.
const DefaultInflightBytes = 256 << 20

// DLQTopic is the dead-letter topic of an agent.
func DLQTopic(app, agent string) string { return app + "-" + agent + "-dlq" }

// Manager runs agent sessions and partition delivery. Create it with New,
// Attach the consumer, then Run it. Its exported methods are safe for
// concurrent use.
type Manager struct {
	cfg            Config
	log            *slog.Logger
	outputs        map[string]bool // Config.Outputs
	internal       map[string]bool // changelogs and dead-letter topics of the agents
	producer       Producer
	consumer       Consumer
	in             inbox
	prodQ          produceQueue
	mem            memory
	mon            *monitor.Monitor
	now            time.Time // set by dispatch: the time of the deliveries it makes
	stalls         map[stallKey]*monitor.Stall
	unknownSince   map[tpKey]time.Time // assigned by Kafka, not known here (stall.go)
	lastStallCheck time.Time
	lastPauseRetry time.Time // pausesDue
	// lastProcessingCheck is when held events were last checked against
	// their processing timeout.
	lastProcessingCheck time.Time
	running             atomic.Bool
	stopped             chan struct{}
	ctx                 context.Context // Run's: restores end with it
	restores            sync.WaitGroup  // running restore goroutines
	recovering          atomic.Int64    // partitions restoring their tables

	// Owned by the Run goroutine.
	agents     map[string]*agentState
	parts      map[tpKey]*partition
	revokes    []*revokeReq
	committing bool            // a commit is in flight on the committer goroutine
	lastFlush  time.Time       // tables' acknowledged mutations last applied to their stores
	commitQ    chan *commitJob // to the committer goroutine; holds the one in flight
	freeze     *freezeGuard
	// fenceWait are the producer goroutine's waits for a membership
	// check (freeze.go), fenceAt when the next check may start.
	fenceWait  []*suspectReq
	fenceAt    time.Time
	fenceSent  time.Duration // the freeze guard's clock when the last check was sent
	calm       func() bool   // m.freeze.calm, made once (produce.go)
	epochSeq   uint64
	lastCommit time.Time
	doneCount  int // events done since the last commit

	// Exactly-once (eos.go), owned by the Run goroutine: txn numbers the
	// open transaction (from 1), committedTxn the last committed one;
	// txnErr aborts the open one at the next cycle; txnWrites counts the
	// records handed over in it; poisoned are events whose writes Kafka
	// refused for good, to be dead-lettered when they come back.
	eos          bool
	txn          uint64
	committedTxn uint64
	txnErr       error
	txnErrTxn    uint64 // the transaction txnErr is about
	txnWrites    int
	poisoned     map[poisonKey]poison
	// quit is closed when Run ends (the committer's retries stop).
	quit chan struct{}
	// localFail is set by the producer goroutine when a record failed
	// before it reached the producer; abortTxn names a transaction whose
	// commit must abort (txnLeaving). Both read by the committer.
	localFail atomic.Bool
	abortTxn  atomic.Uint64
	// txnJob is the commit under way (exactly-once; Run goroutine only).
	txnJob *commitJob
	// openTxn is the transaction records may be handed to the producer
	// for (read by the producer goroutine); 0 while an abort is under way.
	openTxn atomic.Uint64
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
	// blocked says why nothing of the agent's partitions is delivered or
	// produced any more (blocked.go), since blockedAt; "" while it works.
	blocked   string
	blockedAt time.Time
}

type agentStats struct {
	connects, disconnects, delivered, acked, retried, deadLettered, stale uint64
	refused, produceRetries, deadLettersNoValue                           uint64
}

// New returns a manager. Attach must be called before Run.
func New(cfg Config, producer Producer) *Manager {
	cfg.defaults()
	m := &Manager{
		cfg:          cfg,
		log:          cfg.Logger,
		mon:          cfg.Monitor,
		stalls:       map[stallKey]*monitor.Stall{},
		unknownSince: map[tpKey]time.Time{},
		producer:     producer,
		stopped:      make(chan struct{}),
		agents:       map[string]*agentState{},
		parts:        map[tpKey]*partition{},
		outputs:      map[string]bool{},
		internal:     map[string]bool{},
		eos:          cfg.ExactlyOnce,
		txn:          1,
		poisoned:     map[poisonKey]poison{},
		quit:         make(chan struct{}),
	}
	for _, t := range cfg.Outputs {
		m.outputs[t] = true
	}
	m.openTxn.Store(1)
	m.in.wake = make(chan struct{}, 1)
	m.prodQ.wake = make(chan struct{}, 1)
	m.commitQ = make(chan *commitJob, 1)
	m.freeze = newFreezeGuard(cfg.FreezeGap)
	m.calm = m.freeze.calm
	m.mem.room = make(chan struct{})
	for _, a := range cfg.Agents {
		m.agents[a.Name] = &agentState{
			cfg:    a,
			mon:    cfg.Monitor.Agent(a.Name),
			byKey:  a.Ordering == "key",
			tables: len(a.Tables) > 0,
			dlq:    DLQTopic(cfg.App, a.Name),
			parts:  map[tpKey]*partition{},
		}
		m.internal[DLQTopic(cfg.App, a.Name)] = true
		for _, t := range a.Tables {
			m.internal[tables.ChangelogTopic(cfg.App, t)] = true
		}
	}
	return m
}

// Attach sets the consumer whose partitions the manager pauses, resumes and
// commits. Call it once, before Run.
func (m *Manager) Attach(c Consumer) { m.consumer = c }

// Message takes one record from the poll loop. It never blocks, and keeps
// a copy of *msg, not msg (transport.Consumer reuses it).
func (m *Manager) Message(msg *transport.Message) { m.in.pushMsg(msg, false) }

// Position takes the consumer's position in a partition, in order with its
// records (transport.PositionHandler): offsets below it that no record was
// received for hold none (transaction markers), and the frontier passes
// them once every record before is done.
func (m *Manager) Position(tp transport.TopicPartition, next transport.Offset) {
	m.in.pushMsg(&transport.Message{Topic: tp.Topic, Partition: tp.Partition, Offset: next}, true)
}

// Assigned takes partitions newly assigned to this worker.
func (m *Manager) Assigned(parts []transport.TopicPartition) { m.in.push(&assignReq{parts: parts}) }

// Revoked takes partitions away in an orderly rebalance: delivery stops,
// their instances get Revoke and may finish in-flight events (up to
// RevokeTimeout), then the frontier is committed. It returns when that is
// done, so the consumer gives the partitions up only after.
func (m *Manager) Revoked(parts []transport.TopicPartition) { m.revoke(parts, false) }

// Lost drops partitions that may already belong to another worker, without
// committing.
func (m *Manager) Lost(parts []transport.TopicPartition) { m.revoke(parts, true) }

func (m *Manager) revoke(parts []transport.TopicPartition, lost bool) {
	req := &revokeReq{parts: parts, lost: lost, done: make(chan struct{})}
	m.in.push(req)
	select {
	case <-req.done:
	case <-m.stopped:
	case <-time.After(m.cfg.RevokeTimeout + m.drainTimeout() + 10*time.Second):
		// checkRevokes ends every revoke by its drainBy; this is only a
		// bound in case the Run goroutine is stuck.
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
	if m.eos {
		if _, ok := m.producer.(TxnProducer); !ok {
			return errors.New("agents: Config.ExactlyOnce needs a transactional producer")
		}
	}
	for _, a := range m.agents {
		if a.tables && m.cfg.Restorer == nil {
			return fmt.Errorf("agents: agent %q declares tables but Config.Restorer is nil", a.cfg.Name)
		}
	}
	m.ctx = ctx
	stopProducer, producerDone := make(chan struct{}), make(chan struct{})
	go m.runProducer(stopProducer, producerDone)
	defer func() { close(stopProducer); <-producerDone }()
	stopPulse := make(chan struct{})
	go m.freeze.run(stopPulse, func(d time.Duration) {
		m.mon.Freezes.Add(1)
		if !m.eos {
			// Records librdkafka queued before the pause are past their
			// message timeout, but its broker thread may send them
			// before its once-a-second timeout scan fails them: after a
			// pause that cost the partitions they would land after the
			// next owners' writes. Withdraw them at once (they fail with
			// ErrPurged and are produced again once the group confirms
			// the partitions, freeze.go). Under exactly-once the
			// transaction's fencing covers them.
			if pq, ok := m.producer.(interface{ PurgeQueued() }); ok {
				pq.PurgeQueued()
			}
		}
		m.log.Warn("the worker's process stood still; it may have lost its partitions without knowing, so it produces nothing until the group confirms them",
			"for", d.Round(time.Millisecond), "limit", m.cfg.FreezeGap)
	})
	defer close(stopPulse)
	committerDone := make(chan struct{})
	go m.runCommitter(m.commitQ, committerDone)
	defer func() { close(m.quit); close(m.commitQ); <-committerDone }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	m.lastCommit = time.Now()
	var msgs []inMsg
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
		for i := range msgs {
			if msgs[i].pos {
				m.position(&msgs[i].Message)
			} else {
				m.receive(&msgs[i].Message)
			}
			msgs[i] = inMsg{} // hold on to nothing of it
		}
		m.dispatch()
		if m.eos {
			m.handOutAll()
		}
		now := time.Now()
		m.checkFence(now)
		m.maybeCommit(now)
		m.checkRevokes(now)
		m.checkStalls(now)
		m.wakeRoom()
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
	// The producer goroutine fails what it holds once it is stopped.
	m.fenceWait = nil
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
		m.resultsTaken(it)
		if it.s.ended {
			// Its lanes are gone, so every epoch it names is stale:
			// dropped and counted, like any stale result (§4).
			it.s.agent.addStale(len(it.r.Results))
		} else {
			m.noteProgress(it.s, it.r, time.Now())
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
		m.release(it.n)
		m.produced(it.p, it.r, it.w, it.err)
	case *changelogAck:
		m.changelogAcked(it)
	case *txnAck:
		m.txnAcked(it)
	case *commitDone:
		m.committed(it)
	case *funcReq:
		it.f()
	case *suspectReq:
		m.suspected(it)
	case *recoveredReq:
		m.recovered(it)
	case *startReq:
		m.startRead(it)
	case *pauseReq:
		for name, a := range m.agents {
			if it.agent == "" || it.agent == name {
				a.paused = it.paused
				for _, p := range a.parts {
					m.applyPause(p)
				}
			}
		}
	case *blockReq:
		if a := m.agents[it.agent]; a != nil {
			m.block(a, it.reason)
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
