package agents

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Errors of table reads (TableGet, TableScan).
var (
	// ErrNotOwned: the table partition is not owned by this worker (its
	// source partition is assigned elsewhere, or not at all).
	ErrNotOwned = errors.New("table partition not owned by this worker")
	// ErrRecovering: the table partition is owned here but still being
	// restored from its changelog; reads would see a partial table.
	ErrRecovering = errors.New("table partition is being restored")
)

// TablePartStat describes one table partition this worker owns.
type TablePartStat struct {
	Table      string
	Partition  int32
	Keys       int64 // keys as the agents see them (store and overlay)
	Recovering bool
}

// TableEntry is one key of a table read by TableScan.
type TableEntry struct {
	Key, Value []byte
	Partition  int32
}

// ScanFrom is where a scan continues: after (Key, Partition) in (key,
// partition) order. The zero value starts at the beginning.
type ScanFrom struct {
	Set       bool
	Key       []byte
	Partition int32
}

// before reports whether (key, part) comes at or before the position, i.e.
// was already returned.
func (f ScanFrom) covers(key []byte, part int32) bool {
	if !f.Set {
		return false
	}
	c := bytes.Compare(key, f.Key)
	return c < 0 || (c == 0 && part <= f.Partition)
}

type tableQuery struct {
	run   func(m *Manager)
	reply chan struct{}
}

// query runs f on the Run goroutine (which owns partitions, stores and
// overlays) and waits for it, for ctx, or for the manager to stop.
func (m *Manager) query(ctx context.Context, f func(m *Manager)) error {
	q := &tableQuery{run: f, reply: make(chan struct{})}
	if !m.in.push(q) {
		return errors.New("agents manager stopped")
	}
	select {
	case <-q.reply:
		return nil
	case <-ctx.Done():
		// f may still run later; callers only read results after reply.
		return ctx.Err()
	case <-m.stopped:
		return errors.New("agents manager stopped")
	}
}

func (q *tableQuery) handle(m *Manager) {
	q.run(m)
	close(q.reply)
}

// tablePartsOf returns the owned, live table partitions of table, by
// partition (the first when several source partitions share one), and the
// partitions still recovering.
func (m *Manager) tablePartsOf(table string) (live map[int32]*tablePart, recovering map[int32]bool) {
	live, recovering = map[int32]*tablePart{}, map[int32]bool{}
	for _, p := range m.parts {
		if p.dropped || p.revoking {
			continue
		}
		t := p.tableOf(table)
		if t == nil {
			continue
		}
		if p.recovering || t.store == nil {
			recovering[p.ktp.partition] = true
			continue
		}
		if _, ok := live[p.ktp.partition]; !ok {
			live[p.ktp.partition] = t
		}
	}
	return live, recovering
}

