package transport

import (
	"context"
	"errors"
	"fmt"
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

// ErrNotTransactional is returned by the transaction calls of a Producer
// without Config.TransactionalID.
var ErrNotTransactional = errors.New("transport: producer is not transactional (no TransactionalID)")

// GroupMetadata is a consumer's group membership (group, generation,
// member id), which a transaction sends with its offsets: the group
// coordinator refuses offsets of a stale generation (KIP-447), which fences
// a zombie worker. Get it from Consumer.GroupMetadata just before the
// commit.
type GroupMetadata struct{ m *kafka.ConsumerGroupMetadata }

// GroupMetadata returns the consumer's current group membership, for
// Producer.CommitTxn. Safe for concurrent use.
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
	return GroupMetadata{m: m}, nil
}

// initTxn initialises transactions on the current handle and begins the
// first transaction.
func (p *Producer) initTxn() error {
	ctx, cancel := context.WithTimeout(context.Background(), max(p.cfg.reachTimeout(), p.cfg.transactionTimeout()))
	defer cancel()
	if err := p.p.InitTransactions(ctx); err != nil {
		return fmt.Errorf("transport: init transactions (transactional.id %q): %w", p.cfg.TransactionalID, err)
	}
	if err := p.p.BeginTransaction(); err != nil {
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
	if len(offsets) > 0 {
		if gm.m == nil {
			return errors.New("transport: CommitTxn: offsets without consumer group metadata")
		}
		tps := make([]kafka.TopicPartition, len(offsets))
		for i, o := range offsets {
			topic := o.Topic
			tps[i] = kafka.TopicPartition{Topic: &topic, Partition: o.Partition, Offset: kafka.Offset(o.Offset)}
		}
		if err := p.p.SendOffsetsToTransaction(ctx, tps, gm.m); err != nil {
			return p.txnFailed(ctx, "send offsets to transaction", err)
		}
	}
	if err := p.p.CommitTransaction(ctx); err != nil {
		return p.txnFailed(ctx, "commit transaction", err)
	}
	if err := p.p.BeginTransaction(); err != nil {
		return p.markTxnFatal("begin transaction", err)
	}
	return nil
}

// AbortTxn aborts the open transaction (its records are discarded; those
// still queued fail with ErrPurged) and begins the next. It returns an
// error wrapping ErrTxnFatal when that fails. Safe for concurrent use.
func (p *Producer) AbortTxn(ctx context.Context) error {
	p.txnMu.Lock()
	defer p.txnMu.Unlock()
	if err := p.txnUsable(); err != nil {
		return err
	}
	return p.abort(ctx)
}

func (p *Producer) abort(ctx context.Context) error {
	if err := p.p.AbortTransaction(ctx); err != nil {
		return p.markTxnFatal("abort transaction", err)
	}
	if err := p.p.BeginTransaction(); err != nil {
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

// txnFailed aborts after an abortable error, or marks the handle fatal.
func (p *Producer) txnFailed(ctx context.Context, op string, err error) error {
	p.rep.report(err, "", -1)
	var kerr kafka.Error
	if errors.As(err, &kerr) && kerr.TxnRequiresAbort() && !kerr.IsFatal() {
		if aerr := p.abort(ctx); aerr != nil {
			return fmt.Errorf("%s: %w (and then: %w)", op, err, aerr)
		}
		return fmt.Errorf("%w: %s: %w", ErrTxnAborted, op, err)
	}
	// Fatal, or retriable: a timed-out EndTxn may still commit, and
	// librdkafka cannot tell (no KIP-890), so the handle is re-created;
	// its successor's InitTransactions settles the transaction.
	return p.markTxnFatal(op, err)
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
