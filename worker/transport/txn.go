package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Transactions (processing_guarantee exactly_once, docs/kafka.md#exactly-once).
//
// A Producer with Config.TransactionalID runs one transaction at a time:
// NewProducer initialises transactions and begins the first; CommitTxn
// commits the records produced since, with the consumer's offsets, and
// begins the next; AbortTxn discards them and begins the next. Records are
// always produced into the open transaction. The caller must not Produce
// while CommitTxn or AbortTxn runs: a record handed over meanwhile could
// join the transaction being committed without its offsets.
//
// Failures: an abortable one (a record failed, the group rebalanced, the
// coordinator refused the offsets) is aborted by the call itself, which
// returns ErrTxnAborted; anything else — fenced by a newer producer of the
// same transactional id, the coordinator timed the transaction out, a
// timeout of the commit itself (librdkafka has no KIP-890, so a commit
// whose outcome is unknown cannot be retried safely) — returns ErrTxnFatal,
// and the handle is unusable until ResetTxn re-creates it.

// ErrTxnAborted is returned (wrapped) by CommitTxn when the transaction
// could not commit and was aborted: none of its records or offsets is
// visible to read_committed readers, and a new transaction is open.
var ErrTxnAborted = errors.New("transport: transaction aborted")

// ErrTxnFatal is returned (wrapped) by the transaction calls, and fails
// records, once the transactional producer can no longer run transactions:
// call ResetTxn.
var ErrTxnFatal = errors.New("transport: transactional producer failed")

// ErrTxnUnknown is returned (wrapped, with ErrTxnFatal) by CommitTxn when
// the commit's outcome is unknown: it timed out after the request may have
// reached the coordinator. After ResetTxn (whose InitTransactions settles
// it) the group's committed offsets tell whether it committed.
var ErrTxnUnknown = errors.New("transport: the transaction's outcome is unknown")

// ErrNotTransactional is returned by the transaction calls of a Producer
// without Config.TransactionalID.
var ErrNotTransactional = errors.New("transport: producer is not transactional (no TransactionalID)")

// GroupMetadata is a consumer's group membership (group, generation,
// member id), which a transaction sends with its offsets: the group
// coordinator refuses offsets of a stale generation (KIP-447), which fences
// a zombie worker. Get it from Consumer.GroupMetadata just before the
// commit.
type GroupMetadata struct{ m *kafka.ConsumerGroupMetadata }

// ErrNotMember is returned (wrapped) by Consumer.GroupMetadata while the
// consumer is not a member of its group: its assignment was lost (a
// session timeout, a process that stood still) and it has not joined
// again, so it has no member id or generation. The group coordinator
// accepts transactional offsets sent with no generation and no member id
// without any check (what producers outside group management send), so
// a worker that lost its partitions would commit offsets, and with them
// its outputs, for partitions another worker owns by now: such a
// transaction must abort, not commit.
var ErrNotMember = errors.New("transport: the consumer is not a member of its group (its assignment was lost)")

// GroupMetadata returns the consumer's current group membership, for
// Producer.CommitTxn, or ErrNotMember. Safe for concurrent use.
func (c *Consumer) GroupMetadata() (GroupMetadata, error) {
	kc, err := c.acquire()
	if err != nil {
		return GroupMetadata{}, err
	}
	defer c.life.RUnlock()
	m, err := kc.GetConsumerGroupMetadata()
	if err != nil {
		return GroupMetadata{}, fmt.Errorf("transport: consumer group metadata: %w", err)
	}
	gm := GroupMetadata{m: m}
	if kc.AssignmentLost() {
		return GroupMetadata{}, fmt.Errorf("%w: librdkafka reports the assignment lost", ErrNotMember)
	}
	if err := gm.membership(); err != nil {
		return GroupMetadata{}, err
	}
	return gm, nil
}

// membership returns ErrNotMember when the metadata carries no generation
// or no member id.
func (g GroupMetadata) membership() error {
	if gen, member, known := g.Member(); known && (gen < 0 || member == "") {
		return fmt.Errorf("%w: generation %d, member id %q", ErrNotMember, gen, member)
	}
	return nil
}

// Member returns the generation and member id the metadata carries, and
// whether they could be read. confluent-kafka-go keeps librdkafka's
// serialized form in an unexported field: "CGMDv2:", the generation as a
// native-endian int32, then the group id and the member id, each ending in
// a NUL. Another form reads as unknown.
func (g GroupMetadata) Member() (generation int32, memberID string, known bool) {
	if g.m == nil {
		return 0, "", false
	}
	f := reflect.ValueOf(g.m).Elem().FieldByName("serialized")
	if !f.IsValid() || f.Kind() != reflect.Slice || f.Type().Elem().Kind() != reflect.Uint8 {
		return 0, "", false
	}
	b := f.Bytes()
	const magic = "CGMDv2:"
	if len(b) < len(magic)+4 || string(b[:len(magic)]) != magic {
		return 0, "", false
	}
	generation = int32(binary.NativeEndian.Uint32(b[len(magic):]))
	rest := b[len(magic)+4:]
	_, rest, ok := bytes.Cut(rest, []byte{0}) // the group id
	if !ok {
		return 0, "", false
	}
	member, _, ok := bytes.Cut(rest, []byte{0})
	if !ok {
		return 0, "", false
	}
	return generation, string(member), true
}

// CommittedOffsets returns the group's committed offsets of the partitions
// in parts (their Offset is ignored; -1: none), asked at the consumer's
// isolation level: under ReadCommitted librdkafka asks for stable offsets
// (KIP-447), so an offset of a transaction still settling is waited for.
// Safe for concurrent use.
func (c *Consumer) CommittedOffsets(ctx context.Context, parts []PartitionOffset) ([]PartitionOffset, error) {
	kc, err := c.acquire()
	if err != nil {
		return nil, err
	}
	defer c.life.RUnlock()
	tps := make([]kafka.TopicPartition, len(parts))
	for i, o := range parts {
		topic := o.Topic
		tps[i] = kafka.TopicPartition{Topic: &topic, Partition: o.Partition}
	}
	timeout := c.cfg.reachTimeout()
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	res, err := kc.Committed(tps, max(int(timeout/time.Millisecond), 1))
	if err != nil {
		return nil, fmt.Errorf("transport: committed offsets: %w", err)
	}
	out := make([]PartitionOffset, len(res))
	for i, r := range res {
		if r.Error != nil {
			return nil, fmt.Errorf("transport: committed offset of %s[%d]: %w", topicOf(r), r.Partition, r.Error)
		}
		out[i] = PartitionOffset{Topic: topicOf(r), Partition: r.Partition, Offset: Offset(r.Offset)}
		if r.Offset < 0 {
			out[i].Offset = -1
		}
	}
	return out, nil
}

// initTxn initialises transactions on the current handle and begins the
// first transaction.
func (p *Producer) initTxn() error {
	ctx, cancel := context.WithTimeout(context.Background(), max(p.cfg.reachTimeout(), p.cfg.transactionTimeout()))
	defer cancel()
	if err := p.p.InitTransactions(ctx); err != nil {
		return fmt.Errorf("transport: init transactions (transactional.id %q): %w", p.cfg.TransactionalID, err)
	}
	if err := p.begin(); err != nil {
		return fmt.Errorf("transport: begin transaction: %w", err)
	}
	return nil
}

// CommitTxn commits the open transaction: the records produced since it
// began, and offsets (each the next offset to consume) for the group that
// gm names; then it begins the next transaction. It waits for every record
// to be acknowledged (librdkafka flushes first). On failure it returns an
// error wrapping ErrTxnAborted (aborted, a new transaction is open) or
// ErrTxnFatal (call ResetTxn). Safe for concurrent use; see the package
// notes on Produce during a commit.
func (p *Producer) CommitTxn(ctx context.Context, offsets []PartitionOffset, gm GroupMetadata) error {
	p.txnMu.Lock()
	defer p.txnMu.Unlock()
	if err := p.txnUsable(); err != nil {
		return err
	}
	if errp := p.txnRefused.Load(); errp != nil {
		// A record refused at produce time is not in the transaction:
		// committing would commit the offsets without it.
		if aerr := p.abort(ctx); aerr != nil {
			return aerr
		}
		return fmt.Errorf("%w: a record was refused before it joined the transaction: %w", ErrTxnAborted, *errp)
	}
	if len(offsets) > 0 {
		if gm.m == nil {
			return errors.New("transport: CommitTxn: offsets without consumer group metadata")
		}
		tps := make([]kafka.TopicPartition, len(offsets))
		for i, o := range offsets {
			topic := o.Topic
			tps[i] = kafka.TopicPartition{Topic: &topic, Partition: o.Partition, Offset: kafka.Offset(o.Offset)}
		}
		if err := retry(ctx, func(ctx context.Context) error { return p.p.SendOffsetsToTransaction(ctx, tps, gm.m) }); err != nil {
			return p.txnFailed(ctx, "send offsets to transaction", err, false)
		}
	}
	if err := retry(ctx, p.p.CommitTransaction); err != nil {
		return p.txnFailed(ctx, "commit transaction", err, true)
	}
	if err := p.begin(); err != nil {
		// Committed; the next transaction call reports the failure.
		_ = p.markTxnFatal("begin transaction", err)
	}
	return nil
}

// begin begins the next transaction.
func (p *Producer) begin() error {
	p.txnRefused.Store(nil)
	return p.p.BeginTransaction()
}

// retryStep bounds each attempt of a transaction call that retry repeats.
const retryStep = 5 * time.Second

// retry calls f until it succeeds, fails with an error that is not
// retriable, or ctx ends: librdkafka asks for a retriable error (a
// timeout) to be retried by calling the same function again, which picks
// up the request still under way.
func retry(ctx context.Context, f func(context.Context) error) error {
	for {
		step, cancel := context.WithTimeout(ctx, retryStep)
		err := f(step)
		cancel()
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) || !kerr.IsRetriable() || kerr.TxnRequiresAbort() || kerr.IsFatal() || ctx.Err() != nil {
			return err
		}
	}
}

