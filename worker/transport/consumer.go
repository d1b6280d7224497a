package transport

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Handler is implemented by the Consumer's owner (the app's dispatcher). All
// its methods are called from the Consumer's poll goroutine, one at a time,
// in the order Kafka dictates: Assigned before the first Message of a
// partition, no Message of a partition after its Revoked or Lost. They must
// return quickly: while one runs, nothing is polled, and a poll loop
// stalled for Config.MaxPollInterval gets the consumer expelled from its
// group.
//
// From inside any of its methods the handler may call the Consumer's
// Commit, Pause, Resume and Assignment (they do not need the poll
// goroutine).
type Handler interface {
	// Assigned is called after parts were added to this consumer's
	// assignment (cooperative rebalancing: parts are only the new ones).
	// Consumption starts from the committed offsets (auto.offset.reset
	// earliest without one) once Assigned returns; pause parts here to
	// hold them back (e.g. until their table state is recovered).
	Assigned(parts []TopicPartition)
	// Revoked is called before parts leave this consumer's assignment in
	// an orderly rebalance or at shutdown. The partitions are still
	// assigned while it runs, so this is the moment to commit their
	// final offsets.
	Revoked(parts []TopicPartition)
	// Lost is called instead of Revoked when the assignment was lost
	// (session timeout, max.poll.interval.ms exceeded, fencing): the
	// partitions may already belong to another member, so committing
	// for them is refused. In-flight work for them must be dropped.
	Lost(parts []TopicPartition)
	// Message is called for each record, in offset order per partition.
	// It must not block: apply backpressure with Consumer.Pause.
	// msg.Offset is the record's offset; commit Offset+1 once it is done.
	// msg itself is valid only until Message returns (the Consumer reuses
	// it for the next record, so delivery allocates nothing of its own);
	// its Key, Value and Headers are the handler's to keep.
	Message(msg *Message)
}

// StatsHandler is implemented by a Handler that wants librdkafka's
// statistics JSON (see Config.StatsInterval). Stats runs on the poll
// goroutine and must return quickly.
type StatsHandler interface {
	Stats(json string)
}

// pollTimeout is the longest one Poll call blocks; it bounds how late Run
// notices its context end.
const pollTimeout = 100 * time.Millisecond

// PositionHandler is a Handler that also hears the consumer's position in
// its partitions. Position is called on the poll goroutine, in order with
// Message: next is the offset after every record of tp handed to Message
// so far, and after the offsets behind them that hold no record for the
// application — transaction markers, and records of aborted transactions
// (read_committed) — so committing next passes them. (A transactional
// topic's last offset is a commit marker: committing the last record's
// offset + 1 leaves a lag of 1 for good. Kafka Streams commits the
// consumer's position for the same reason, KAFKA-6607.) It is called at
// most every positionEvery per partition, when next moved past the last
// record handed over (or the last position told) in the current
// assignment.
type PositionHandler interface {
	Position(tp TopicPartition, next Offset)
}

// positionEvery is how often the consumer's positions are read.
const positionEvery = 500 * time.Millisecond

// Consumer is a consumer-group member over librdkafka with
// enable.auto.commit=false, enable.auto.offset.store=false,
// cooperative-sticky incremental assignment, auto.offset.reset=earliest and
// optional static membership. Offsets are committed only through Commit.
//
// Run owns the single poll goroutine; it delivers records and rebalance
// events to the Handler. Commit, Pause, Resume and Assignment are safe for
// concurrent use from any goroutine while Run runs: librdkafka's pause,
// resume and commit calls are thread-safe, so they are called directly
// (not routed through the poll goroutine, which would add up to one poll
// interval of latency); a read-write lock keeps the librdkafka handle alive
// for their duration, so none of them can race with its destruction.
//
// Shutdown (when Run's context ends, or on a fatal error):
//  1. Stop polling; the handler hears nothing more but this: the whole
//     assignment is passed to Handler.Revoked (or Lost, if librdkafka
//     already knows it is lost) while the partitions are still assigned,
//     so Revoked may Commit their final offsets.
//  2. Refuse Commit, Pause and Resume (ErrClosed) and wait for calls in
//     progress.
//  3. Close the librdkafka consumer: it unassigns and leaves the group -
//     except a static member (GroupInstanceID), which stays a member until
//     its session times out, so a restart within SessionTimeout gets its
//     partitions back without a rebalance. After a fatal error the handle
//     is not closed (confluent-kafka-go v2.11.1's Close would never
//     return) but left to the process exit; a close that takes longer than
//     30s is abandoned the same way.
type Consumer struct {
	cfg    Config
	topics []string
	h      Handler
	logger *slog.Logger
	rep    reporter
	errs   *ErrorLog

	started atomic.Bool
	closing atomic.Bool // shutdown began: the handler gets no more news
	closed  atomic.Bool // no more calls into librdkafka from outside Run

	// life guards kc: Commit, Pause and Resume hold it shared while they
	// call into librdkafka; Run holds it exclusively to set kc and to
	// destroy it.
	life sync.RWMutex
	kc   *kafka.Consumer

	// mu guards assigned. Commit holds it shared across the commit, so a
	// rebalance (which holds it exclusively to change assigned) waits for
	// commits in progress: a partition's offsets are never committed
	// after it left the assignment.
	mu       sync.RWMutex
	assigned map[TopicPartition]bool

	rebalanceErr error   // set by the rebalance callback (poll goroutine only)
	fatal        bool    // a fatal error was polled (poll goroutine only)
	msg          Message // the record being delivered (poll goroutine only)

	// Positions (PositionHandler; poll goroutine only): the offset after
	// the last record handed over in the current assignment of each
	// partition, or the last position told; and when they were read.
	told      map[TopicPartition]Offset
	positions time.Time
}

