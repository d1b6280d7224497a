package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Bounds of ChangelogReader's memory.
const (
	// changelogPrefetchKiB is librdkafka's prefetch queue of the reader,
	// shared by all its partitions (queued.max.messages.kbytes): 32 MiB.
	changelogPrefetchKiB = 32 << 10
	// ChangelogStreamRecords and ChangelogStreamBytes bound what a
	// ChangelogStream holds between two Fetch calls, and
	// ChangelogReaderBytes what all the streams of a reader hold together:
	// past any of them, the reader pauses the partition it delivers to
	// until Fetch takes its records (one record may overshoot). Records
	// count their key, value and 64 bytes. A stream holds more than a
	// restore's batch (10,000 records), so a restore applying one batch
	// rarely finds its partition paused: a pause drops what librdkafka
	// prefetched for the partition, which is then fetched again.
	ChangelogStreamRecords = 16384
	ChangelogStreamBytes   = 4 << 20
	ChangelogReaderBytes   = 64 << 20
	// recordOverhead is what a record costs besides its key and value.
	recordOverhead = 64
)

// pollHook, when set, is called by the poll goroutine with each polled
// record's offset before routing it (tests only).
var pollHook atomic.Pointer[func(offset int64)]

// changelogPollTimeout is the longest one Poll of the reader blocks: Add
// and Remove wait for the poll goroutine, so it bounds their latency.
const changelogPollTimeout = 10 * time.Millisecond

// ChangelogEvent is one record of a partition read by a ChangelogReader,
// or the news that the reader reached the partition's end.
type ChangelogEvent struct {
	// Offset is the record's offset; for an EOF, the partition's end (the
	// offset the next record will get).
	Offset int64
	// Key and Value are the record's; a nil Value is a tombstone. They
	// belong to the receiver.
	Key, Value []byte
	// EOF marks the partition's end: every record before Offset has been
	// delivered. Key and Value are nil.
	EOF bool
}

// ChangelogReader reads many partitions (table changelogs, for restores
// and standby replicas) through one librdkafka consumer: partitions are
// assigned and unassigned on it as restores start and end (no consumer
// group, no commits), and one poll goroutine routes each record, end of
// partition and error to the partition's ChangelogStream. The settings
// are in docs/kafka.md: auto.offset.reset=error (records deleted under a
// reader give ErrOffsetOutOfRange rather than a silent jump),
// enable.partition.eof=true, isolation.level from Config; Overrides apply
// except the properties the reader owns, which are logged and skipped.
//
// Memory is bounded: librdkafka prefetches at most 32 MiB for all the
// partitions together, and a stream holds at most ChangelogStreamRecords
// records or ChangelogStreamBytes bytes between two Fetch calls; past that
// the reader pauses the partition until its reader catches up
// (backpressure), so one slow partition never holds up the others.
//
// The consumer is created on the first Add, so a worker that never
// restores opens none. Topic ids and watermarks are asked through an
// Admin (the worker's, or one of its own). Methods are safe for concurrent
// use.
//
// Shutdown (Close):
//  1. refuse Add; end every stream with ErrClosed;
//  2. stop the poll goroutine;
//  3. close the consumer (abandoned after 30s, or after a fatal error, as
//     Consumer does), then the Admin if the reader created it.
type ChangelogReader struct {
	cfg    Config
	kcfg   kafka.ConfigMap
	logger *slog.Logger
	rep    reporter
	opts   []Option
	given  *Admin // the caller's Admin, or nil

	mu      sync.RWMutex
	closed  bool
	kc      *kafka.Consumer
	streams map[tpKey]*ChangelogStream
	stop    chan struct{}              // closed to end the poll goroutine
	done    chan struct{}              // closed when it ended
	cmds    chan func(*kafka.Consumer) // run by the poll goroutine between Polls
	logs    <-chan struct{}
	fatal   error

	adminOnce sync.Once
	admin     *Admin // the reader's own, created by adminOnce
	adminErr  error
	locating  atomic.Bool    // a locate runs: later errors wait for it, not queue
	buffered  atomic.Int64   // bytes held by all streams
	bg        sync.WaitGroup // locate goroutines
}

