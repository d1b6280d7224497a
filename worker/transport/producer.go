package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// AnyPartition lets the producer's partitioner (murmur2_random over the
// key) choose a record's partition. It is kafka.PartitionAny.
const AnyPartition = kafka.PartitionAny

// Record is one record to produce.
type Record struct {
	// Topic is the destination topic. Required.
	Topic string
	// Partition is the destination partition, or AnyPartition to let the
	// partitioner choose from Key (murmur2, as the Java client does; keyless
	// records go to a random partition). Note that the zero value is
	// partition 0, not AnyPartition.
	Partition int32
	// Key is the record key; nil for none.
	Key []byte
	// Value is the record value; nil is a tombstone on compacted topics.
	Value []byte
	// Headers are the record headers, in order.
	Headers []Header
	// Timestamp is the record's create time. Default (zero): the time of
	// Produce.
	Timestamp time.Time
	// Allowed, if set, is asked before each attempt to hand the record to
	// librdkafka (the first, and each further one while its queue is full:
	// Produce waits for room): false fails the record with ErrWithheld. The worker uses it
	// so that a record whose Produce began before the process stood still
	// is not queued after. Default (nil): always allowed.
	Allowed func() bool
}

// ErrWithheld fails a record whose Record.Allowed said no.
var ErrWithheld = errors.New("transport: record withheld before it was queued")

// Producer writes records to Kafka with acks=all and idempotence, and
// reports each record's fate to a callback. That callback feeds the commit
// frontier: an input offset is only committed once every record produced
// for it has been acknowledged, so every Produce calls its callback exactly
// once, whatever happens (acknowledgement, definitive failure, Close).
//
// A Producer owns a delivery goroutine that reads librdkafka's delivery
// reports and error events and runs the callbacks. Produce may be called
// from any number of goroutines; Close once (more calls are no-ops).
//
// Shutdown (Close):
//  1. Refuse new records (their callbacks get ErrClosed).
//  2. Wait for Produce calls already in progress to hand over their record.
//  3. Flush: wait for acknowledgements until ctx ends.
//  4. Purge what is still unacknowledged (their callbacks get the purge
//     error, wrapping ErrClosed), close librdkafka's handle.
//  5. Fail the callbacks of records that got no report at all.
type Producer struct {
	p        *kafka.Producer // replaced by ResetTxn, under inflight held exclusively
	rep      reporter
	errs     *ErrorLog
	logger   *slog.Logger
	cfg      Config
	logsDone <-chan struct{}
	dlvDone  chan struct{} // closed when the delivery goroutine exits

	// txnMu serialises the transaction calls (txn.go) and Close.
	txnMu sync.Mutex
	// txnFatal is the fatal error of a transactional producer's current
	// librdkafka handle, cleared by ResetTxn; nil otherwise.
	txnFatal atomic.Pointer[error]
	// txnRefused is the first record of the open transaction refused
	// before librdkafka had it (it is not in the transaction, so
	// CommitTransaction would not fail): CommitTxn aborts instead.
	txnRefused atomic.Pointer[error]

	// inflight is held shared by Produce while it hands a record to
	// librdkafka, and exclusively by Close to wait for those calls.
	inflight sync.RWMutex
	closing  atomic.Bool
	closeCh  chan struct{} // closed when Close begins
	space    chan struct{} // a delivery report arrived: the local queue has room

	mu      sync.Mutex
	pending map[uint64]func(int64, error)
	nextID  uint64

	fatalOnce sync.Once
	fatalCh   chan struct{}
	fatalErr  atomic.Pointer[error]

	closeOnce sync.Once
	closeErr  error
	purged    atomic.Int64 // records failed by Close's purge
}

