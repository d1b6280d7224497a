package agents

import (
	"bytes"
	"slices"

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
	name      string
	changelog tables.Changelog
	store     *tables.Store // nil until the partition is recovered
	overlay   map[string]overlayValue
	acked     []ackedMutation // in the order acknowledged
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
		out = append(out, &tablePart{
			name:      name,
			changelog: tables.Changelog{App: m.cfg.App, Table: name},
			overlay:   map[string]overlayValue{},
		})
	}
	return out
}

// get returns the current value of key: the overlay's, else the store's.
func (t *tablePart) get(key []byte) (TableState, error) {
	st := TableState{Table: t.name}
	if v, ok := t.overlay[string(key)]; ok {
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

// stateOf returns the state of r's key in each table of p.
func (m *Manager) stateOf(p *partition, r *rec) []TableState {
	if len(p.tables) == 0 {
		return nil
	}
	out := make([]TableState, len(p.tables))
	for i, t := range p.tables {
		st, err := t.get(r.key)
		if err != nil {
			// The store is in memory: an error means it was closed under
			// us, which the owner goroutine never does while delivering.
			m.log.Error("table read failed", "table", t.name, "partition", p.ktp.partition, "err", err)
		}
		out[i] = st
	}
	return out
}

// validateMutations checks the mutations of one OK result: declared
// tables, and only the event's own key. The busy-key rule orders the
// events of one key; an event changing another key could race that key's
// own events in flight (each would overwrite the other's update), so it is
// refused: a lost update is never possible.
func validateMutations(a *agentState, off int64, key []byte, muts []Mutation) error {
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
	for _, mu := range muts {
		t := p.tableOf(mu.Table)
		tm := tables.Mutation{Key: mu.Key, Value: mu.Value, Delete: mu.Delete}
		recs, err := t.changelog.Records(p.ktp.partition, []tables.Mutation{tm})
		if err != nil { // validated: cannot happen, but never lose an ack
			m.in.push(&changelogAck{p: p, r: r, tp: t, mut: tm, off: -1, err: err})
			continue
		}
		m.produceOffset(recs[0], func(off int64, err error) {
			m.in.push(&changelogAck{p: p, r: r, tp: t, mut: tm, off: off, err: err})
		})
	}
}

// changelogAcked takes the acknowledgement of one changelog record: an
// acknowledged mutation joins the overlay (and waits to be applied), then
// it counts as one of the record's acks.
func (m *Manager) changelogAcked(a *changelogAck) {
	if a.err == nil && !a.p.dropped {
		t := a.tp
		t.acked = append(t.acked, ackedMutation{mut: a.mut, off: a.off})
		if old, ok := t.overlay[string(a.mut.Key)]; !ok || a.off > old.off {
			t.overlay[string(a.mut.Key)] = overlayValue{value: a.mut.Value, deleted: a.mut.Delete, off: a.off}
		}
	}
	m.produced(a.p, a.r, a.err)
}

// flushTables applies every partition's acknowledged mutations to its
// stores (once per commit cycle).
func (m *Manager) flushTables() {
	for _, p := range m.parts {
		for _, t := range p.tables {
			m.flushTable(p, t)
		}
	}
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
	last := t.acked[len(t.acked)-1].off
	if err := t.store.Apply(muts, last); err != nil {
		m.log.Error("applying changelog writes to the table store failed; will retry", "table", t.name,
			"partition", p.ktp.partition, "offset", last, "err", err)
		return
	}
	clear(t.acked)
	t.acked = t.acked[:0]
	clear(t.overlay)
}

// closeTables applies what is acknowledged, closes p's stores and ends a
// restore under way.
func (m *Manager) closeTables(p *partition) {
	if p.cancelRestore != nil {
		p.cancelRestore()
	}
	for _, t := range p.tables {
		m.flushTable(p, t)
		if t.store != nil {
			if err := t.store.Close(); err != nil {
				m.log.Warn("closing table store", "table", t.name, "partition", p.ktp.partition, "err", err)
			}
			t.store = nil
		}
		if m.cfg.Standbys != nil {
			m.cfg.Standbys.Release(t.name, p.ktp.partition)
		}
	}
}
