package agents

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/tables/live"
	"github.com/eddy-streams/eddy/worker/transport"
)

// Exactly-once (Config.ExactlyOnce; docs/kafka.md#exactly-once): the commit
// cycle is the transaction. One transactional producer per worker; every
// record the worker writes for an event (outputs, changelog records, the
// dead letter) goes into the open transaction, and each commit cycle
// commits the transaction together with the frontier of every partition
// (the offsets travel in the transaction, with the consumer's group
// metadata, so the group coordinator fences a stale generation).
//
// A committed transaction holds exactly the effects of the events below the
// offsets it commits:
//   - An OK result's writes are held in the worker (stateHeld) until every
//     earlier event of the partition has its writes handed over: writes go
//     to the producer in offset order, and the frontier is the end of
//     what was handed over. So no record of an event beyond the frontier is
//     in the transaction.
//   - While a commit is in flight nothing is handed over (the records wait
//     in the worker): a record handed over meanwhile would join the
//     transaction being committed without its offset.
//   - Records passed by the frontier stay in memory until their offset is
//     committed: an abort delivers them again.
//
// State: a result's mutations join the table partition's overlay at once
// (the next event of the key reads them: read your writes) and are logged
// with the transaction they are handed over in; a committed transaction's
// mutations go to the store (which so holds only committed state), an
// aborted one's are dropped. The store's checkpoint is the highest
// changelog offset of the committed mutations it holds: the group
// coordinator's fencing keeps other writers' committed records from landing
// among them while this worker owns the partition.
//
// Abort: every partition is rewound to its committed offset — its events
// go back to pending, lanes get a new epoch (results of the old one are
// stale), the uncommitted overlay is dropped — and delivered again. A
// fatal producer error (fenced, timed out, a commit whose outcome is
// unknown) re-creates the producer before the rewind.

// TxnProducer is what the manager needs from a transactional producer
// (transport.Producer with a TransactionalID).
type TxnProducer interface {
	CommitTxn(ctx context.Context, offsets []transport.PartitionOffset, gm transport.GroupMetadata) error
	AbortTxn(ctx context.Context) error
	ResetTxn(ctx context.Context) error
}

// TxnConsumer is what the manager needs from the consumer under
// exactly-once: its group membership, sent with each transaction's offsets.
type TxnConsumer interface {
	GroupMetadata() (transport.GroupMetadata, error)
	CommittedOffsets(ctx context.Context, parts []transport.PartitionOffset) ([]transport.PartitionOffset, error)
}

// txnAck is the producer's report on one record handed over in
// transaction txn.
type txnAck struct {
	p   *partition
	r   *rec // nil for an expiry tombstone
	w   *write
	txn uint64
	off int64
	err error
}

// poisonKey names an event whose writes Kafka refused for good.
type poisonKey struct {
	tp  tpKey
	off int64
}

// poison is why an event is dead-lettered when it comes back after the
// abort its refused write caused, and whether its dead letter goes without
// the value.
type poison struct {
	reason  string
	noValue string
}

// errTxnLeft aborts the open transaction: a partition left this worker
// with writes in it that no commit covered.
var errTxnLeft = errors.New("a partition left this worker with uncommitted writes in the open transaction")

// holdResult keeps the writes of r's OK result until the frontier reaches
// r; its mutations are visible to the key's next event at once.
func (m *Manager) holdResult(p *partition, r *rec, res *Result) {
	if key := (poisonKey{p.ktp, r.off}); m.poisoned[key].reason != "" {
		// Kafka refused a write of this event for good and the
		// transaction holding it was aborted: dead-letter it this time.
		why := m.poisoned[key]
		delete(m.poisoned, key)
		if p.keyBusy != nil {
			p.unbusy(r.key)
		}
		r.noValue = why.noValue
		m.deadLetter(p, r, why.reason)
		return
	}
	for _, mu := range res.Mutations {
		t := p.tableOf(mu.Table)
		tm := tables.Mutation{Key: t.StoreKey(mu.Key, mu.WindowStart), Value: mu.Value, Delete: mu.Delete}
		r.held = append(r.held, &write{tp: t, mut: tm, log: t.Log(tm, mutationBytes(tm))})
	}
	for _, out := range res.Produced {
		w := &write{rec: m.outputRecord(r, out)}
		w.n = outputBytes(w.rec) // held once handed over (logMutation)
		r.held = append(r.held, w)
	}
	if p.keyBusy != nil {
		p.unbusy(r.key)
	}
	r.state = stateHeld
}