// NewProducer validates cfg and creates the producer (acks=all,
// enable.idempotence=true, partitioner=murmur2_random, linger.ms from
// Config.Linger). librdkafka connects in the background: use Admin.Ping
// first to find out whether Kafka is reachable.
func NewProducer(cfg Config, opts ...Option) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	p := &Producer{
		rep:     reporter{client: "producer", logger: o.logger, errs: o.errs},
		errs:    o.errs,
		logger:  o.logger,
		cfg:     cfg,
		closeCh: make(chan struct{}),
		space:   make(chan struct{}, 1),
		pending: make(map[uint64]func(int64, error)),
		fatalCh: make(chan struct{}),
	}
	if err := p.open(); err != nil {
		return nil, err
	}
	return p, nil
}

// open creates the librdkafka handle and its goroutines; a transactional
// producer also initialises transactions (fencing an earlier producer of
// the same TransactionalID and aborting its open transaction) and begins
// the first one.
func (p *Producer) open() error {
	kp, err := kafka.NewProducer(ptr(p.cfg.producerConfig()))
	if err != nil {
		return fmt.Errorf("transport: create producer: %w", err)
	}
	p.p = kp
	p.dlvDone = make(chan struct{})
	p.logsDone = ForwardLogs(kp.Logs(), p.logger, "producer")
	go p.deliveries(kp, p.dlvDone)
	if p.cfg.TransactionalID == "" {
		return nil
	}
	if err := p.initTxn(); err != nil {
		kp.Close()
		<-p.dlvDone
		<-p.logsDone
		p.p = nil
		return err
	}
	return nil
}

// Produce hands rec to librdkafka and returns. onDone (which may be nil) is
// called exactly once: with nil when Kafka acknowledged the record (all
// in-sync replicas have it), or with the error that definitively failed
// it. It runs on the Producer's delivery goroutine (or, for a record
// refused outright, on a new goroutine; for records still unacknowledged
// at Close, on the goroutine calling Close), never inside Produce, so it
// may take locks the caller of Produce holds. Callbacks run one at a time
// and must not block: a slow callback delays every later acknowledgement.
//
// Produce blocks while librdkafka's local queue is full (64 MiB or 100k
// records): that is the producer's backpressure. It returns at once when
// the Producer is closing. Safe for concurrent use.
func (p *Producer) Produce(rec Record, onDone func(error)) {
	if onDone == nil {
		p.ProduceOffset(rec, nil)
		return
	}
	p.ProduceOffset(rec, func(_ int64, err error) { onDone(err) })
}

// ProduceOffset is Produce with the record's offset: onDone gets the offset
// Kafka gave the record in its partition (from the delivery report) with a
// nil error, or -1 with the error that failed it. The same rules hold: it
// is called exactly once, never inside ProduceOffset, and must not block.
// The changelog writes of tables need the offset: it becomes the local
// store's checkpoint. Safe for concurrent use.
func (p *Producer) ProduceOffset(rec Record, onDone func(offset int64, err error)) {
	if onDone == nil {
		onDone = func(int64, error) {}
	}
	p.inflight.RLock()
	defer p.inflight.RUnlock()
	if p.closing.Load() {
		go onDone(-1, ErrClosed)
		return
	}
	if errp := p.fatalErr.Load(); errp != nil {
		go onDone(-1, fmt.Errorf("transport: producer failed: %w", *errp))
		return
	}
	if errp := p.txnFatal.Load(); errp != nil {
		go onDone(-1, fmt.Errorf("%w: %w", ErrTxnFatal, *errp))
		return
	}
	p.mu.Lock()
	p.nextID++
	id := p.nextID
	p.pending[id] = onDone
	p.mu.Unlock()

	topic := rec.Topic
	msg := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: rec.Partition},
		Key:            rec.Key,
		Value:          rec.Value,
		Headers:        kafkaHeaders(rec.Headers),
		Timestamp:      rec.Timestamp,
		Opaque:         id,
	}
	var wait *time.Timer
	if rec.Allowed != nil && !rec.Allowed() {
		// Asked under inflight too: a transaction may have been aborted
		// while this call waited for it (AbortTxn), and the record must
		// not join the next one.
		p.refuse(id, rec, ErrWithheld)
		return
	}
	for {
		err := p.p.Produce(msg, nil)
		if err == nil {
			return
		}
		var kerr kafka.Error
		if errors.As(err, &kerr) && kerr.Code() == kafka.ErrQueueFull && !p.closing.Load() {
			// Wait for a delivery report to make room; the timer covers
			// room made without one (e.g. a purge).
			if wait == nil {
				wait = time.NewTimer(50 * time.Millisecond)
				defer wait.Stop()
			} else {
				wait.Reset(50 * time.Millisecond)
			}
			select {
			case <-p.space:
			case <-wait.C:
			case <-p.closeCh:
			}
			if rec.Allowed != nil && !rec.Allowed() {
				err = ErrWithheld
			} else {
				continue
			}
		}
		if p.closing.Load() && errors.As(err, &kerr) && kerr.Code() == kafka.ErrQueueFull {
			err = fmt.Errorf("%w: %w", ErrClosed, err)
		}
		p.refuse(id, rec, err)
		return
	}
}