// AbortTxn aborts the open transaction (its records are discarded; those
// still queued fail with ErrPurged) and begins the next. It returns an
// error wrapping ErrTxnFatal when that fails. Safe for concurrent use.
//
// It waits for Produce calls in progress to return first (each hands its
// record to this transaction before the abort, or is refused): a record
// handed to librdkafka after the abort would join the next transaction.
// A Produce waiting for room in a full queue returns only once its
// Record.Allowed says no, so the caller must make Allowed false for this
// transaction's records first.
func (p *Producer) AbortTxn(ctx context.Context) error {
	p.txnMu.Lock()
	defer p.txnMu.Unlock()
	if err := p.txnUsable(); err != nil {
		return err
	}
	p.inflight.Lock()
	defer p.inflight.Unlock()
	return p.abort(ctx)
}

func (p *Producer) abort(ctx context.Context) error {
	if err := retry(ctx, p.p.AbortTransaction); err != nil {
		return p.markTxnFatal("abort transaction", err)
	}
	if err := p.begin(); err != nil {
		return p.markTxnFatal("begin transaction", err)
	}
	return nil
}

func (p *Producer) txnUsable() error {
	switch {
	case p.cfg.TransactionalID == "":
		return ErrNotTransactional
	case p.closing.Load():
		return ErrClosed
	}
	if errp := p.txnFatal.Load(); errp != nil {
		return fmt.Errorf("%w: %w", ErrTxnFatal, *errp)
	}
	return nil
}