// handOut hands the held writes of p's events over to the producer, in
// offset order, from the frontier on, and moves the frontier past them.
// Nothing is handed over while a commit is in flight, or once a leaving
// partition's frontier is final.
func (m *Manager) handOut(p *partition) {
	if m.committing || p.final || p.dropped || p.superseded || p.startUnknown || p.prev != nil {
		// (Until p's start is known nothing of it may move its frontier.)
		return
	}
	for i := p.head; i < len(p.recs); i++ {
		r := p.recs[i]
		if r.state == stateDone {
			continue
		}
		if r.state != stateHeld {
			break
		}
		for _, w := range r.held {
			m.handWrite(p, r, w)
		}
		r.held = nil
		r.state = stateDone
		m.doneCount++
		if !r.dlq {
			p.processed()
		}
	}
	if p.advance() > 0 {
		m.applyPause(p)
	}
}

// handOutAll is handOut for every partition.
func (m *Manager) handOutAll() {
	if m.committing {
		return
	}
	for _, p := range m.parts {
		m.handOut(p)
	}
	for _, req := range m.revokes {
		for _, p := range req.ps {
			if m.parts[p.ktp] != p {
				m.handOut(p)
			}
		}
	}
}

// handWrite hands one write of r over to the producer, in the open
// transaction.
func (m *Manager) handWrite(p *partition, r *rec, w *write) {
	txn := m.txn
	p.handedTxn = txn
	m.txnWrites++
	if w.tp != nil {
		m.hold(w.log.HandedOver(txn))
		rec, err := w.tp.Record(w.mut)
		if err != nil { // validated: cannot happen, but never commit without it
			m.in.push(&txnAck{p: p, r: r, w: w, txn: txn, off: -1, err: err})
			return
		}
		m.enqueueProduce(produceJob{p: p, rec: rec, txn: txn, onOffset: func(off int64, err error) {
			m.in.push(&txnAck{p: p, r: r, w: w, txn: txn, off: off, err: err})
		}})
		return
	}
	m.hold(w.n)
	start := time.Now()
	m.enqueueProduce(produceJob{p: p, rec: w.rec, txn: txn, onDone: func(err error) {
		m.mon.ProduceLatency.Observe(time.Since(start))
		m.in.push(&txnAck{p: p, r: r, w: w, txn: txn, off: -1, err: err})
	}})
}

// txnAcked takes the producer's report on one record of a transaction. A
// failure in the open transaction aborts it at the next commit cycle; a
// permanent one (the record is refused for good) also marks its event, to
// be dead-lettered when it comes back.
func (m *Manager) txnAcked(a *txnAck) {
	if a.w.tp == nil {
		m.release(a.w.n)
	} else if a.err == nil {
		a.w.log.Acked(a.off)
	}
	if a.r == nil && a.w.tp != nil && a.err != nil {
		m.log.Warn("writing the tombstone of an expired window failed; the transaction aborts and a later sweep tries again",
			"table", a.w.tp.Name(), "partition", a.p.ktp.partition, "err", a.err)
	}
	if a.err == nil || errors.Is(a.err, transport.ErrPurged) || errors.Is(a.err, transport.ErrTxnFatal) {
		return
	}
	if a.r != nil && transport.IsPermanent(a.err) {
		// The record is refused for good, whichever transaction it was
		// in: mark its event.
		k := poisonKey{a.p.ktp, a.r.off}
		if a.r.dlq {
			m.poisoned[k] = poison{reason: a.r.lastErr, noValue: "the dead-letter topic refused the record: " + a.err.Error()}
		} else if _, ok := m.poisoned[k]; !ok {
			m.poisoned[k] = poison{reason: fmt.Sprintf("producing to topic %q failed permanently: %v", a.w.topic(), a.err)}
		}
	}
	if a.txn != m.txn {
		// The failure of a transaction already over (aborted: its records
		// are purged; a record of a committed one cannot fail, the commit
		// would have).
		return
	}
	if m.txnErr == nil {
		m.txnErr, m.txnErrTxn = a.err, a.txn
		m.log.Warn("a record of the open transaction failed; the transaction aborts and its events are processed again",
			"agent", a.p.a.cfg.Name, "topic", a.p.ktp.topic, "partition", a.p.ktp.partition, "to", a.w.topic(), "err", a.err)
	}
}