// NewChangelogReader validates cfg and returns a reader. admin answers its
// metadata questions (DescribeTopic, Watermarks); with a nil admin the
// reader creates one from cfg when first needed, and closes it with
// itself. opts set the logger and ErrorLog (shared with the worker's other
// clients). It does not contact Kafka.
func NewChangelogReader(cfg Config, admin *Admin, opts ...Option) (*ChangelogReader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	kcfg, skipped := cfg.changelogReaderConfig()
	for _, k := range slices.Sorted(maps.Keys(skipped)) {
		o.logger.Warn("kafka property not applied to the changelog reader", "property", k, "why", skipped[k])
	}
	return &ChangelogReader{
		cfg: cfg, kcfg: kcfg, logger: o.logger, opts: opts, given: admin,
		rep:     reporter{client: "changelog-reader", logger: o.logger, errs: o.errs},
		streams: map[tpKey]*ChangelogStream{},
	}, nil
}

func (r *ChangelogReader) getAdmin() (*Admin, error) {
	r.mu.RLock()
	closed := r.closed
	r.mu.RUnlock()
	switch {
	case closed:
		return nil, ErrClosed
	case r.given != nil:
		return r.given, nil
	}
	r.adminOnce.Do(func() { r.admin, r.adminErr = NewAdmin(r.cfg, r.opts...) })
	return r.admin, r.adminErr
}

// DescribeTopic is Admin.DescribeTopic through the reader's Admin.
func (r *ChangelogReader) DescribeTopic(ctx context.Context, topic string) (TopicInfo, error) {
	a, err := r.getAdmin()
	if err != nil {
		return TopicInfo{}, err
	}
	return a.DescribeTopic(ctx, topic)
}