// closeTimeout bounds librdkafka's consumer close (unassign, LeaveGroup).
// Past it the handle is abandoned rather than Run hanging.
const closeTimeout = 30 * time.Second

// NewConsumer validates cfg (GroupID is required) and returns a Consumer
// that will subscribe to topics and report to h. It does not contact Kafka:
// Run creates the librdkafka consumer.
func NewConsumer(cfg Config, topics []string, h Handler, opts ...Option) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.GroupID == "" {
		return nil, errors.New("transport: GroupID: required by the consumer")
	}
	if len(topics) == 0 {
		return nil, errors.New("transport: consumer needs at least one topic")
	}
	for i, t := range topics {
		if t == "" {
			return nil, fmt.Errorf("transport: topics[%d]: empty topic name", i)
		}
	}
	if h == nil {
		return nil, errors.New("transport: consumer needs a Handler")
	}
	o := buildOptions(opts)
	return &Consumer{
		cfg:      cfg,
		topics:   slices.Clone(topics),
		h:        h,
		logger:   o.logger,
		rep:      reporter{client: "consumer", logger: o.logger, errs: o.errs},
		errs:     o.errs,
		assigned: make(map[TopicPartition]bool),
		told:     make(map[TopicPartition]Offset),
	}, nil
}

// Errors returns the ErrorLog this client records into.
func (c *Consumer) Errors() *ErrorLog { return c.errs }

// Run creates the librdkafka consumer, subscribes and polls until ctx ends,
// then shuts down as described on Consumer and returns. It returns nil after
// an orderly shutdown, the fatal error if librdkafka reported one (e.g. a
// static member fenced by another instance with the same
// GroupInstanceID), or an error if the consumer could not be created or
// subscribed. Errors that librdkafka recovers from by itself (brokers down,
// max.poll.interval.ms exceeded, which costs the assignment) are logged,
// recorded in the ErrorLog and do not end Run. Run may be called once;
// a second call returns ErrAlreadyRunning.
func (c *Consumer) Run(ctx context.Context) (err error) {
	if !c.started.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	kc, err := kafka.NewConsumer(ptr(c.cfg.consumerConfig()))
	if err != nil {
		c.closed.Store(true)
		return fmt.Errorf("transport: create consumer: %w", err)
	}
	logsDone := ForwardLogs(kc.Logs(), c.logger, "consumer")
	c.life.Lock()
	c.kc = kc
	c.life.Unlock()
	defer func() {
		closed, serr := c.shutdown(kc)
		err = errors.Join(err, serr)
		if closed {
			<-logsDone // closed with the handle
		}
	}()

	if err := kc.SubscribeTopics(c.topics, c.rebalance); err != nil {
		return fmt.Errorf("transport: subscribe to %v: %w", c.topics, err)
	}
	c.logger.Info("consumer started", "group", c.cfg.GroupID, "topics", c.topics,
		"client_id", c.cfg.clientID(), "static", c.cfg.GroupInstanceID != "")

	for ctx.Err() == nil {
		if err := c.poll(kc); err != nil {
			return err
		}
	}
	return nil
}

