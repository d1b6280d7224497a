package agents

import (
	"context"
	"errors"
	"sort"

	"github.com/eddy-streams/eddy/worker/tables/live"
)

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

// owned returns the owned, live table partitions of table, by partition
// (the first when several source partitions share one), and the partitions
// still recovering, read through the view the table service answers from.
func (m *Manager) owned(table string) live.Owned {
	o := live.Owned{Table: table, Live: map[int32]*live.Part{}, Recovering: map[int32]bool{}, View: m.queryView}
	for _, p := range m.parts {
		if p.dropped || p.revoking {
			continue
		}
		t := p.tableOf(table)
		if t == nil {
			continue
		}
		if p.recovering || !t.Ready() {
			o.Recovering[p.ktp.partition] = true
			continue
		}
		if _, ok := o.Live[p.ktp.partition]; !ok {
			o.Live[p.ktp.partition] = t
		}
	}
	return o
}

// queryView is the view the table service reads t through: the agents'
// own (acknowledged mutations not yet in the store) under at-least-once;
// under exactly-once only committed state is answered.
func (m *Manager) queryView(t *live.Part) live.View {
	if !m.eos {
		return t.AgentView()
	}
	return t.CommittedView(m.committedTxn)
}

// TableStats lists the table partitions this worker owns, with their key
// counts, sorted by table and partition. Safe for concurrent use.
func (m *Manager) TableStats(ctx context.Context) ([]live.Stat, error) {
	var out []live.Stat
	var qerr error
	err := m.query(ctx, func(m *Manager) {
		seen := map[tablePartition]bool{}
		for _, p := range m.parts {
			if p.dropped || p.revoking {
				continue
			}
			for _, t := range p.tables {
				k := tablePartition{t.Name(), p.ktp.partition}
				if seen[k] {
					continue
				}
				seen[k] = true
				st := live.Stat{Table: t.Name(), Partition: p.ktp.partition, Recovering: p.recovering || !t.Ready()}
				if !st.Recovering {
					n, err := t.Count(m.queryView(t))
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

// TableGet reads key from partition of table through the view the table
// service answers from (live.Owned.Get). found is false for a missing key;
// live.ErrNotOwned and live.ErrRecovering (wrapped) when the partition is
// not readable here. Safe for concurrent use.
func (m *Manager) TableGet(ctx context.Context, table string, partition int32, key []byte) (value []byte, found bool, err error) {
	var qerr error
	err = m.query(ctx, func(m *Manager) {
		value, found, qerr = m.owned(table).Get(partition, key)
	})
	if err != nil {
		return nil, false, err
	}
	return value, found, qerr
}

// TableScan reads up to limit entries of table from the partitions this
// worker owns (those in only, when only is not empty), merged in (key,
// partition) order, whose key starts with prefix and that come after from
// (live.Owned.Scan). Recovering partitions are skipped and reported. Safe
// for concurrent use.
func (m *Manager) TableScan(ctx context.Context, table string, prefix []byte, from live.ScanFrom, limit int, only []int32) (live.ScanResult, error) {
	if limit <= 0 {
		return live.ScanResult{}, errors.New("scan limit must be positive")
	}
	var r live.ScanResult
	var qerr error
	err := m.query(ctx, func(m *Manager) {
		r, qerr = m.owned(table).Scan(prefix, from, limit, only)
	})
	if err == nil {
		err = qerr
	}
	if err != nil {
		return live.ScanResult{}, err
	}
	r.Merge(limit)
	return r, nil
}