// Watermarks is Admin.Watermarks through the reader's Admin, at the
// reader's isolation level (the level it reads at).
//
// At read_committed the end is the last stable offset, which a transaction
// still open holds back: a killed writer's (with another transactional id
// than its successor's, nothing fences it) stays open until the broker
// aborts it, up to its transaction timeout, while transactions of other
// writers commit after it. A restore to that end would miss them (a table
// going backwards). So while the last stable offset stays below the high
// watermark without moving, the end waits for it: it is taken once no
// transaction is open (the last stable offset reached the high watermark),
// or as soon as the last stable offset moves (a live writer committing:
// the open transaction is its current one), or past the transaction
// timeout and 15 s (the broker's check for timed-out transactions runs
// every 10 s).
func (r *ChangelogReader) Watermarks(ctx context.Context, topic string, partition int32) (low, high int64, err error) {
	a, err := r.getAdmin()
	if err != nil {
		return 0, 0, err
	}
	level := r.cfg.isolationLevel()
	if level != ReadCommitted {
		return a.Watermarks(ctx, topic, partition, level)
	}
	giveUp := time.Now().Add(r.cfg.transactionTimeout() + 15*time.Second)
	logged := false
	first := int64(-1)
	for {
		low, stable, err := a.Watermarks(ctx, topic, partition, ReadCommitted)
		if err != nil {
			return 0, 0, err
		}
		_, hw, err := a.Watermarks(ctx, topic, partition, ReadUncommitted)
		if err != nil {
			return 0, 0, err
		}
		if first < 0 {
			first = stable
		}
		if stable >= hw || stable != first {
			return low, stable, nil
		}
		if time.Now().After(giveUp) {
			r.logger.Warn("a transaction is still open on the changelog partition; its end is taken at the last stable offset",
				"topic", topic, "partition", partition, "last_stable", stable, "high_watermark", hw)
			return low, stable, nil
		}
		if !logged {
			logged = true
			r.logger.Info("waiting for a transaction open on the changelog partition to end before reading it",
				"topic", topic, "partition", partition, "last_stable", stable, "high_watermark", hw)
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Add starts reading partition of topic at offset from and returns the
// stream its records arrive on. A partition is read by at most one stream
// at a time: Remove it before adding it again. The stream gets only what
// is read for this Add, from from on: never a record or end of partition
// fetched for an earlier Add of the partition. The first Add creates the
// librdkafka consumer; Add waits for the poll goroutine (at most a Poll,
// 10ms, and the seek).
func (r *ChangelogReader) Add(topic string, partition int32, from int64) (*ChangelogStream, error) {
	if from < 0 {
		return nil, fmt.Errorf("transport: changelog reader: %s[%d]: offset %d is not a position", topic, partition, from)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.closed:
		return nil, ErrClosed
	case r.fatal != nil:
		return nil, r.fatal
	}
	k := tpKey{topic, partition}
	if _, ok := r.streams[k]; ok {
		return nil, fmt.Errorf("transport: changelog reader: %s[%d] is already being read", topic, partition)
	}
	if r.kc == nil {
		if err := r.start(); err != nil {
			return nil, err
		}
	}
	s := &ChangelogStream{
		r: r, key: k, tp: kafka.TopicPartition{Topic: &k.topic, Partition: partition},
		next: from, ready: make(chan struct{}, 1),
	}
	// Registered now, so a second Add is refused, but routed to only once
	// the poll goroutine has assigned it (s.live).
	r.streams[k] = s
	n := len(r.streams)
	r.mu.Unlock()
	err := r.do(func(kc *kafka.Consumer) error { return r.assign(kc, s, from) })
	r.mu.Lock()
	if err != nil {
		if r.streams[k] == s {
			delete(r.streams, k)
		}
		return nil, fmt.Errorf("transport: changelog reader: assign %s[%d]: %w", topic, partition, err)
	}
	r.logger.Debug("changelog reader: partition added", "topic", topic, "partition", partition, "offset", from,
		"partitions", n)
	return s, nil
}

// assign starts reading s's partition at from (poll goroutine). After
// IncrementalUnassign and IncrementalAssign librdkafka may still hand out
// records and ends of partition it fetched for an earlier assignment of
// the partition (both calls take effect asynchronously): the Seek takes a
// new fetch version before it returns, and librdkafka drops every queued
// event of an older version when it is polled. Only then is s routed to,
// on this goroutine, so nothing polled before reaches it.
func (r *ChangelogReader) assign(kc *kafka.Consumer, s *ChangelogStream, from int64) error {
	// A Remove that ran between Add's registering and this command found
	// the stream not live and unassigned nothing: assigning now would leave
	// the partition assigned with no stream.
	s.mu.Lock()
	removed := s.removed
	s.mu.Unlock()
	if removed {
		return ErrClosed
	}
	tp := s.tp
	tp.Offset = kafka.Offset(from)
	if err := kc.IncrementalAssign([]kafka.TopicPartition{tp}); err != nil {
		return err
	}
	if err := seekStarted(kc, tp, r.cfg.reachTimeout()); err != nil {
		if uerr := kc.IncrementalUnassign([]kafka.TopicPartition{s.tp}); uerr != nil {
			r.rep.report(uerr, s.key.topic, s.key.partition)
		}
		return fmt.Errorf("seek to %d: %w", from, err)
	}
	s.mu.Lock()
	s.live = true
	s.mu.Unlock()
	return nil
}

// seekStarted seeks tp to tp.Offset, retrying while the partition's fetch
// has not started yet (ERR__STATE) or an earlier stop is still under way
// (ERR__PREV_IN_PROGRESS), for at most timeout. Each try takes a new fetch
// version, but only one that succeeds also moves the fetch to it: were the
// assignment's own fetch start, with an older version, served after a
// failed seek, librdkafka would drop every record it fetched and the
// partition would stall.
func seekStarted(kc *kafka.Consumer, tp kafka.TopicPartition, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := kc.Seek(tp, 0)
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) ||
			(kerr.Code() != kafka.ErrState && kerr.Code() != kafka.ErrPrevInProgress) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// do runs f on the poll goroutine, between two Polls, and returns its
// error: assignments change there, so a record polled for a partition is
// routed before the partition is unassigned or assigned again. Once the
// poll goroutine has ended (Close, a fatal error) f is not run.
func (r *ChangelogReader) do(f func(*kafka.Consumer) error) error {
	errc := make(chan error, 1)
	select {
	case r.cmds <- func(kc *kafka.Consumer) { errc <- f(kc) }:
		return <-errc
	case <-r.done:
		r.mu.RLock()
		defer r.mu.RUnlock()
		if r.fatal != nil {
			return r.fatal
		}
		return ErrClosed
	}
}

// start creates the consumer and its poll goroutine (r.mu held).
func (r *ChangelogReader) start() error {
	kc, err := kafka.NewConsumer(ptr(r.kcfg))
	if err != nil {
		return fmt.Errorf("transport: create changelog reader: %w", err)
	}
	r.kc = kc
	r.logs = ForwardLogs(kc.Logs(), r.logger, "changelog-reader")
	r.stop, r.done = make(chan struct{}), make(chan struct{})
	r.cmds = make(chan func(*kafka.Consumer))
	go r.poll(kc, r.stop, r.done, r.cmds)
	return nil
}

// Remove stops reading the partition and ends its stream: what it holds
// is dropped, and Fetch returns ErrClosed. It returns once the partition is
// unassigned, so it may be added again at once. Removing a partition
// that is not being read does nothing.
func (r *ChangelogReader) Remove(topic string, partition int32) {
	k := tpKey{topic, partition}
	r.mu.RLock()
	s := r.streams[k]
	r.mu.RUnlock()
	if s == nil {
		return
	}
	// Marked under the stream's lock first, so Fetch ends at once and
	// never resumes the partition after this.
	s.mu.Lock()
	s.removed = true
	s.r.buffered.Add(-int64(s.bytes))
	s.events, s.records, s.bytes = nil, 0, 0
	if s.err == nil {
		s.err = ErrClosed
	}
	s.mu.Unlock()
	s.wake()

	// On the poll goroutine: whatever it polled for the partition before
	// has been routed (to s, which drops it).
	_ = r.do(func(kc *kafka.Consumer) error {
		r.mu.Lock()
		if r.streams[k] != s {
			r.mu.Unlock()
			return nil
		}
		delete(r.streams, k)
		n := len(r.streams)
		r.mu.Unlock()
		s.mu.Lock()
		wasPaused, live := s.paused, s.live
		s.paused, s.live = false, false
		s.mu.Unlock()
		if !live {
			return nil
		}
		if wasPaused {
			// A partition's pause outlives its assignment in librdkafka.
			_ = kc.Resume([]kafka.TopicPartition{s.tp})
		}
		if err := kc.IncrementalUnassign([]kafka.TopicPartition{s.tp}); err != nil {
			r.rep.report(err, topic, partition)
		}
		r.logger.Debug("changelog reader: partition removed", "topic", topic, "partition", partition,
			"partitions", n)
		return nil
	})
	// The poll goroutine has ended: nothing routes to s any more.
	r.mu.Lock()
	if r.streams[k] == s {
		delete(r.streams, k)
	}
	r.mu.Unlock()
}

// Partitions returns how many partitions the reader is reading.
func (r *ChangelogReader) Partitions() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.streams)
}

// Close ends every stream with ErrClosed and releases the consumer (and
// the Admin, if the reader created it), as described on ChangelogReader.
// It is idempotent.
func (r *ChangelogReader) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	streams := r.streams
	r.streams = map[tpKey]*ChangelogStream{}
	kc, stop, done, logs, fatal := r.kc, r.stop, r.done, r.logs, r.fatal
	r.mu.Unlock()
	for _, s := range streams {
		s.fail(ErrClosed)
	}
	var err error
	if kc != nil {
		close(stop)
		<-done
		if fatal == nil {
			closed := make(chan error, 1)
			go func() { closed <- kc.Close() }()
			select {
			case err = <-closed:
				<-logs
			case <-time.After(closeTimeout):
				err = errors.New("transport: changelog reader: close did not finish within 30s; abandoned")
			}
		}
	}
	r.bg.Wait()
	r.adminOnce.Do(func() { r.adminErr = ErrClosed }) // no Admin from now on
	if r.admin != nil {
		r.admin.Close()
	}
	return err
}