// poll polls once and handles the event. It returns a fatal error, if any.
func (c *Consumer) poll(kc *kafka.Consumer) error {
	ev := kc.Poll(int(pollTimeout / time.Millisecond))
	if c.rebalanceErr != nil {
		err := c.rebalanceErr
		c.rebalanceErr = nil
		return err
	}
	switch e := ev.(type) {
	case nil:
	case *kafka.Message:
		if e.TopicPartition.Error != nil {
			c.rep.report(e.TopicPartition.Error, topicOf(e.TopicPartition), e.TopicPartition.Partition)
			return nil
		}
		setMessage(&c.msg, e)
		c.h.Message(&c.msg)
		c.told[TopicPartition{Topic: c.msg.Topic, Partition: c.msg.Partition}] = c.msg.Offset + 1
		c.msg = Message{} // hold on to nothing of it
	case *kafka.Stats:
		if sh, ok := c.h.(StatsHandler); ok {
			sh.Stats(e.String())
		}
	case kafka.Error:
		c.rep.report(e, "", -1)
		if e.IsFatal() {
			c.fatal = true
			return fmt.Errorf("transport: consumer failed: %w", e)
		}
	default:
		c.logger.Debug("consumer event", "event", e.String())
	}
	c.tellPositions(kc)
	return nil
}

// tellPositions reports to a PositionHandler, every positionEvery, the
// positions of the assigned partitions that moved past the last record
// handed over (or the last position reported). librdkafka's position is
// the application's: it moves past a marker only once the records before
// it were polled, so every record below it was handed to Message first;
// and it is reset on unassign, so a new assignment's first position comes
// from what it consumed (a partition that starts at a marker: no record,
// only the position past it).
func (c *Consumer) tellPositions(kc *kafka.Consumer) {
	ph, ok := c.h.(PositionHandler)
	if !ok || time.Since(c.positions) < positionEvery {
		return
	}
	c.positions = time.Now()
	c.mu.RLock()
	tps := make([]kafka.TopicPartition, 0, len(c.assigned))
	for tp := range c.assigned {
		topic := tp.Topic
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: tp.Partition})
	}
	c.mu.RUnlock()
	if len(tps) == 0 {
		return
	}
	got, err := kc.Position(tps)
	if err != nil {
		c.logger.Debug("reading the consumer's positions failed", "err", err)
		return
	}
	for _, r := range got {
		tp := TopicPartition{Topic: topicOf(r), Partition: r.Partition}
		if r.Error != nil || r.Offset < 0 {
			continue // none yet
		}
		if told, ok := c.told[tp]; ok && Offset(r.Offset) <= told {
			continue
		}
		c.told[tp] = Offset(r.Offset)
		ph.Position(tp, Offset(r.Offset))
	}
}

// rebalance is librdkafka's rebalance callback; it runs on the poll
// goroutine, inside Poll or Close.
func (c *Consumer) rebalance(kc *kafka.Consumer, ev kafka.Event) error {
	// The protocol is always COOPERATIVE: Config forbids overriding
	// partition.assignment.strategy. (Asking librdkafka with
	// GetRebalanceProtocol could hang during Close:
	// confluent-kafka-go#1016.)
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		parts := partitionsOf(e.Partitions)
		if err := kc.IncrementalAssign(e.Partitions); err != nil {
			c.rep.report(err, "", -1)
			c.rebalanceErr = fmt.Errorf("transport: assign %s: %w", fmtParts(parts), err)
			return err
		}
		// librdkafka keeps an application pause on its partition object
		// across unassign and assign: a partition paused while it was
		// revoked (or after) would come back paused, and fetch nothing
		// with nothing left to resume it. An assignment starts fetching;
		// the handler pauses it again if it needs to.
		if err := kc.Resume(e.Partitions); err != nil {
			c.rep.report(err, "", -1)
			c.rebalanceErr = fmt.Errorf("transport: resume the assigned %s: %w", fmtParts(parts), err)
			return err
		}
		if len(parts) == 0 || c.closing.Load() {
			// Cooperative rebalances end with an empty assignment
			// for members that gain nothing, and an assignment that
			// completes while closing is revoked again at once: both
			// need the ack above, not the handler.
			c.logger.Debug("rebalance: assignment acknowledged only", "group", c.cfg.GroupID,
				"partitions", fmtParts(parts), "closing", c.closing.Load())
			return nil
		}
		c.mu.Lock()
		for _, tp := range parts {
			c.assigned[tp] = true
			delete(c.told, tp) // a new assignment: no record of it yet
		}
		c.mu.Unlock()
		c.logger.Info("partitions assigned", "group", c.cfg.GroupID, "partitions", fmtParts(parts))
		c.h.Assigned(parts)
	case kafka.RevokedPartitions:
		// Only partitions the handler was told about: at shutdown they
		// were already revoked (see shutdown) and this is just the ack.
		mine := c.owned(partitionsOf(e.Partitions))
		switch {
		case len(mine) == 0:
		case kc.AssignmentLost():
			// Forget them first, so Commit refuses them.
			c.forget(mine)
			c.logger.Warn("partitions lost", "group", c.cfg.GroupID, "partitions", fmtParts(mine))
			c.h.Lost(mine)
		default:
			c.logger.Info("partitions revoked", "group", c.cfg.GroupID, "partitions", fmtParts(mine))
			c.h.Revoked(mine)
			c.forget(mine)
		}
		if err := kc.IncrementalUnassign(e.Partitions); err != nil {
			c.rep.report(err, "", -1)
			if !c.closed.Load() {
				c.rebalanceErr = fmt.Errorf("transport: unassign %s: %w", fmtParts(partitionsOf(e.Partitions)), err)
			}
			return err
		}
	}
	return nil
}