// refuse fails record id, which librdkafka never took, on a goroutine of its
// own; a transactional producer's open transaction becomes abort-only.
func (p *Producer) refuse(id uint64, rec Record, err error) {
	err = fmt.Errorf("transport: produce to %s[%d]: %w", rec.Topic, rec.Partition, err)
	if p.cfg.TransactionalID != "" {
		p.txnRefused.CompareAndSwap(nil, &err)
	}
	if cb := p.take(id); cb != nil {
		go cb(-1, err)
	}
}

// take removes and returns the callback of id, or nil if it was already
// taken. Whoever takes a callback calls it: that is what makes each
// callback run exactly once.
func (p *Producer) take(id uint64) func(int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cb, ok := p.pending[id]
	if !ok {
		return nil
	}
	delete(p.pending, id)
	return cb
}

// deliveries runs the callbacks from delivery reports and records error
// events, until librdkafka's handle is closed.
func (p *Producer) deliveries(kp *kafka.Producer, done chan struct{}) {
	defer close(done)
	for ev := range kp.Events() {
		switch e := ev.(type) {
		case *kafka.Message:
			id, _ := e.Opaque.(uint64)
			var err error
			if e.TopicPartition.Error != nil {
				topic := topicOf(e.TopicPartition)
				err = fmt.Errorf("transport: produce to %s[%d]: %w", topic, e.TopicPartition.Partition, e.TopicPartition.Error)
				var kerr kafka.Error
				purged := errors.As(e.TopicPartition.Error, &kerr) &&
					(kerr.Code() == kafka.ErrPurgeQueue || kerr.Code() == kafka.ErrPurgeInflight)
				if purged && p.closing.Load() {
					p.purged.Add(1)
					err = fmt.Errorf("%w: %w", ErrClosed, err)
				} else if purged {
					err = fmt.Errorf("%w: %w", ErrPurged, err)
				} else {
					p.rep.report(e.TopicPartition.Error, topic, e.TopicPartition.Partition)
				}
			}
			if cb := p.take(id); cb != nil {
				off := int64(-1)
				if err == nil {
					off = int64(e.TopicPartition.Offset)
				}
				cb(off, err)
			}
			select {
			case p.space <- struct{}{}:
			default:
			}
		case kafka.Error:
			p.rep.report(e, "", -1)
			if e.IsFatal() && p.cfg.TransactionalID != "" {
				// A transactional producer is re-created (ResetTxn),
				// not given up: the next transaction call says so.
				var err error = e
				p.txnFatal.CompareAndSwap(nil, &err)
			} else if e.IsFatal() {
				p.fatalOnce.Do(func() {
					var err error = e
					p.fatalErr.Store(&err)
					close(p.fatalCh)
				})
			}
		}
	}
}

// ErrPurged fails a record that PurgeQueued withdrew before it was sent.
var ErrPurged = errors.New("transport: record withdrawn before it was sent (the worker lost its partitions)")