// TableStats lists the table partitions this worker owns, with their key
// counts, sorted by table and partition. Safe for concurrent use.
func (m *Manager) TableStats(ctx context.Context) ([]TablePartStat, error) {
	var out []TablePartStat
	var qerr error
	err := m.query(ctx, func(m *Manager) {
		seen := map[tablePartition]bool{}
		for _, p := range m.parts {
			if p.dropped || p.revoking {
				continue
			}
			for _, t := range p.tables {
				k := tablePartition{t.name, p.ktp.partition}
				if seen[k] {
					continue
				}
				seen[k] = true
				st := TablePartStat{Table: t.name, Partition: p.ktp.partition, Recovering: p.recovering || t.store == nil}
				if !st.Recovering {
					n, err := t.count(m.queryView(t))
					if err != nil {
						qerr = err
						return
					}
					st.Keys = n
				}
				out = append(out, st)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Table != out[j].Table {
			return out[i].Table < out[j].Table
		}
		return out[i].Partition < out[j].Partition
	})
	return out, qerr
}

type tablePartition struct {
	table     string
	partition int32
}

// count returns the keys of the partition as the agents see them.
func (t *tablePart) count(ov map[string]overlayValue) (int64, error) {
	n, err := t.store.Count()
	if err != nil {
		return 0, err
	}
	total := int64(n)
	for k, v := range ov {
		_, inStore, err := t.store.Get([]byte(k))
		if err != nil {
			return 0, err
		}
		switch {
		case v.deleted && inStore:
			total--
		case !v.deleted && !inStore:
			total++
		}
	}
	return total, nil
}

// TableGet reads key from partition of table through the same overlay the
// agents see (acknowledged mutations not yet applied to the store are
// visible). found is false for a missing key. ErrNotOwned and
// ErrRecovering (wrapped) when the partition is not readable here. Safe
// for concurrent use.
func (m *Manager) TableGet(ctx context.Context, table string, partition int32, key []byte) (value []byte, found bool, err error) {
	var qerr error
	err = m.query(ctx, func(m *Manager) {
		live, rec := m.tablePartsOf(table)
		t := live[partition]
		switch {
		case t != nil:
			var st TableState
			st, qerr = t.getIn(m.queryView(t), key)
			value, found = st.Value, st.HasValue
		case rec[partition]:
			qerr = fmt.Errorf("table %q partition %d: %w", table, partition, ErrRecovering)
		default:
			qerr = fmt.Errorf("table %q partition %d: %w", table, partition, ErrNotOwned)
		}
	})
	if err != nil {
		return nil, false, err
	}
	return value, found, qerr
}

// TableScan reads up to limit entries of table from the partitions this
// worker owns (those in only, when only is not empty), merged in (key,
// partition) order, whose key starts with prefix and that come after from.
// more reports whether further entries match. partitions are the
// partitions read; recovering partitions are skipped and returned in
// skipped. Safe for concurrent use.
func (m *Manager) TableScan(ctx context.Context, table string, prefix []byte, from ScanFrom, limit int, only []int32) (entries []TableEntry, more bool, partitions, skipped []int32, err error) {
	if limit <= 0 {
		return nil, false, nil, nil, errors.New("scan limit must be positive")
	}
	var qerr error
	err = m.query(ctx, func(m *Manager) {
		live, rec := m.tablePartsOf(table)
		wanted := func(p int32) bool { return len(only) == 0 || slices.Contains(only, p) }
		for p := range rec {
			if wanted(p) {
				skipped = append(skipped, p)
			}
		}
		for p, t := range live {
			if !wanted(p) {
				continue
			}
			partitions = append(partitions, p)
			es, err := t.scan(m.queryView(t), p, prefix, from, limit+1)
			if err != nil {
				qerr = err
				return
			}
			entries = append(entries, es...)
		}
	})
	if err != nil {
		return nil, false, nil, nil, err
	}
	if qerr != nil {
		return nil, false, nil, nil, qerr
	}
	slices.Sort(partitions)
	slices.Sort(skipped)
	slices.SortFunc(entries, func(x, y TableEntry) int {
		if c := bytes.Compare(x.Key, y.Key); c != 0 {
			return c
		}
		return int(x.Partition) - int(y.Partition)
	})
	if len(entries) > limit {
		entries, more = entries[:limit], true
	}
	return entries, more, partitions, skipped, nil
}

// scan returns up to limit entries of t (partition part) merged with its
// overlay, in key order, starting after from.
func (t *tablePart) scan(view map[string]overlayValue, part int32, prefix []byte, from ScanFrom, limit int) ([]TableEntry, error) {
	// Overlay keys in range, sorted: they replace or delete store keys.
	var ov []string
	for k := range view {
		if strings.HasPrefix(k, string(prefix)) && !from.covers([]byte(k), part) {
			ov = append(ov, k)
		}
	}
	slices.Sort(ov)
	var out []TableEntry
	emitOverlay := func(k string) {
		if v := view[k]; !v.deleted {
			out = append(out, TableEntry{Key: []byte(k), Value: slices.Clone(v.value), Partition: part})
		}
	}
	var after []byte
	if from.Set {
		after = from.Key
		// Range's bound is exclusive, but from.Key itself is still due in
		// partitions that sort after from.Partition.
		k := string(from.Key)
		if part > from.Partition && strings.HasPrefix(k, string(prefix)) && !slices.Contains(ov, k) {
			v, found, err := t.store.Get(from.Key)
			if err != nil {
				return nil, err
			}
			if found {
				out = append(out, TableEntry{Key: slices.Clone(from.Key), Value: v, Partition: part})
			}
		}
	}
	i := 0
	err := t.store.Range(prefix, after, func(k, v []byte) bool {
		if from.covers(k, part) {
			return true
		}
		for i < len(ov) && ov[i] < string(k) {
			emitOverlay(ov[i])
			i++
		}
		if i < len(ov) && ov[i] == string(k) {
			emitOverlay(ov[i])
			i++
		} else {
			out = append(out, TableEntry{Key: k, Value: v, Partition: part})
		}
		return len(out) < limit
	})
	if err != nil {
		return nil, err
	}
	for ; i < len(ov) && len(out) < limit; i++ {
		emitOverlay(ov[i])
	}
	return out, nil
}

// queryView is the overlay TableService reads t through: the agents' own
// (acknowledged mutations not yet in the store) under at-least-once; under
// exactly-once only committed state is answered, so the mutations of
// committed transactions not yet applied to the store.
func (m *Manager) queryView(t *tablePart) map[string]overlayValue {
	if !m.eos {
		return t.overlay
	}
	var ov map[string]overlayValue
	for _, e := range t.txnLog {
		if e.txn != 0 && e.txn <= m.committedTxn {
			if ov == nil {
				ov = map[string]overlayValue{}
			}
			ov[string(e.mut.Key)] = overlayValue{value: e.mut.Value, deleted: e.mut.Delete, off: e.seq}
		}
	}
	return ov
}