// commitTxn starts the commit (or, after a failure, the abort) of the open
// transaction with the frontier of every partition, unless one is in
// flight. Under exactly-once one transaction spans all partitions of the
// worker, so a revoke's commit (only) commits them all.
func (m *Manager) commitTxn(now time.Time) bool {
	if m.committing {
		return false
	}
	m.lastCommit = now
	m.doneCount = 0
	j := &commitJob{txn: m.txn}
	if m.txnErr != nil {
		j.abort = m.txnErr
	} else {
		for _, p := range m.parts {
			m.addToCommit(j, p)
		}
		for _, req := range m.revokes {
			for _, p := range req.ps {
				if !p.dropped && !p.superseded && m.parts[p.ktp] != p {
					m.addToCommit(j, p)
				}
			}
		}
		if len(j.offsets) == 0 && m.txnWrites == 0 {
			return true
		}
	}
	m.committing = true
	m.txnJob = j
	m.commitQ <- j
	return true
}

// runTxn commits or aborts j's transaction on the committer goroutine: once
// the producer goroutine handed over every record queued before, the
// offsets go with the consumer's group metadata. A fatal producer error
// re-creates the producer (retried until it works or the manager stops);
// the transaction is then lost, like an aborted one.
func (m *Manager) runTxn(j *commitJob) (err error, reset bool) {
	tp := m.producer.(TxnProducer)
	// Whatever happens, the next transaction is j's successor: records
	// still queued for j are failed from then on (handOver).
	defer m.openTxn.Store(j.txn + 1)
	passed, barrier := m.prodBarrier(m.cfg.MessageTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.MessageTimeout+5*time.Second)
	defer cancel()
	if !passed {
		select {
		case <-m.quit:
			// Shutting down with records of this transaction possibly
			// still queued: never commit without them (Close aborts).
			return fmt.Errorf("%w: the worker stops before every record of the transaction was handed over", transport.ErrTxnAborted), false
		default:
		}
		// The producer goroutine is stuck handing a record over
		// (librdkafka's queue stays full: the transaction is in error and
		// sends nothing). Abort: the purge makes room, and the records of
		// this transaction still queued are failed, not produced
		// (openTxn no longer names it).
		m.openTxn.Store(0)
		aerr := abortTxn(ctx, tp, fmt.Errorf("its records could not be handed to the producer within %s", m.cfg.MessageTimeout))
		select {
		case <-barrier:
		case <-m.quit:
		}
		m.localFail.Store(false)
		if !errors.Is(aerr, transport.ErrTxnFatal) {
			return aerr, false
		}
		err = aerr
		return m.resetTxn(tp, j, err)
	}
	if j.abort == nil && m.localFail.Swap(false) {
		// A record of it failed before it reached the producer (its
		// partition left, its agent is blocked): the commit would lack it.
		j.abort = errors.New("a record of the transaction was refused before it reached Kafka")
	}
	switch {
	case j.abort != nil:
		err = abortTxn(ctx, tp, j.abort)
	default:
		var gm transport.GroupMetadata
		if tc, ok := m.consumer.(TxnConsumer); ok && len(j.offsets) > 0 {
			gm, err = tc.GroupMetadata()
		}
		if err == nil && m.abortTxn.Load() == j.txn {
			// A partition with writes in it was lost (or its revoke gave
			// up) while the commit was queued: the group may have moved
			// on, and this metadata be of the next generation already.
			err = errTxnLeft
		}
		if err != nil {
			err = abortTxn(ctx, tp, err)
		} else {
			err = tp.CommitTxn(ctx, j.offsets, gm)
		}
	}
	m.localFail.Store(false) // the transaction is over, whatever failed in it
	if !errors.Is(err, transport.ErrTxnFatal) {
		return err, false
	}
	return m.resetTxn(tp, j, err)
}

