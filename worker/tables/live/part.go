package live

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/transport"
)

// Part is one table partition of an owned source partition. It is not
// safe for concurrent use: its owner (the agents manager's Run goroutine)
// calls it. Reads see the store through an overlay of the mutations whose
// changelog records Kafka acknowledged and that are not yet applied to the
// store; once per commit cycle they are applied (Flush), in changelog
// order, with the last offset as the store's checkpoint, and the overlay
// empties.
//
// Mutations enter the overlay when their changelog record is acknowledged
// (Acked), not when the result arrives: the key of the event stays busy
// until then (the owner delivers no later event of the key), so the next
// event of the key sees them, and a changelog write that fails never
// leaves a value behind that Kafka does not have. Under exactly-once the
// mutations enter at once and are logged with their transaction instead
// (Log, txn.go).
type Part struct {
	name      string
	agent     string
	partition int32
	log       *slog.Logger
	window    *tables.Window // nil for a plain table
	// Expiry of a windowed table: the window keys whose tombstones are
	// not acknowledged yet, where the incremental sweep continues, and
	// when the last full pass ended.
	expiring  map[string]bool
	sweepFrom []byte
	sweptAt   time.Time
	changelog tables.Changelog
	store     *tables.Store // nil until the partition is recovered
	overlay   map[string]overlayValue
	acked     []ackedMutation // in the order acknowledged
	// txnLog (exactly-once, txn.go) holds the mutations not yet applied to
	// the store, in the order they were made; seq numbers them.
	txnLog []*TxnMut
	seq    int64
	// gapSeen: a record of another writer was found among this worker's
	// own (logged once; Flush).
	gapSeen bool
	// next is the changelog offset this worker's next own record takes if
	// nobody else writes: the restore's end, then one past the last own
	// record applied in order (Flush).
	next int64
	// ackedBytes are the held bytes (the owner's memory cap) of acked,
	// released once they are applied to the store.
	ackedBytes int64
	// readErr is the last failed read of the store, since readErrAt,
	// until a read succeeds (a stall); readFails counts the failures in a
	// row, for the backoff of the events held meanwhile.
	readErr   error
	readErrAt time.Time
	readFails uint32
	// readLog and expireLog rate-limit the logging of failed reads and
	// expiry sweeps.
	readLog, expireLog logLimit
	// writeErr is the last failed write to the store (Flush,
	// ApplyCommitted), since writeErrAt, until a write succeeds (a stall,
	// logged once when it starts and once when it ends); writeFails counts
	// the failures in a row, writeErrs those not yet taken for the metric
	// (TakeWriteErrors).
	writeErr   error
	writeErrAt time.Time
	writeFails uint32
	writeErrs  uint64
}

// Config describes one table partition for New.
type Config struct {
	// App and Table name the changelog topic (<app>-<table>-changelog).
	App, Table string
	// Agent is the agent whose source partition it belongs to (for logs).
	Agent string
	// Partition is the source (and changelog) partition.
	Partition int32
	// Window is the table's window; nil for a plain table.
	Window *tables.Window
	// Log is where failures are logged; required.
	Log *slog.Logger
}

// New returns a table partition, not yet open (Open).
func New(c Config) *Part {
	return &Part{
		name:      c.Table,
		agent:     c.Agent,
		partition: c.Partition,
		log:       c.Log,
		window:    c.Window,
		changelog: tables.Changelog{App: c.App, Table: c.Table},
		overlay:   map[string]overlayValue{},
	}
}

// failureLogEvery is how often one table partition logs the same kind of
// failure; the failures in between are counted in the next line.
const failureLogEvery = 10 * time.Second

// logLimit logs one kind of failure at most every failureLogEvery.
type logLimit struct {
	last   time.Time
	missed int
}

func (l *logLimit) error(log *slog.Logger, now time.Time, msg string, args ...any) {
	if !l.last.IsZero() && now.Sub(l.last) < failureLogEvery {
		l.missed++
		return
	}
	if l.missed > 0 {
		args = append(args, "not_logged", l.missed)
	}
	log.Error(msg, args...)
	l.last, l.missed = now, 0
}