// poll is the poll goroutine: it routes what librdkafka delivers until
// stop closes or a fatal error.
func (r *ChangelogReader) poll(kc *kafka.Consumer, stop, done chan struct{}, cmds chan func(*kafka.Consumer)) {
	defer close(done)
	for {
		for ran := true; ran; {
			select {
			case <-stop:
				return
			case f := <-cmds:
				f(kc)
			default:
				ran = false
			}
		}
		switch e := kc.Poll(int(changelogPollTimeout / time.Millisecond)).(type) {
		case nil:
		case *kafka.Message:
			if h := pollHook.Load(); h != nil {
				(*h)(int64(e.TopicPartition.Offset))
			}
			s := r.stream(keyOf(e.TopicPartition))
			if s == nil {
				continue // removed meanwhile
			}
			if e.TopicPartition.Error != nil {
				r.rep.report(e.TopicPartition.Error, s.key.topic, s.key.partition)
				s.fail(fmt.Errorf("transport: read %s[%d]: %w", s.key.topic, s.key.partition, e.TopicPartition.Error))
				continue
			}
			s.deliver(kc, ChangelogEvent{Offset: int64(e.TopicPartition.Offset), Key: e.Key, Value: e.Value})
		case kafka.PartitionEOF:
			if s := r.stream(keyOf(kafka.TopicPartition(e))); s != nil {
				s.deliver(kc, ChangelogEvent{Offset: int64(e.Offset), EOF: true})
			}
		case kafka.Error:
			r.onError(e)
			if e.IsFatal() {
				return
			}
		}
	}
}

