package live

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Errors of table reads (Get, Scan).
var (
	// ErrNotOwned: the table partition is not owned by this worker (its
	// source partition is assigned elsewhere, or not at all).
	ErrNotOwned = errors.New("table partition not owned by this worker")
	// ErrRecovering: the table partition is owned here but still being
	// restored from its changelog; reads would see a partial table.
	ErrRecovering = errors.New("table partition is being restored")
)

// Stat describes one table partition this worker owns.
type Stat struct {
	Table      string
	Partition  int32
	Keys       int64 // keys as the agents see them (store and overlay)
	Recovering bool
}

// Entry is one key of a table read by a scan.
type Entry struct {
	Key, Value []byte
	Partition  int32
	// WindowStart is set once DecodeWindowKeys split a window key; zero
	// before, and for a plain table.
	WindowStart time.Time
}

// CompareEntries orders entries by (key, partition): the order of every
// scan, local or merged.
func CompareEntries(x, y Entry) int {
	if c := bytes.Compare(x.Key, y.Key); c != 0 {
		return c
	}
	return int(x.Partition) - int(y.Partition)
}

// ScanFrom is where a scan continues: after (Key, Partition) in (key,
// partition) order. The zero value starts at the beginning.
type ScanFrom struct {
	Set       bool
	Key       []byte
	Partition int32
}

// covers reports whether (key, part) comes at or before the position, i.e.
// was already returned.
func (f ScanFrom) covers(key []byte, part int32) bool {
	if !f.Set {
		return false
	}
	c := bytes.Compare(key, f.Key)
	return c < 0 || (c == 0 && part <= f.Partition)
}

// View is what a query reads a table partition through, over its store:
// AgentView (what the agents see) or CommittedView (exactly-once: only
// committed state).
type View struct{ ov map[string]overlayValue }

// AgentView is the overlay the agents read: the acknowledged mutations not
// yet in the store (under exactly-once, every mutation made).
func (t *Part) AgentView() View { return View{t.overlay} }

// CommittedView is the overlay of the mutations of the transactions up to
// committed that are not yet applied to the store: under exactly-once the
// table service answers only committed state.
func (t *Part) CommittedView(committed uint64) View {
	var ov map[string]overlayValue
	for _, e := range t.txnLog {
		if e.txn != 0 && e.txn <= committed {
			if ov == nil {
				ov = map[string]overlayValue{}
			}
			ov[string(e.mut.Key)] = overlayValue{value: e.mut.Value, deleted: e.mut.Delete, off: e.seq}
		}
	}
	return View{ov}
}

// GetIn returns the value of key through v.
func (t *Part) GetIn(v View, key []byte) (value []byte, found bool, err error) {
	return t.getIn(v.ov, key)
}

// Count returns the keys of the partition as seen through v.
func (t *Part) Count(v View) (int64, error) {
	n, err := t.store.Count()
	if err != nil {
		return 0, err
	}
	total := int64(n)
	for k, v := range v.ov {
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

// Scan returns up to limit entries of the partition seen through v, in key
// order, whose key starts with prefix and that come after from.
func (t *Part) Scan(v View, prefix []byte, from ScanFrom, limit int) ([]Entry, error) {
	view, part := v.ov, t.partition
	// Overlay keys in range, sorted: they replace or delete store keys.
	var ov []string
	for k := range view {
		if strings.HasPrefix(k, string(prefix)) && !from.covers([]byte(k), part) {
			ov = append(ov, k)
		}
	}
	slices.Sort(ov)
	var out []Entry
	emitOverlay := func(k string) {
		if v := view[k]; !v.deleted {
			out = append(out, Entry{Key: []byte(k), Value: slices.Clone(v.value), Partition: part})
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
				out = append(out, Entry{Key: slices.Clone(from.Key), Value: v, Partition: part})
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
			out = append(out, Entry{Key: k, Value: v, Partition: part})
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

// Owned are the table partitions of one table a worker owns: those it can
// read (Live, by partition) and those still restoring (Recovering).
type Owned struct {
	Table      string
	Live       map[int32]*Part
	Recovering map[int32]bool
	// View is what each partition is read through (AgentView or
	// CommittedView).
	View func(*Part) View
}

// Get reads key from partition through the owned partitions; found is
// false for a missing key. ErrNotOwned and ErrRecovering (wrapped) when
// the partition is not readable here.
func (o Owned) Get(partition int32, key []byte) (value []byte, found bool, err error) {
	switch t := o.Live[partition]; {
	case t != nil:
		return t.GetIn(o.View(t), key)
	case o.Recovering[partition]:
		return nil, false, fmt.Errorf("table %q partition %d: %w", o.Table, partition, ErrRecovering)
	default:
		return nil, false, fmt.Errorf("table %q partition %d: %w", o.Table, partition, ErrNotOwned)
	}
}

// ScanResult is one read of Owned.Scan.
type ScanResult struct {
	// Entries are in (key, partition) order; More reports whether further
	// entries match.
	Entries []Entry
	More    bool
	// Partitions are the partitions read; Skipped those still restoring.
	Partitions, Skipped []int32
}

// Scan reads up to limit entries from the owned partitions (those in only,
// when only is not empty), merged in (key, partition) order, whose key
// starts with prefix and that come after from. Recovering partitions are
// skipped. The result is unordered until Merge, which need not run on the
// owner's goroutine.
func (o Owned) Scan(prefix []byte, from ScanFrom, limit int, only []int32) (ScanResult, error) {
	var r ScanResult
	wanted := func(p int32) bool { return len(only) == 0 || slices.Contains(only, p) }
	for p := range o.Recovering {
		if wanted(p) {
			r.Skipped = append(r.Skipped, p)
		}
	}
	for p, t := range o.Live {
		if !wanted(p) {
			continue
		}
		r.Partitions = append(r.Partitions, p)
		es, err := t.Scan(o.View(t), prefix, from, limit+1)
		if err != nil {
			return ScanResult{}, err
		}
		r.Entries = append(r.Entries, es...)
	}
	return r, nil
}

// Merge orders a Scan's result and cuts it to limit entries, setting More
// when it had more.
func (r *ScanResult) Merge(limit int) {
	slices.Sort(r.Partitions)
	slices.Sort(r.Skipped)
	slices.SortFunc(r.Entries, CompareEntries)
	if len(r.Entries) > limit {
		r.Entries, r.More = r.Entries[:limit], true
	}
}
