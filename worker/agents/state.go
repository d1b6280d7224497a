package agents

import (
	"bytes"
	"slices"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/tables/live"
)

// newTableParts returns the table partitions of p's agent, not yet open.
func (m *Manager) newTableParts(p *partition) []*live.Part {
	var out []*live.Part
	for _, name := range p.a.cfg.Tables {
		c := live.Config{App: m.cfg.App, Table: name, Agent: p.a.cfg.Name, Partition: p.ktp.partition, Log: m.log}
		if w, ok := m.cfg.Windows[name]; ok {
			c.Window = &w
		}
		out = append(out, live.New(c))
	}
	return out
}

// stateOf returns the state of r's key in each table of p: for a windowed
// table, one per live window of r's timestamp, oldest first. A read that
// fails is the error, with the table partition it failed on: the event
// must not go out without its state (an absent key would reset it).
func (m *Manager) stateOf(p *partition, r *rec) ([]TableState, *live.Part, error) {
	if len(p.tables) == 0 {
		return nil, nil, nil
	}
	out := make([]TableState, 0, len(p.tables))
	for _, t := range p.tables {
		if t.Window() == nil {
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
		for _, start := range t.LiveWindows(r.ts, p.streamTime) {
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

// readState reads key through t's overlay (a failure is noted there, for
// the backoff and the stall report) and counts a failure.
func (m *Manager) readState(p *partition, t *live.Part, key []byte) (TableState, error) {
	v, found, err := t.Read(key, m.now)
	if err != nil {
		p.a.mon.TableReadErrors.Add(1)
	}
	return TableState{Table: t.Name(), HasValue: found, Value: v}, err
}

// holdRead keeps r back after the state of its key could not be read from
// t: it is not delivered, and is read again after a backoff (growing with
// t's failures in a row). Its key stays busy meanwhile, so the key's later
// events cannot overtake it. Its attempt does not count: a failing store
// is the worker's failure, not the agent's (like a failed produce,
// holdWrites).
func (m *Manager) holdRead(p *partition, r *rec, t *live.Part) {
	r.state = stateRetry
	r.lane = nil
	_, fails, _ := t.ReadFailure()
	r.retryAt = m.now.Add(m.backoff(fails))
	p.retrying++
	if p.keyBusy != nil {
		p.busy(r.key)
	}
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
		w := p.tableOf(mu.Table).Window()
		switch {
		case w == nil && !mu.WindowStart.IsZero():
			return badRequest("result for offset %d mutates table %q with a window start, but the table is not windowed", off, mu.Table)
		case w != nil && !slices.ContainsFunc(w.Starts(rec.ts), mu.WindowStart.Equal):
			return badRequest("result for offset %d mutates table %q at window start %s, which is not one of the event's windows (%v): a windowed mutation needs the start of a window delivered with the event",
				off, mu.Table, mu.WindowStart.UTC().Format(time.RFC3339Nano), w.Starts(rec.ts))
		}
	}
	return nil
}

// tableOf returns p's table partition named name (validated before).
func (p *partition) tableOf(name string) *live.Part {
	for _, t := range p.tables {
		if t.Name() == name {
			return t
		}
	}
	return nil
}

// produceMutations writes the changelog records of r's mutations, on the
// source partition; each acknowledgement counts as one of r's acks.
func (m *Manager) produceMutations(p *partition, r *rec, muts []Mutation) {
	r.landed = r.landed[:0]
	for _, mu := range muts {
		t := p.tableOf(mu.Table)
		key := t.StoreKey(mu.Key, mu.WindowStart)
		m.produceChangelog(p, r, t, tables.Mutation{Key: key, Value: mu.Value, Delete: mu.Delete})
	}
}

// produceChangelog writes the changelog record of one mutation of r; its
// acknowledgement counts as one of r's acks.
func (m *Manager) produceChangelog(p *partition, r *rec, t *live.Part, tm tables.Mutation) {
	rec, err := t.Record(tm)
	if err != nil { // validated: cannot happen, but never lose an ack
		m.in.push(&changelogAck{p: p, r: r, tp: t, mut: tm, off: -1, err: err})
		return
	}
	n := mutationBytes(tm) // held until applied to the store
	m.hold(n)
	m.produceOffset(p, rec, func(off int64, err error) {
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
		a.tp.TombstoneDone(a.mut.Key)
		if a.err != nil {
			m.log.Warn("writing the tombstone of an expired window failed; the next sweep tries again", "table", a.tp.Name(), "partition", a.p.ktp.partition, "err", a.err)
			return
		}
	}
	if a.err == nil && !a.p.dropped {
		a.tp.Acked(a.mut, a.off, a.n)
		if a.r != nil {
			a.r.landed = append(a.r.landed, a.tp.Name()+"\x00"+string(a.mut.Key))
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
			m.release(t.Flush())
			if t.Window() != nil && !p.dropped && !p.revoking && p.a.blocked == "" {
				m.expireWindows(p, t, m.now)
			}
		}
	}
}

// expireWindows deletes windows that expired at the partition's stream
// time: a tombstone goes to the changelog, and once Kafka acknowledges it
// the delete joins the overlay and the store like any mutation.
func (m *Manager) expireWindows(p *partition, t *live.Part, now time.Time) {
	for _, k := range t.ExpiredWindows(p.streamTime, now, m.cfg.WindowSweepEvery) {
		tm := tables.Mutation{Key: k, Delete: true}
		rec, err := t.Record(tm)
		if err != nil {
			// The window stays; the next full pass finds it again.
			t.TombstoneFailed(now, err)
			continue
		}
		t.Expiring(k)
		n := mutationBytes(tm)
		m.hold(n)
		p.tombstones++
		m.produceOffset(p, rec, func(off int64, err error) {
			m.in.push(&changelogAck{p: p, tp: t, mut: tm, off: off, err: err, n: n})
		})
	}
}

// closeTables applies what is acknowledged, closes p's stores and ends a
// restore under way.
func (m *Manager) closeTables(p *partition) {
	if p.cancelRestore != nil {
		p.cancelRestore()
	}
	for _, t := range p.tables {
		m.release(t.Close(m.eos, m.committedTxn))
		if cur := m.parts[p.ktp]; m.cfg.Standbys != nil && (cur == nil || cur == p) {
			// (A newer assignment of the partition releases it when it
			// leaves: its claim must stand meanwhile.)
			m.cfg.Standbys.Release(t.Name(), p.ktp.partition)
		}
	}
}