func (r *ChangelogReader) stream(k tpKey) *ChangelogStream {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.streams[k]
}

// onError handles an error event. librdkafka does not say which partition
// an offset-out-of-range or unknown-topic error is about, so locate finds
// out from the metadata; a fatal error ends every stream.
func (r *ChangelogReader) onError(e kafka.Error) {
	r.rep.report(e, "", -1)
	switch {
	case e.IsFatal():
		err := fmt.Errorf("transport: changelog reader failed: %w", e)
		r.mu.Lock()
		r.fatal = err
		streams := r.streams
		r.streams = map[tpKey]*ChangelogStream{}
		r.mu.Unlock()
		for _, s := range streams {
			s.fail(err)
		}
	default:
		switch e.Code() {
		case kafka.ErrAutoOffsetReset, kafka.ErrOffsetOutOfRange,
			kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic, kafka.ErrUnknownPartition:
			// One at a time: librdkafka repeats such errors while
			// they last, and one look at the metadata answers them all.
			if r.locating.CompareAndSwap(false, true) {
				r.bg.Add(1)
				go func() {
					defer r.bg.Done()
					defer r.locating.Store(false)
					r.locate(e)
				}()
			}
		}
	}
}

// locate ends the streams an error without a partition is about: those
// whose topic or partition no longer exists (ErrUnknownTopic) and those
// whose next offset lies outside the partition's watermarks
// (ErrOffsetOutOfRange). The others read on.
//
// librdkafka stops fetching the partition an out-of-range error is about
// (auto.offset.reset=error), so a partition left reading would wait for
// ever: when the error cannot be pinned on any partition (the lookups
// fail, or every partition looks in range), every stream ends with it and
// its restore or standby starts again — never a silent stop.
func (r *ChangelogReader) locate(cause kafka.Error) {
	r.mu.RLock()
	streams := make([]*ChangelogStream, 0, len(r.streams))
	for _, s := range r.streams {
		streams = append(streams, s)
	}
	r.mu.RUnlock()
	if len(streams) == 0 {
		return
	}
	failAll := func(why string) {
		r.logger.Warn("changelog reader: cannot tell which partition an error is about; every restore and standby starts again",
			"why", why, "cause", cause, "partitions", len(streams))
		for _, s := range streams {
			// Not ErrOffsetOutOfRange: that would read as truncation and
			// rebuild the store; a plain failure makes the caller add the
			// partition again, and a real out-of-range then shows itself.
			s.fail(fmt.Errorf("transport: changelog reader: %s[%d]: %w (could not tell which partition it was about: %s)",
				s.key.topic, s.key.partition, cause, why))
		}
	}
	a, err := r.getAdmin()
	if err != nil {
		failAll(err.Error())
		return
	}
	ctx := context.Background()
	counts := map[string]int{} // -1: the topic does not exist
	var present []tpKey
	var failed int
	for _, s := range streams {
		n, ok := counts[s.key.topic]
		if !ok {
			info, err := a.DescribeTopic(ctx, s.key.topic)
			switch {
			case errors.Is(err, ErrUnknownTopic):
				n = -1
			case err != nil:
				failAll(err.Error())
				return
			default:
				n = info.Partitions
			}
			counts[s.key.topic] = n
		}
		if int(s.key.partition) >= n {
			s.fail(fmt.Errorf("%w: %s[%d]: %v", ErrUnknownTopic, s.key.topic, s.key.partition, cause))
			failed++
			continue
		}
		present = append(present, s.key)
	}
	if len(present) > 0 && (cause.Code() == kafka.ErrAutoOffsetReset || cause.Code() == kafka.ErrOffsetOutOfRange) {
		marks, err := a.watermarks(ctx, present, r.cfg.isolationLevel())
		if err != nil {
			failAll(err.Error())
			return
		}
		for _, s := range streams {
			m, ok := marks[s.key]
			if !ok {
				continue
			}
			if next := s.position(); next < m[0] || next > m[1] {
				s.fail(fmt.Errorf("%w: %s[%d] at %d, partition holds %d..%d: %v",
					ErrOffsetOutOfRange, s.key.topic, s.key.partition, next, m[0], m[1], cause))
				failed++
			}
		}
	}
	if failed == 0 {
		failAll("every partition read is within its watermarks")
	}
}