// abortTxn aborts the open transaction for why: the abort's own error if
// it failed, else ErrTxnAborted wrapping why.
func abortTxn(ctx context.Context, tp TxnProducer, why error) error {
	if err := tp.AbortTxn(ctx); err != nil {
		return err
	}
	return fmt.Errorf("%w: %w", transport.ErrTxnAborted, why)
}

// resetTxn re-creates the producer after a fatal error of j's transaction,
// retrying until it works or the manager stops.
func (m *Manager) resetTxn(tp TxnProducer, j *commitJob, err error) (error, bool) {
	backoff := m.cfg.RetryBackoffMin
	for {
		m.log.Warn("transactional producer failed; re-creating it", "err", err)
		rctx, rcancel := context.WithTimeout(context.Background(), m.cfg.MessageTimeout+5*time.Second)
		rerr := tp.ResetTxn(rctx)
		rcancel()
		if rerr == nil {
			if errors.Is(err, transport.ErrTxnUnknown) {
				// The commit's outcome was unknown; the new producer's
				// InitTransactions settled it: the committed offsets tell.
				return m.settled(j, err), true
			}
			return err, true
		}
		m.log.Error("re-creating the transactional producer failed; trying again", "err", rerr, "in", backoff)
		select {
		case <-m.quit:
			return errors.Join(err, rerr), false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, m.cfg.RetryBackoffMax)
	}
}

// settled returns nil when the group's committed offsets are those j
// committed (its transaction committed after all), else err.
func (m *Manager) settled(j *commitJob, err error) error {
	tc, ok := m.consumer.(TxnConsumer)
	if !ok || len(j.offsets) == 0 {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.MessageTimeout+5*time.Second)
	defer cancel()
	got, qerr := tc.CommittedOffsets(ctx, j.offsets)
	if qerr != nil {
		m.log.Warn("the outcome of a transaction was unknown and the committed offsets could not be read; treating it as aborted", "err", qerr)
		return err
	}
	for i, o := range j.offsets {
		if i >= len(got) || got[i] != o {
			return err
		}
	}
	m.log.Info("a transaction whose commit timed out did commit", "partitions", len(j.offsets))
	return nil
}

// txnDone takes the outcome of a transaction's commit or abort.
func (m *Manager) txnDone(d *commitDone) {
	m.committing = false
	m.txnJob = nil
	m.mon.CommitLatency.Observe(d.took)
	if d.reset {
		m.mon.ProducerResets.Add(1)
	}
	if d.err == nil && m.txnErr != nil && m.txnErrTxn == d.job.txn {
		// Kafka committed a transaction one of whose records failed:
		// librdkafka's commit flushes and fails on a failed record, and a
		// record refused before it reached librdkafka aborts (localFail).
		m.log.Error("a transaction committed although one of its records failed", "err", m.txnErr)
		m.txnErr = nil
	}
	if d.err == nil {
		m.mon.TxnCommits.Add(1)
		m.committedTxn = d.job.txn
		m.txn = d.job.txn + 1
		m.txnWrites = 0
		now := time.Now()
		for i, p := range d.job.parts {
			if p.dropped || d.job.at[i] <= p.committed {
				continue
			}
			p.committed = d.job.at[i]
			p.releaseCommitted()
			p.stats.CommittedAt(p.committed, d.job.doneTs[i], now)
			for _, l := range p.lanes {
				m.send(l.s, Outbound{Committed: &Committed{Topic: p.ktp.topic, Partition: p.ktp.partition, Offset: p.committed}})
			}
		}
		for _, p := range m.parts {
			for _, t := range p.tables {
				m.release(t.ApplyCommitted(m.committedTxn))
				if t.Window() != nil && !p.revoking && p.a.blocked == "" {
					m.expireWindowsTxn(p, t, m.now)
				}
			}
		}
		m.handOutAll()
		return
	}
	m.mon.TxnAborts.Add(1)
	m.mon.CommitFailures.Add(1)
	m.log.Warn("transaction aborted; every partition goes back to its committed offset and its events are delivered again",
		"err", d.err, "partitions", len(m.parts))
	m.txn = d.job.txn + 1
	m.txnErr = nil
	m.txnWrites = 0
	m.rewindAll()
}