type overlayValue struct {
	value   []byte
	deleted bool
	off     int64
}

type ackedMutation struct {
	mut tables.Mutation
	off int64
}

// Name is the table's name.
func (t *Part) Name() string { return t.name }

// Window is the table's window; nil for a plain table.
func (t *Part) Window() *tables.Window { return t.window }

// Topic is the table's changelog topic.
func (t *Part) Topic() string { return t.changelog.Topic() }

// Open puts the restored store in place; next is the changelog's end at
// the restore, where this worker's own changelog records begin.
func (t *Part) Open(st *tables.Store, next int64) { t.store, t.next = st, next }

// Ready reports whether the partition is open (restored).
func (t *Part) Ready() bool { return t.store != nil }

// SwapStore puts st in place of the store and returns the one it replaced
// (tests: a closed store makes reads fail).
func (t *Part) SwapStore(st *tables.Store) *tables.Store {
	old := t.store
	t.store = st
	return old
}

// StoreKey is the key a mutation of key changes in the store and the
// changelog: the window key (tables.WindowKey) for a windowed table.
func (t *Part) StoreKey(key []byte, windowStart time.Time) []byte {
	if t.window == nil {
		return key
	}
	return tables.WindowKey(key, windowStart)
}

// Record is the changelog record of one mutation.
func (t *Part) Record(tm tables.Mutation) (transport.Record, error) {
	recs, err := t.changelog.Records(t.partition, []tables.Mutation{tm})
	if err != nil {
		return transport.Record{}, err
	}
	return recs[0], nil
}

// Get returns the current value of key as the agents see it: the
// overlay's, else the store's.
func (t *Part) Get(key []byte) (value []byte, found bool, err error) {
	return t.getIn(t.overlay, key)
}

// getIn returns the value of key through ov, else the store's.
func (t *Part) getIn(ov map[string]overlayValue, key []byte) ([]byte, bool, error) {
	if v, ok := ov[string(key)]; ok {
		return v.value, !v.deleted, nil
	}
	if len(key) == 0 {
		return nil, false, nil // a keyless event has no state (empty keys are never stored)
	}
	return t.store.Get(key)
}

// Read is Get for the state delivered with an event: a failure is noted
// (ReadFailure: the owner's backoff and stall report) and logged, at most
// every 10 s, and the read that works again ends it. A read that fails
// must never go out as an absent key: that would reset the agent's state.
func (t *Part) Read(key []byte, now time.Time) (value []byte, found bool, err error) {
	value, found, err = t.Get(key)
	if err != nil {
		if t.readErr == nil {
			t.readErrAt = now
		}
		t.readErr = err
		t.readFails++
		t.readLog.error(t.log, now, "reading table state failed; the event is held and read again after a backoff",
			"agent", t.agent, "table", t.name, "partition", t.partition, "err", err)
		return value, found, fmt.Errorf("read table %q partition %d: %w", t.name, t.partition, err)
	}
	if t.readErr != nil {
		t.log.Info("reading table state works again", "agent", t.agent, "table", t.name,
			"partition", t.partition, "failures", t.readFails, "after", now.Sub(t.readErrAt).Round(time.Millisecond))
		t.readErr, t.readFails = nil, 0
	}
	return value, found, nil
}

// ReadFailure is the last failed Read, how many failed in a row and since
// when; err is nil once a read works.
func (t *Part) ReadFailure() (err error, fails uint32, since time.Time) {
	return t.readErr, t.readFails, t.readErrAt
}

// LiveWindows are the starts of the windows ts falls in that have not
// expired at stream time now.
func (t *Part) LiveWindows(ts, now time.Time) []time.Time {
	starts := t.window.Starts(ts)
	return slices.DeleteFunc(starts, func(s time.Time) bool { return t.window.Expired(s, now) })
}