// PurgeQueued withdraws every record waiting in librdkafka's queue that
// has not been sent to a broker yet; their callbacks get ErrPurged.
// Records already sent are left alone: their fate is the broker's. A worker
// calls it when it lost its partitions, so that nothing it queued for them
// goes out after their next owner's writes. Safe for concurrent use; a
// no-op once Close began.
func (p *Producer) PurgeQueued() {
	p.inflight.RLock()
	defer p.inflight.RUnlock()
	if p.closing.Load() || p.p == nil {
		return
	}
	if err := p.p.Purge(kafka.PurgeQueue | kafka.PurgeNonBlocking); err != nil {
		p.rep.report(err, "", -1)
	}
}

// Fatal returns a channel that is closed when librdkafka reports a fatal
// producer error (e.g. the idempotent producer was fenced or lost its
// sequence). The producer is then unusable: every later Produce fails, and
// the owner should shut down or recreate it. Err tells the error.
func (p *Producer) Fatal() <-chan struct{} { return p.fatalCh }

// Err returns the fatal error that closed Fatal, or nil.
func (p *Producer) Err() error {
	if e := p.fatalErr.Load(); e != nil {
		return *e
	}
	return nil
}

// Errors returns the ErrorLog this client records into.
func (p *Producer) Errors() *ErrorLog { return p.errs }

// Pending returns how many records are waiting for their callback.
func (p *Producer) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// Close flushes and closes the producer; see Producer for the steps. It
// waits for acknowledgements until ctx ends, then fails what is left, so
// when Close returns the callback of every record that Produce handed to
// librdkafka has been called (records refused outright, by a Produce racing
// with Close, get theirs on a goroutine of their own). It returns an error
// naming how many records were not acknowledged, or nil. Close is
// idempotent; later calls return the first call's result.
func (p *Producer) Close(ctx context.Context) error {
	p.closeOnce.Do(func() { p.closeErr = p.close(ctx) })
	return p.closeErr
}

func (p *Producer) close(ctx context.Context) error {
	p.txnMu.Lock()
	defer p.txnMu.Unlock()
	p.closing.Store(true)
	close(p.closeCh)
	p.inflight.Lock() // barrier: no Produce is handing over a record
	p.inflight.Unlock()
	if p.p == nil { // a ResetTxn failed: nothing is open
		return p.failLeft()
	}
	if p.cfg.TransactionalID != "" && p.txnFatal.Load() == nil {
		// What the open transaction holds was not committed: abort it,
		// so read_committed readers need not wait for its timeout.
		if err := p.p.AbortTransaction(ctx); err != nil {
			p.rep.report(err, "", -1)
		}
	}

	for p.p.Len() > 0 && ctx.Err() == nil {
		step := 100 * time.Millisecond
		if dl, ok := ctx.Deadline(); ok {
			if left := time.Until(dl); left < step {
				step = left
			}
		}
		if step > 0 {
			p.p.Flush(int(max(step/time.Millisecond, 1)))
		}
	}
	if p.p.Len() > 0 {
		// Out of time: purge, so the remaining records get a report
		// (ErrPurgeQueue / ErrPurgeInflight) rather than nothing.
		_ = p.p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking)
		p.p.Flush(500)
	}
	p.p.Close() // closes Events and Logs
	<-p.dlvDone
	<-p.logsDone
	return p.failLeft()
}

// failLeft fails the callbacks of records that got no report at all.
func (p *Producer) failLeft() error {
	p.mu.Lock()
	left := p.pending
	p.pending = map[uint64]func(int64, error){}
	p.mu.Unlock()
	for _, cb := range left {
		cb(-1, fmt.Errorf("%w: closed before Kafka acknowledged the record", ErrClosed))
	}
	if n := int64(len(left)) + p.purged.Load(); n > 0 {
		return fmt.Errorf("transport: producer closed with %d unacknowledged records: %w", n, ErrClosed)
	}
	return nil
}