// txnFailure notes a record that failed in the producer goroutine before it
// reached the producer: the transaction it was for must not commit.
func (m *Manager) txnFailure() {
	if m.eos {
		m.localFail.Store(true)
	}
}

// rewindAll rewinds every partition to its committed offset after an abort.
func (m *Manager) rewindAll() {
	for _, p := range m.parts {
		m.rewind(p)
	}
	for _, req := range m.revokes {
		for _, p := range req.ps {
			if m.parts[p.ktp] != p && !p.dropped {
				m.rewind(p)
			}
		}
	}
}

// rewind takes p back to its committed offset: every event from there on is
// pending again, under a new epoch, with the committed state.
func (m *Manager) rewind(p *partition) {
	for _, t := range p.tables {
		m.release(t.DropUncommitted(m.committedTxn))
	}
	var sessions []*session
	for s, l := range p.lanes {
		if l.moveTo != nil {
			l.moveTo.pendingIn--
			l.moveTo = nil
		}
		if !l.revoking {
			sessions = append(sessions, s)
		}
		m.dropLane(l, false)
	}
	all := append(p.uncommitted, p.recs[p.head:]...)
	for _, r := range all {
		*r = rec{off: r.off, key: r.key, value: r.value, headers: r.headers, ts: r.ts, size: r.size,
			tries: r.tries, sent: r.sent, lost: r.lost, lastErr: r.lastErr}
	}
	p.recs, p.head, p.scan, p.uncommitted = all, 0, 0, nil
	p.retrying, p.acking = 0, 0
	clear(p.keyBusy)
	p.frontier = p.committed
	if p.revoking || p.dropped {
		return
	}
	if p.a.byKey {
		for _, s := range p.a.sessions {
			m.addLane(p, s)
		}
	} else if len(sessions) > 0 {
		m.addLane(p, sessions[0])
	} else if s := p.a.leastLoaded(nil); s != nil {
		m.addLane(p, s)
	}
	for _, r := range p.recs {
		if r.size > m.cfg.MaxEventBytes {
			m.deadLetter(p, r, "record too large for the agent stream")
		}
	}
	m.applyPause(p)
}

// releaseCommitted lets go of the records below the committed offset.
func (p *partition) releaseCommitted() {
	n := 0
	for n < len(p.uncommitted) && p.uncommitted[n].off < p.committed {
		p.bytes -= p.uncommitted[n].size
		n++
	}
	p.uncommitted = p.uncommitted[:copy(p.uncommitted, p.uncommitted[n:])]
	clear(p.uncommitted[len(p.uncommitted):cap(p.uncommitted)])
}

// expireWindowsTxn writes the tombstones of expired windows into the open
// transaction; their deletes join the overlay at once.
func (m *Manager) expireWindowsTxn(p *partition, t *live.Part, now time.Time) {
	for _, k := range t.ExpiredWindows(p.streamTime, now, m.cfg.WindowSweepEvery) {
		tm := tables.Mutation{Key: k, Delete: true}
		t.Expiring(k)
		w := &write{tp: t, mut: tm, log: t.Log(tm, mutationBytes(tm))}
		m.handWrite(p, nil, w)
	}
}