// Acked takes a mutation whose changelog record Kafka acknowledged at off:
// it joins the overlay and waits to be applied (Flush); its n held bytes
// are released then.
func (t *Part) Acked(mut tables.Mutation, off, n int64) {
	t.ackedBytes += n
	t.acked = append(t.acked, ackedMutation{mut: mut, off: off})
	if old, ok := t.overlay[string(mut.Key)]; !ok || off > old.off {
		t.overlay[string(mut.Key)] = overlayValue{value: mut.Value, deleted: mut.Delete, off: off}
	}
}

// Flush applies the acknowledged mutations in changelog order, with the
// last offset as the checkpoint, and empties the overlay; it returns the
// held bytes to release. On failure they stay, reads stay right, and the
// next cycle tries again.
func (t *Part) Flush() (released int64) {
	if len(t.acked) == 0 || t.store == nil {
		return 0
	}
	slices.SortStableFunc(t.acked, func(x, y ackedMutation) int {
		switch {
		case x.off < y.off:
			return -1
		case x.off > y.off:
			return 1
		}
		return 0
	})
	muts := make([]tables.Mutation, len(t.acked))
	for i, am := range t.acked {
		muts[i] = am.mut
	}
	// The checkpoint moves only over offsets this worker wrote itself, one
	// after the other from the store's checkpoint: a record of another
	// writer between them (a previous owner's late write, or one of ours
	// that failed yet landed) is not in the store, and a checkpoint past it
	// would make the next restore skip it. The mutations after a gap are
	// applied without moving the checkpoint (a store ahead of its
	// checkpoint is safe: a restore replays from there to the end).
	next, cut := max(t.next, t.store.LastOffset()+1), 0
	for cut < len(t.acked) && t.acked[cut].off == next {
		next++
		cut++
	}
	if cut < len(t.acked) && !t.gapSeen {
		t.gapSeen = true
		t.log.Warn("the table's changelog has records this worker did not write among its own; the local checkpoint stays before them until the next restore",
			"table", t.name, "partition", t.partition, "checkpoint", next-1, "next_own_offset", t.acked[cut].off)
	}
	if cut > 0 {
		if err := t.store.Apply(muts[:cut], t.acked[cut-1].off); err != nil {
			t.writeFailed(err, t.acked[cut-1].off)
			return 0
		}
		t.next = next
		// Applied: a retry of the rest must not apply them again.
		t.acked = t.acked[:copy(t.acked, t.acked[cut:])]
		muts = muts[cut:]
	}
	if len(muts) > 0 {
		if err := t.store.Apply(muts, tables.NoOffset); err != nil {
			t.writeFailed(err, t.acked[len(t.acked)-1].off)
			return 0
		}
	}
	t.writeWorks()
	clear(t.acked)
	t.acked = t.acked[:0]
	clear(t.overlay)
	released, t.ackedBytes = t.ackedBytes, 0
	return released
}

// writeFailed notes a failed write to the store: the first of an episode
// is logged at Warn (the owner reports the stall, WriteFailure), the rest
// are counted.
func (t *Part) writeFailed(err error, off int64) {
	now := time.Now()
	if t.writeErr == nil {
		t.writeErrAt = now
		t.log.Warn("writing table changes to the store failed; they are held in memory and written again at every commit cycle",
			"agent", t.agent, "table", t.name, "partition", t.partition, "offset", off, "err", err)
	}
	t.writeErr = err
	t.writeFails++
	t.writeErrs++
}

// writeWorks ends a failed-write episode: logged at Info.
func (t *Part) writeWorks() {
	if t.writeErr == nil {
		return
	}
	t.log.Info("writing table changes to the store works again", "agent", t.agent, "table", t.name,
		"partition", t.partition, "failures", t.writeFails, "after", time.Since(t.writeErrAt).Round(time.Millisecond))
	t.writeErr, t.writeFails = nil, 0
}

// WriteFailure is the last failed write to the store, how many failed in
// a row and since when; err is nil once a write works. The changes not
// written are held (HeldBytes) and written again by the next Flush or
// ApplyCommitted.
func (t *Part) WriteFailure() (err error, fails uint32, since time.Time) {
	return t.writeErr, t.writeFails, t.writeErrAt
}

// TakeWriteErrors returns the failed writes since the last call (the
// owner's metric).
func (t *Part) TakeWriteErrors() uint64 {
	n := t.writeErrs
	t.writeErrs = 0
	return n
}