// ChangelogStream is one partition read by a ChangelogReader, from Add
// until Remove. Fetch is meant for one goroutine (the partition's
// restore); the stream is filled by the reader's poll goroutine.
type ChangelogStream struct {
	r   *ChangelogReader
	key tpKey
	tp  kafka.TopicPartition

	mu      sync.Mutex
	events  []ChangelogEvent
	records int
	bytes   int
	next    int64 // the offset after the last record delivered
	paused  bool
	removed bool
	live    bool  // assigned and routed to (set and cleared on the poll goroutine)
	err     error // ends the stream once events are taken
	ready   chan struct{}
}

func (s *ChangelogStream) wake() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

func (s *ChangelogStream) position() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

// deliver queues ev (poll goroutine) and pauses the partition when the
// stream is full.
func (s *ChangelogStream) deliver(kc *kafka.Consumer, ev ChangelogEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.live || s.removed || s.err != nil {
		return
	}
	if ev.EOF {
		if ev.Offset < s.next {
			return // not this stream's end: it read past it
		}
		if n := len(s.events); n > 0 && s.events[n-1].EOF {
			s.events[n-1] = ev
		} else {
			s.events = append(s.events, ev)
		}
	} else {
		if ev.Offset < s.next {
			// Never seen: records come in offset order, and a pause
			// resumes after the last one delivered. Were it a record of
			// an earlier assignment that slipped through, those in
			// between would be lost: end the stream rather than read on.
			s.err = fmt.Errorf("transport: changelog reader: %s[%d]: record %d after %d: out of order",
				s.key.topic, s.key.partition, ev.Offset, s.next-1)
			s.wake()
			return
		}
		s.next = ev.Offset + 1
		s.events = append(s.events, ev)
		n := len(ev.Key) + len(ev.Value) + recordOverhead
		s.records++
		s.bytes += n
		total := s.r.buffered.Add(int64(n))
		if !s.paused && (s.records >= ChangelogStreamRecords || s.bytes >= ChangelogStreamBytes ||
			total >= ChangelogReaderBytes) {
			if err := kc.Pause([]kafka.TopicPartition{s.tp}); err == nil {
				s.paused = true
			}
		}
	}
	s.wake()
}

// fail ends the stream with err after the events it holds.
func (s *ChangelogStream) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.wake()
}

// Fetch returns the events read since the last Fetch, in offset order,
// waiting up to wait for the first one; none when wait passes first. Once
// the stream has ended it returns what is left and then the error that
// ended it: ErrOffsetOutOfRange or ErrUnknownTopic (wrapped) for a
// partition that cannot be read on, ErrClosed after Remove or Close,
// another error if Kafka failed the partition. ctx's end returns its
// error. A partition paused because the stream was full is resumed here.
func (s *ChangelogStream) Fetch(ctx context.Context, wait time.Duration) ([]ChangelogEvent, error) {
	var timeout <-chan time.Time
	for {
		s.mu.Lock()
		if len(s.events) > 0 {
			evs := s.events
			s.r.buffered.Add(-int64(s.bytes))
			s.events, s.records, s.bytes = nil, 0, 0
			if s.paused && !s.removed {
				s.paused = false
				if err := s.r.resume(s.tp); err != nil && s.err == nil {
					// Still paused in librdkafka, and no later Fetch
					// would resume it: end the stream loudly (its
					// restore or standby starts again) rather than wait
					// for ever.
					s.err = fmt.Errorf("transport: changelog reader: resume %s[%d]: %w", s.key.topic, s.key.partition, err)
				}
			}
			s.mu.Unlock()
			return evs, nil
		}
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if timeout == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-s.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			return nil, nil
		}
	}
}

// resume resumes fetching tp (called with the stream's lock held, so it
// never races with the stream's pause).
func (r *ChangelogReader) resume(tp kafka.TopicPartition) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.kc == nil || r.closed {
		return nil // Close ends the streams itself
	}
	if err := r.kc.Resume([]kafka.TopicPartition{tp}); err != nil {
		r.rep.report(err, *tp.Topic, tp.Partition)
		return err
	}
	return nil
}