// owned returns the partitions of parts that are in the assignment.
func (c *Consumer) owned(parts []TopicPartition) []TopicPartition {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []TopicPartition
	for _, tp := range parts {
		if c.assigned[tp] {
			out = append(out, tp)
		}
	}
	return out
}

func (c *Consumer) forget(parts []TopicPartition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tp := range parts {
		delete(c.assigned, tp)
		delete(c.told, tp) // (Run's goroutine, or Close's while Run waits for it)
	}
}

// shutdown runs the shutdown steps documented on Consumer. closed reports
// whether the librdkafka handle was closed (and its log channel with it).
func (c *Consumer) shutdown(kc *kafka.Consumer) (closed bool, err error) {
	// 1. The handler hears no more news, except the final revoke, which
	// it gets while the partitions are still assigned so it can commit.
	c.closing.Store(true)
	if left := c.Assignment(); len(left) > 0 {
		if c.fatal || kc.AssignmentLost() {
			c.forget(left)
			c.logger.Warn("partitions lost", "group", c.cfg.GroupID, "partitions", fmtParts(left))
			c.h.Lost(left)
		} else {
			c.logger.Info("partitions revoked", "group", c.cfg.GroupID, "partitions", fmtParts(left), "reason", "shutdown")
			c.h.Revoked(left)
			c.forget(left)
		}
	}
	// 2. Refuse new calls, wait for those in progress.
	c.closed.Store(true)
	c.life.Lock()
	defer c.life.Unlock()
	c.kc = nil

	// 3. Close: librdkafka unassigns through the rebalance callback (which
	// now only acknowledges) and leaves the group unless static.
	if c.fatal {
		// confluent-kafka-go v2.11.1's Close ignores the error of
		// rd_kafka_consumer_close_queue and then waits forever for a close
		// that never started (fixed upstream by confluent-kafka-go#1588).
		// Leave the handle to the process exit, which a fatal error calls
		// for anyway.
		c.logger.Error("not closing the librdkafka consumer after a fatal error (it would hang); its threads live until the process exits",
			"group", c.cfg.GroupID)
		return false, nil
	}
	done := make(chan error, 1)
	go func() { done <- kc.Close() }()
	select {
	case cerr := <-done:
		if cerr != nil {
			err = fmt.Errorf("transport: close consumer: %w", cerr)
		}
	case <-time.After(closeTimeout):
		// Same hang as above, for a fatal error that was raised but not
		// polled yet. The goroutine stays behind; nothing else touches kc.
		c.rep.report(fmt.Errorf("librdkafka consumer close did not finish within %s; abandoning it", closeTimeout), "", -1)
		return false, fmt.Errorf("transport: close consumer: did not finish within %s", closeTimeout)
	}
	c.logger.Info("consumer closed", "group", c.cfg.GroupID, "static", c.cfg.GroupInstanceID != "")
	return true, err
}

// acquire returns the live librdkafka consumer with life held shared, or an
// error; on success the caller must call c.life.RUnlock.
func (c *Consumer) acquire() (*kafka.Consumer, error) {
	// Checked before locking too: from inside a rebalance callback run by
	// Close, Run holds life exclusively and RLock would deadlock.
	if c.closed.Load() {
		return nil, ErrClosed
	}
	c.life.RLock()
	if c.closed.Load() {
		c.life.RUnlock()
		return nil, ErrClosed
	}
	if c.kc == nil {
		c.life.RUnlock()
		return nil, ErrNotRunning
	}
	return c.kc, nil
}

