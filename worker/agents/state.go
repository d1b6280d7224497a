package agents

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
)

// tablePart is one table partition of an owned source partition, owned by
// the Run goroutine. Reads see the store through an overlay of the
// mutations whose changelog records Kafka acknowledged and that are not
// yet applied to the store; once per commit cycle they are applied, in
// changelog order, with the last offset as the store's checkpoint, and the
// overlay empties.
//
// Mutations enter the overlay when their changelog record is
// acknowledged, not when the result arrives: the key of the event stays
// busy until then (no later event of the key is delivered), so the next
// event of the key sees them, and a changelog write that fails never
// leaves a value behind that Kafka does not have.
type tablePart struct {
	name   string
	window *tables.Window // nil for a plain table
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
	// txnLog (exactly-once, eos.go) holds the mutations not yet applied to
	// the store, in the order they were made; seq numbers them.
	txnLog []*txnMut
	seq    int64
	// gapSeen: a record of another writer was found among this worker's
	// own (logged once; flushTable).
	gapSeen bool
	// next is the changelog offset this worker's next own record takes if
	// nobody else writes: the restore's end, then one past the last own
	// record applied in order (flushTable).
	next int64
	// ackedBytes are the held bytes (Config.InflightBytes) of acked,
	// released once they are applied to the store.
	ackedBytes int64
	// readErr is the last failed read of the store, since readErrAt,
	// until a read succeeds (a stall: checkStalls); readFails counts the
	// failures in a row, for the backoff of the events held meanwhile.
	readErr   error
	readErrAt time.Time
	readFails uint32
	// readLog and expireLog rate-limit the logging of failed reads and
	// expiry sweeps.
	readLog, expireLog logLimit
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

// newTableParts returns the table partitions of p's agent, not yet open.
func (m *Manager) newTableParts(p *partition) []*tablePart {
	var out []*tablePart
	for _, name := range p.a.cfg.Tables {
		t := &tablePart{
			name:      name,
			changelog: tables.Changelog{App: m.cfg.App, Table: name},
			overlay:   map[string]overlayValue{},
		}
		if w, ok := m.cfg.Windows[name]; ok {
			t.window = &w
		}
		out = append(out, t)
	}
	return out
}

// get returns the current value of key: the overlay's, else the store's.
func (t *tablePart) get(key []byte) (TableState, error) { return t.getIn(t.overlay, key) }

// getIn returns the value of key through ov, else the store's.
func (t *tablePart) getIn(ov map[string]overlayValue, key []byte) (TableState, error) {
	st := TableState{Table: t.name}
	if v, ok := ov[string(key)]; ok {
		st.HasValue, st.Value = !v.deleted, v.value
		return st, nil
	}
	if len(key) == 0 {
		return st, nil // a keyless event has no state (empty keys are never stored)
	}
	v, found, err := t.store.Get(key)
	st.HasValue, st.Value = found, v
	return st, err
}

// stateOf returns the state of r's key in each table of p: for a windowed
// table, one per live window of r's timestamp, oldest first. A read that
// fails is the error, with the table partition it failed on: the event
// must not go out without its state (an absent key would reset it).
func (m *Manager) stateOf(p *partition, r *rec) ([]TableState, *tablePart, error) {
	if len(p.tables) == 0 {
		return nil, nil, nil
	}
	out := make([]TableState, 0, len(p.tables))
	for _, t := range p.tables {
		if t.window == nil {
			st, err := m.readState(p, t, r.key)
			if err != nil {
				return nil, t, err
			}
			out = append(out, st)
			continue
		}
		if len(r.key) == 0 {
			continue // a keyless event has no state
		}
		for _, start := range t.liveWindows(r.ts, p.streamTime) {
			st, err := m.readState(p, t, tables.WindowKey(r.key, start))
			if err != nil {
				return nil, t, err
			}
			st.WindowStart = start
			out = append(out, st)
		}
	}
	return out, nil, nil
}

// readState reads key through t's overlay, noting a failure for the
// backoff and the stall report, and its end.
func (m *Manager) readState(p *partition, t *tablePart, key []byte) (TableState, error) {
	st, err := t.get(key)
	if err != nil {
		if t.readErr == nil {
			t.readErrAt = m.now
		}
		t.readErr = err
		t.readFails++
		p.a.mon.TableReadErrors.Add(1)
		t.readLog.error(m.log, m.now, "reading table state failed; the event is held and read again after a backoff",
			"agent", p.a.cfg.Name, "table", t.name, "partition", p.ktp.partition, "err", err)
		return st, fmt.Errorf("read table %q partition %d: %w", t.name, p.ktp.partition, err)
	}
	if t.readErr != nil {
		m.log.Info("reading table state works again", "agent", p.a.cfg.Name, "table", t.name,
			"partition", p.ktp.partition, "failures", t.readFails, "after", m.now.Sub(t.readErrAt).Round(time.Millisecond))
		t.readErr, t.readFails = nil, 0
	}
	return st, nil
}

// holdRead keeps r back after the state of its key could not be read from
// t: it is not delivered, and is read again after a backoff (growing with
// t's failures in a row). Its key stays busy meanwhile, so the key's later
// events cannot overtake it. Its attempt does not count: a failing store
// is the worker's failure, not the agent's (like a failed produce,
// holdWrites).
func (m *Manager) holdRead(p *partition, r *rec, t *tablePart) {
	r.state = stateRetry
	r.lane = nil
	r.retryAt = m.now.Add(m.backoff(t.readFails))
	p.retrying++
	if p.keyBusy != nil {
		p.busy(r.key)
	}
}

// liveWindows are the starts of the windows ts falls in that have not
// expired at stream time now.
func (t *tablePart) liveWindows(ts, now time.Time) []time.Time {
	starts := t.window.Starts(ts)
	return slices.DeleteFunc(starts, func(s time.Time) bool { return t.window.Expired(s, now) })
}

// storeKey is the key a mutation changes in the store and the changelog:
// the window key for a windowed table.
func (t *tablePart) storeKey(mu Mutation) []byte {
	if t.window == nil {
		return mu.Key
	}
	return tables.WindowKey(mu.Key, mu.WindowStart)
}

// validateMutations checks the mutations of one OK result: declared
// tables, and only the event's own key. The busy-key rule orders the
// events of one key; an event changing another key could race that key's
// own events in flight (each would overwrite the other's update), so it is
// refused: a lost update is never possible.
func validateMutations(p *partition, rec *rec, muts []Mutation) error {
	a, off, key := p.a, rec.off, rec.key
	for _, mu := range muts {
		if !slices.Contains(a.cfg.Tables, mu.Table) {
			return badRequest("result for offset %d mutates table %q, which agent %q does not declare (declared: %v)",
				off, mu.Table, a.cfg.Name, a.cfg.Tables)
		}
		if len(mu.Key) == 0 {
			return badRequest("result for offset %d mutates table %q with an empty key", off, mu.Table)
		}
		if !bytes.Equal(mu.Key, key) {
			return badRequest("result for offset %d mutates key %q of table %q, but an event may only change its own key (%q): events of that key may be in flight and would overwrite each other",
				off, mu.Key, mu.Table, key)
		}
		t := p.tableOf(mu.Table)
		switch {
		case t.window == nil && !mu.WindowStart.IsZero():
			return badRequest("result for offset %d mutates table %q with a window start, but the table is not windowed", off, mu.Table)
		case t.window != nil && !slices.ContainsFunc(t.window.Starts(rec.ts), mu.WindowStart.Equal):
			return badRequest("result for offset %d mutates table %q at window start %s, which is not one of the event's windows (%v): a windowed mutation needs the start of a window delivered with the event",
				off, mu.Table, mu.WindowStart.UTC().Format(time.RFC3339Nano), t.window.Starts(rec.ts))
		}
	}
	return nil
}

// tableOf returns p's table partition named name (validated before).
func (p *partition) tableOf(name string) *tablePart {
	for _, t := range p.tables {
		if t.name == name {
			return t
		}
	}
	return nil
}

// produceMutations writes the changelog records of r's mutations, on the
// source partition; each acknowledgement counts as one of r's acks.
func (m *Manager) produceMutations(p *partition, r *rec, muts []Mutation) {
	r.wrote = r.wrote[:0]
	for _, mu := range muts {
		t := p.tableOf(mu.Table)
		key := t.storeKey(mu)
		r.wrote = append(r.wrote, t.name+"\x00"+string(key))
		m.produceChangelog(p, r, t, tables.Mutation{Key: key, Value: mu.Value, Delete: mu.Delete})
	}
}

// produceChangelog writes the changelog record of one mutation of r; its
// acknowledgement counts as one of r's acks.
func (m *Manager) produceChangelog(p *partition, r *rec, t *tablePart, tm tables.Mutation) {
	recs, err := t.changelog.Records(p.ktp.partition, []tables.Mutation{tm})
	if err != nil { // validated: cannot happen, but never lose an ack
		m.in.push(&changelogAck{p: p, r: r, tp: t, mut: tm, off: -1, err: err})
		return
	}
	n := mutationBytes(tm) // held until applied to the store
	m.hold(n)
	m.produceOffset(p, recs[0], func(off int64, err error) {
		m.in.push(&changelogAck{p: p, r: r, tp: t, mut: tm, off: off, err: err, n: n})
	})
}

// changelogAcked takes the acknowledgement of one changelog record: an
// acknowledged mutation joins the overlay (and waits to be applied), then
// it counts as one of the record's acks.
func (m *Manager) changelogAcked(a *changelogAck) {
	if a.err != nil || a.p.dropped {
		m.release(a.n)
	}
	if a.r == nil { // an expiry tombstone: no event waits for it
		a.p.tombstones--
		delete(a.tp.expiring, string(a.mut.Key))
		if a.err != nil {
			m.log.Warn("writing the tombstone of an expired window failed; the next sweep tries again", "table", a.tp.name, "partition", a.p.ktp.partition, "err", a.err)
			return
		}
	}
	if a.err == nil && !a.p.dropped {
		t := a.tp
		t.ackedBytes += a.n
		t.acked = append(t.acked, ackedMutation{mut: a.mut, off: a.off})
		if old, ok := t.overlay[string(a.mut.Key)]; !ok || a.off > old.off {
			t.overlay[string(a.mut.Key)] = overlayValue{value: a.mut.Value, deleted: a.mut.Delete, off: a.off}
		}
	}
	if a.r != nil {
		m.produced(a.p, a.r, &write{tp: a.tp, mut: a.mut}, a.err)
	}
}

// flushTables applies every partition's acknowledged mutations to its
// stores (once per commit cycle).
func (m *Manager) flushTables() {
	for _, p := range m.parts {
		for _, t := range p.tables {
			m.flushTable(p, t)
			if t.window != nil && !p.dropped && !p.revoking && p.a.blocked == "" {
				m.expireWindows(p, t, m.now)
			}
		}
	}
}

// sweepKeys bounds an expiry sweep: a commit cycle looks at up to
// sweepKeys window keys of a windowed table partition, continuing where
// the last one stopped; a pass over the whole store starts at most every
// Config.WindowSweepEvery.
const sweepKeys = 5000

// expireWindows deletes windows that expired at the partition's stream
// time: a tombstone goes to the changelog, and once Kafka acknowledges it
// the delete joins the overlay and the store like any mutation.
func (m *Manager) expireWindows(p *partition, t *tablePart, now time.Time) {
	for _, k := range m.expiredWindows(p, t, now) {
		tm := tables.Mutation{Key: k, Delete: true}
		recs, err := t.changelog.Records(p.ktp.partition, []tables.Mutation{tm})
		if err != nil {
			// The window stays; the next full pass finds it again.
			t.expireLog.error(m.log, now, "writing the tombstone of an expired window failed; the next sweep tries again",
				"agent", p.a.cfg.Name, "table", t.name, "partition", p.ktp.partition, "err", err)
			continue
		}
		if t.expiring == nil {
			t.expiring = map[string]bool{}
		}
		t.expiring[string(k)] = true
		n := mutationBytes(tm)
		m.hold(n)
		p.tombstones++
		m.produceOffset(p, recs[0], func(off int64, err error) {
			m.in.push(&changelogAck{p: p, tp: t, mut: tm, off: off, err: err, n: n})
		})
	}
}

// expiredWindows returns the window keys of the next part of t's sweep
// (sweepKeys of them at most) that expired at the partition's stream time
// and are not being deleted already.
func (m *Manager) expiredWindows(p *partition, t *tablePart, now time.Time) [][]byte {
	if t.store == nil || p.streamTime.IsZero() || (t.sweepFrom == nil && now.Sub(t.sweptAt) < m.cfg.WindowSweepEvery) {
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
		case t.window.Expired(start, p.streamTime) && !t.expiring[string(k)]:
			expired = append(expired, k)
		}
		return seen < sweepKeys
	})
	if err != nil {
		// The next cycle sweeps again from the same key.
		t.expireLog.error(m.log, now, "sweeping the table for expired windows failed; the next commit cycle tries again",
			"agent", p.a.cfg.Name, "table", t.name, "partition", p.ktp.partition, "err", err)
		return nil
	}
	if malformed > 0 {
		t.expireLog.error(m.log, now, "the windowed table holds keys that are not window keys; they never expire",
			"agent", p.a.cfg.Name, "table", t.name, "partition", p.ktp.partition, "keys", malformed)
	}
	if seen < sweepKeys {
		t.sweepFrom, t.sweptAt = nil, now // the pass is complete
	} else {
		t.sweepFrom = last
	}
	return expired
}