// txnFailed aborts after an abortable error, or marks the handle fatal;
// commit says the failed call was CommitTransaction, whose outcome is then
// unknown.
func (p *Producer) txnFailed(ctx context.Context, op string, err error, commit bool) error {
	p.rep.report(err, "", -1)
	var kerr kafka.Error
	if errors.As(err, &kerr) && kerr.TxnRequiresAbort() && !kerr.IsFatal() {
		if aerr := p.abort(ctx); aerr != nil {
			return fmt.Errorf("%s: %w (and then: %w)", op, err, aerr)
		}
		return fmt.Errorf("%w: %s: %w", ErrTxnAborted, op, err)
	}
	// Fatal, or still retriable when ctx ended: a commit that timed out
	// may yet complete, and librdkafka cannot tell (no KIP-890), so the
	// handle is re-created; its successor's InitTransactions settles the
	// transaction, and the committed offsets tell how (ErrTxnUnknown).
	ferr := p.markTxnFatal(op, err)
	if commit && !(errors.As(err, &kerr) && kerr.IsFatal()) {
		return fmt.Errorf("%w: %w", ErrTxnUnknown, ferr)
	}
	return ferr
}

func (p *Producer) markTxnFatal(op string, err error) error {
	err = fmt.Errorf("%s: %w", op, err)
	p.txnFatal.CompareAndSwap(nil, &err)
	return fmt.Errorf("%w: %w", ErrTxnFatal, err)
}

// ResetTxn re-creates a transactional producer whose handle failed
// (ErrTxnFatal): the old handle's records fail (their callbacks run), a new
// handle initialises transactions — which fences the old one and settles
// its open transaction — and begins one. On error the producer stays
// failed and ResetTxn may be called again. Safe for concurrent use.
func (p *Producer) ResetTxn(ctx context.Context) error {
	p.txnMu.Lock()
	defer p.txnMu.Unlock()
	if p.cfg.TransactionalID == "" {
		return ErrNotTransactional
	}
	if p.closing.Load() {
		return ErrClosed
	}
	p.inflight.Lock() // no Produce is handing a record to the old handle
	defer p.inflight.Unlock()
	old := p.p
	if old != nil {
		_ = old.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking)
		old.Flush(500)
		old.Close()
		<-p.dlvDone
		<-p.logsDone
		p.p = nil
	}
	p.mu.Lock()
	left := p.pending
	p.pending = map[uint64]func(int64, error){}
	p.mu.Unlock()
	for _, cb := range left {
		cb(-1, fmt.Errorf("%w: the producer was re-created before Kafka acknowledged the record", ErrTxnFatal))
	}
	start := time.Now()
	if err := p.open(); err != nil {
		return err
	}
	p.txnFatal.Store(nil)
	p.logger.Info("transactional producer re-created", "transactional_id", p.cfg.TransactionalID,
		"took", time.Since(start).Round(time.Millisecond))
	_ = ctx
	return nil
}