// HeldBytes are the bytes of the changes waiting to be written to the
// store (at-least-once: acknowledged mutations; exactly-once: the
// transaction log), as counted against the owner's memory cap.
func (t *Part) HeldBytes() int64 {
	n := t.ackedBytes
	for _, e := range t.txnLog {
		if e.txn != 0 {
			n += e.n
		}
	}
	return n
}

// SweepKeys bounds an expiry sweep: one ExpiredWindows call looks at up to
// SweepKeys window keys of a windowed table partition, continuing where
// the last one stopped.
const SweepKeys = 5000

// ExpiredWindows returns the window keys of the next part of the sweep
// (SweepKeys of them at most) that expired at streamTime and are not being
// deleted already (Expiring); a pass over the whole store starts at most
// every sweepEvery. A failed sweep is logged and yields nothing: the next
// call sweeps again from the same key.
func (t *Part) ExpiredWindows(streamTime, now time.Time, sweepEvery time.Duration) [][]byte {
	if t.store == nil || streamTime.IsZero() || (t.sweepFrom == nil && now.Sub(t.sweptAt) < sweepEvery) {
		return nil
	}
	var expired [][]byte
	seen, malformed := 0, 0
	var last []byte
	err := t.store.Range(nil, t.sweepFrom, func(k, _ []byte) bool {
		seen++
		last = k
		_, start, err := tables.SplitWindowKey(k)
		switch {
		case err != nil:
			malformed++ // not a window key: never expired, reported below
		case t.window.Expired(start, streamTime) && !t.expiring[string(k)]:
			expired = append(expired, k)
		}
		return seen < SweepKeys
	})
	if err != nil {
		// The next cycle sweeps again from the same key.
		t.expireLog.error(t.log, now, "sweeping the table for expired windows failed; the next commit cycle tries again",
			"agent", t.agent, "table", t.name, "partition", t.partition, "err", err)
		return nil
	}
	if malformed > 0 {
		t.expireLog.error(t.log, now, "the windowed table holds keys that are not window keys; they never expire",
			"agent", t.agent, "table", t.name, "partition", t.partition, "keys", malformed)
	}
	if seen < SweepKeys {
		t.sweepFrom, t.sweptAt = nil, now // the pass is complete
	} else {
		t.sweepFrom = last
	}
	return expired
}

// Expiring marks the window key k as being deleted: its tombstone is on
// its way (until TombstoneDone, or until applied under exactly-once).
func (t *Part) Expiring(k []byte) {
	if t.expiring == nil {
		t.expiring = map[string]bool{}
	}
	t.expiring[string(k)] = true
}

// TombstoneDone ends Expiring for k: its tombstone was acknowledged or
// failed.
func (t *Part) TombstoneDone(k []byte) { delete(t.expiring, string(k)) }

// TombstoneFailed logs a tombstone that could not be built (rate-limited);
// the window stays and the next full pass finds it again.
func (t *Part) TombstoneFailed(now time.Time, err error) {
	t.expireLog.error(t.log, now, "writing the tombstone of an expired window failed; the next sweep tries again",
		"agent", t.agent, "table", t.name, "partition", t.partition, "err", err)
}

// Close applies what is acknowledged (and, under exactly-once, what
// committed transactions hold, dropping the rest) and closes the store; it
// returns the held bytes to release. committed is the last committed
// transaction (exactly-once only).
func (t *Part) Close(eos bool, committed uint64) (released int64) {
	released = t.Flush()
	if eos {
		released += t.ApplyCommitted(committed)
		released += t.DropUncommitted(committed)
		for _, e := range t.txnLog { // committed, not applied: the store failed
			released += e.n
		}
		t.txnLog = nil
	}
	if t.store != nil {
		if err := t.store.Close(); err != nil {
			t.log.Warn("closing table store", "table", t.name, "partition", t.partition, "err", err)
		}
		t.store = nil
	}
	released += t.ackedBytes // a flush that failed: the partition is gone anyway
	t.ackedBytes = 0
	return released
}