// txnLeaving is called when p leaves this worker: writes of it in the open
// transaction that no commit covers abort the transaction (a commit
// without p's offset would make them visible, and p's next owner
// processes those events again).
// A commit under way that carries p's offset aborts too, writes or not: by
// the time its offsets go, the consumer may be a member of the next
// generation, whose metadata the coordinator takes, and the offset would
// land on p's next owner.
func (m *Manager) txnLeaving(p *partition) {
	carried := m.committing && m.txnJob != nil && slices.Contains(m.txnJob.parts, p)
	if p.handedTxn != m.txn && !carried {
		return // nothing of it in the open transaction
	}
	if m.committing {
		// The transaction being committed holds its writes or its
		// offset: the group may have moved on by the time its offsets go
		// (runTxn).
		m.abortTxn.Store(m.txn)
		return
	}
	if m.txnErr == nil {
		m.txnErr, m.txnErrTxn = errTxnLeft, m.txn
	}
}

// startReq is the group's stable committed offset of p (readStart).
type startReq struct {
	p   *partition
	off int64 // -1: none
	err error
}

// readStart reads the group's stable committed offset of a newly assigned
// partition, off the Run goroutine; p delivers nothing until it is known.
// librdkafka does not always start a partition there: when the assignment
// changes while its committed-offset query waits for an open transaction
// (UNSTABLE_OFFSET_COMMIT), it starts the partition as if there were no
// committed offset, by auto.offset.reset — from the beginning — and its
// events would be processed and committed again (docs/kafka.md#exactly-once).
// Records below the committed offset are dropped instead.
func (m *Manager) readStart(p *partition) {
	tc, ok := m.consumer.(TxnConsumer)
	if !ok {
		return
	}
	p.startUnknown = true
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.MessageTimeout+5*time.Second)
		defer cancel()
		got, err := tc.CommittedOffsets(ctx, []transport.PartitionOffset{{Topic: p.ktp.topic, Partition: p.ktp.partition}})
		r := &startReq{p: p, off: -1, err: err}
		if err == nil && len(got) == 1 {
			r.off = int64(got[0].Offset)
		}
		m.in.push(r)
	}()
}

// startRead takes the committed offset readStart read: p starts there. A
// failed read is tried again after a backoff.
func (m *Manager) startRead(r *startReq) {
	p := r.p
	if m.parts[p.ktp] != p || p.dropped || !p.startUnknown {
		return
	}
	if r.err != nil {
		m.log.Warn("reading the committed offset of a newly assigned partition failed; trying again",
			"topic", p.ktp.topic, "partition", p.ktp.partition, "err", r.err, "in", m.cfg.RetryBackoffMin)
		time.AfterFunc(m.cfg.RetryBackoffMin, func() {
			m.in.push(&funcReq{f: func() {
				if m.parts[p.ktp] == p && !p.dropped && p.startUnknown {
					m.readStart(p)
				}
			}})
		})
		return
	}
	p.startUnknown = false
	defer m.deadLetterOversized(p)
	if r.off < 0 || r.off <= p.committed {
		return
	}
	// The group's committed offset, for the lag too (librdkafka's
	// counts from its own commits, which exactly-once does not make).
	p.stats.CommittedAt(r.off, nil, time.Now())
	first := int64(-1)
	if p.len() > 0 {
		first = p.recs[p.head].off
	}
	if n := p.startAt(r.off); n > 0 {
		m.log.Warn("the consumer started a partition below its committed offset; the records before it are skipped",
			"topic", p.ktp.topic, "partition", p.ktp.partition, "first_received", first, "committed", r.off, "skipped", n)
		// A buffer full of them paused the partition: nothing else
		// would resume it.
		m.applyPause(p)
	}
}

// deadLetterOversized dead-letters the records of p too large for the agent
// stream that receive kept while p's start was not known (exactly-once).
func (m *Manager) deadLetterOversized(p *partition) {
	if p.startUnknown || p.prev != nil || p.revoking || p.dropped {
		return
	}
	for _, r := range p.recs[p.head:] {
		if r.state == statePending && r.size > m.cfg.MaxEventBytes {
			m.deadLetter(p, r, "record too large for the agent stream")
		}
	}
}