// Commit synchronously commits offsets (each the offset of the next record
// to consume, i.e. last processed + 1) for partitions that are assigned to
// this consumer. Offsets of partitions that are not (any more) assigned are
// skipped and reported with a *NotAssignedError (errors.Is ErrNotAssigned),
// joined with any commit error; the others are still committed. A
// rebalance waits for a Commit in progress. Per-partition failures are
// returned joined, each naming its partition. Safe for concurrent use,
// including from Handler.Revoked; returns ErrNotRunning before Run and
// ErrClosed once shutdown refuses calls.
func (c *Consumer) Commit(offsets []PartitionOffset) error {
	if len(offsets) == 0 {
		return nil
	}
	kc, err := c.acquire()
	if err != nil {
		return err
	}
	defer c.life.RUnlock()
	c.mu.RLock()
	defer c.mu.RUnlock()

	var keep []kafka.TopicPartition
	var skipped []PartitionOffset
	for _, o := range offsets {
		if c.assigned[TopicPartition{Topic: o.Topic, Partition: o.Partition}] {
			topic := o.Topic
			keep = append(keep, kafka.TopicPartition{Topic: &topic, Partition: o.Partition, Offset: kafka.Offset(o.Offset)})
		} else {
			skipped = append(skipped, o)
		}
	}
	var errs []error
	if len(keep) > 0 {
		res, err := kc.CommitOffsets(keep)
		if err != nil {
			var kerr kafka.Error
			// "No offset to commit" is not a failure.
			if !errors.As(err, &kerr) || kerr.Code() != kafka.ErrNoOffset {
				c.rep.report(err, "", -1)
				errs = append(errs, fmt.Errorf("transport: commit %s: %w", fmtParts(partitionsOf(keep)), err))
			}
		}
		for _, r := range res {
			if r.Error != nil {
				c.rep.report(r.Error, topicOf(r), r.Partition)
				errs = append(errs, fmt.Errorf("transport: commit %s[%d]@%d: %w", topicOf(r), r.Partition, r.Offset, r.Error))
			}
		}
	}
	if len(skipped) > 0 {
		errs = append(errs, &NotAssignedError{Offsets: skipped})
	}
	return errors.Join(errs...)
}

// Pause stops fetching parts (librdkafka also drops what it had fetched for
// them but not delivered yet) until Resume. A partition's pause does not
// survive its revocation, nor does a pause of a partition no longer
// assigned: every assignment starts resumed (pause it again from
// Handler.Assigned if needed). Safe for
// concurrent use; returns ErrNotRunning before Run and ErrClosed once
// shutdown refuses calls.
func (c *Consumer) Pause(parts []TopicPartition) error {
	if len(parts) == 0 {
		return nil
	}
	kc, err := c.acquire()
	if err != nil {
		return err
	}
	defer c.life.RUnlock()
	if err := kc.Pause(kafkaPartitions(parts)); err != nil {
		return fmt.Errorf("transport: pause %s: %w", fmtParts(parts), err)
	}
	return nil
}

// Resume resumes fetching parts paused by Pause, from where delivery
// stopped. Safe for concurrent use; returns ErrNotRunning before Run and
// ErrClosed once shutdown refuses calls.
func (c *Consumer) Resume(parts []TopicPartition) error {
	if len(parts) == 0 {
		return nil
	}
	kc, err := c.acquire()
	if err != nil {
		return err
	}
	defer c.life.RUnlock()
	if err := kc.Resume(kafkaPartitions(parts)); err != nil {
		return fmt.Errorf("transport: resume %s: %w", fmtParts(parts), err)
	}
	return nil
}

// Assignment returns the partitions currently assigned to this consumer, as
// applied by the latest rebalance, sorted by topic and partition. Empty
// before Run and after it returns. Safe for concurrent use.
func (c *Consumer) Assignment() []TopicPartition {
	c.mu.RLock()
	out := make([]TopicPartition, 0, len(c.assigned))
	for tp := range c.assigned {
		out = append(out, tp)
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b TopicPartition) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out
}

// fmtParts formats partitions as "topic[0,1] other[3]" for logs and errors.
func fmtParts(parts []TopicPartition) string {
	byTopic := map[string][]int32{}
	var order []string
	for _, tp := range parts {
		t := tp.Topic
		if _, ok := byTopic[t]; !ok {
			order = append(order, t)
		}
		byTopic[t] = append(byTopic[t], tp.Partition)
	}
	s := ""
	for i, t := range order {
		ps := byTopic[t]
		slices.Sort(ps)
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s%v", t, ps)
	}
	if s == "" {
		return "[]"
	}
	return s
}
