package agents

import (
	"context"
	"errors"
	"time"

	"github.com/eddy-streams/eddy/worker/tables/live"
)

// startRecovery restores the tables of a newly assigned partition on a
// goroutine of its own; nothing of the partition is delivered until its
// result comes back through the inbox (recovered). A failed restore (the
// broker unreachable, the store still held by a partition just revoked
// here) is tried again with backoff until it succeeds or the partition
// leaves.
func (m *Manager) startRecovery(p *partition) {
	if why := m.beyondChangelog(p); why != "" {
		// Restoring would create a store, and a write would go to a
		// changelog partition that does not exist.
		m.log.Error("partition not restored: it has no changelog partition; blocking its agent. "+
			"Rebuild the app's tables for the new partition count, or restore the topic (docs/operations.md)",
			"agent", p.a.cfg.Name, "topic", p.ktp.topic, "partition", p.ktp.partition,
			"changelog_partitions", m.cfg.SourcePartitions[p.ktp.topic])
		m.block(p.a, why)
		return
	}
	if p.a.blocked != "" {
		return // nothing of it will be delivered: no need for its state
	}
	ctx, cancel := context.WithCancel(m.ctx)
	p.cancelRestore = cancel
	m.recovering.Add(1)
	m.restores.Add(1)
	log := m.log.With("agent", p.a.cfg.Name, "topic", p.ktp.topic, "partition", p.ktp.partition)
	names := append([]string(nil), p.a.cfg.Tables...)
	rc := live.Recovery{Restorer: m.cfg.Restorer, Standbys: m.cfg.Standbys, Backoff: m.cfg.RestoreBackoff}
	go func() {
		defer m.restores.Done()
		start := time.Now()
		req := &recoveredReq{p: p}
		for _, name := range names {
			st, prog, err := rc.Restore(ctx, log, name, p.ktp.partition)
			if err != nil {
				req.err = err
				break
			}
			req.stores = append(req.stores, st)
			req.ends = append(req.ends, prog.To)
			req.records += prog.Records
		}
		req.took = time.Since(start)
		if !m.in.push(req) { // the manager stopped: nobody takes the stores
			for _, st := range req.stores {
				_ = st.Close()
			}
		}
	}()
}

// recovered takes the end of a partition's restore: its stores are in
// place and delivery may start, unless the partition left meanwhile.
func (m *Manager) recovered(req *recoveredReq) {
	m.recovering.Add(-1)
	p := req.p
	if req.err != nil || p.dropped || m.parts[p.ktp] != p {
		for _, st := range req.stores {
			_ = st.Close()
		}
		if req.err != nil && !errors.Is(req.err, context.Canceled) {
			m.log.Warn("table restore ended", "agent", p.a.cfg.Name, "topic", p.ktp.topic, "partition", p.ktp.partition, "err", req.err)
		}
		return
	}
	for i, t := range p.tables {
		t.Open(req.stores[i], req.ends[i]) // ends: where this worker's own changelog records begin
	}
	p.recovering = false
	p.cancelRestore = nil
	p.lastMove = time.Now() // waiting for the restore was not a stall
	m.log.Info("partition recovered; delivering", "agent", p.a.cfg.Name, "topic", p.ktp.topic,
		"partition", p.ktp.partition, "tables", len(p.tables), "records", req.records, "took", req.took.Round(time.Millisecond))
}

// Recovering returns how many partitions are restoring their tables (none
// of their events is delivered meanwhile). Safe for concurrent use.
func (m *Manager) Recovering() int { return int(m.recovering.Load()) }