// flushTable applies t's acknowledged mutations in changelog order, with
// the last offset as the checkpoint, and empties the overlay. On failure
// they stay, reads stay right, and the next cycle tries again.
func (m *Manager) flushTable(p *partition, t *tablePart) {
	if len(t.acked) == 0 || t.store == nil {
		return
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
		m.log.Warn("the table's changelog has records this worker did not write among its own; the local checkpoint stays before them until the next restore",
			"table", t.name, "partition", p.ktp.partition, "checkpoint", next-1, "next_own_offset", t.acked[cut].off)
	}
	if cut > 0 {
		if err := t.store.Apply(muts[:cut], t.acked[cut-1].off); err != nil {
			m.log.Error("applying changelog writes to the table store failed; will retry", "table", t.name,
				"partition", p.ktp.partition, "offset", t.acked[cut-1].off, "err", err)
			return
		}
		t.next = next
		// Applied: a retry of the rest must not apply them again.
		t.acked = t.acked[:copy(t.acked, t.acked[cut:])]
		muts = muts[cut:]
	}
	if len(muts) > 0 {
		if err := t.store.Apply(muts, tables.NoOffset); err != nil {
			m.log.Error("applying changelog writes to the table store failed; will retry", "table", t.name,
				"partition", p.ktp.partition, "offset", t.acked[len(t.acked)-1].off, "err", err)
			return
		}
	}
	clear(t.acked)
	t.acked = t.acked[:0]
	clear(t.overlay)
	m.release(t.ackedBytes)
	t.ackedBytes = 0
}

// closeTables applies what is acknowledged, closes p's stores and ends a
// restore under way.
func (m *Manager) closeTables(p *partition) {
	if p.cancelRestore != nil {
		p.cancelRestore()
	}
	for _, t := range p.tables {
		m.flushTable(p, t)
		if m.eos {
			m.applyCommitted(p, t)
			m.dropUncommitted(t)
			for _, e := range t.txnLog { // committed, not applied: the store failed
				m.release(e.n)
			}
			t.txnLog = nil
		}
		if t.store != nil {
			if err := t.store.Close(); err != nil {
				m.log.Warn("closing table store", "table", t.name, "partition", p.ktp.partition, "err", err)
			}
			t.store = nil
		}
		m.release(t.ackedBytes) // a flush that failed: the partition is gone anyway
		t.ackedBytes = 0
		if cur := m.parts[p.ktp]; m.cfg.Standbys != nil && (cur == nil || cur == p) {
			// (A newer assignment of the partition releases it when it
			// leaves: its claim must stand meanwhile.)
			m.cfg.Standbys.Release(t.name, p.ktp.partition)
		}
	}
}
