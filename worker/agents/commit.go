package agents

import (
	"errors"
	"time"

	"github.com/eddy-streams/eddy/worker/transport"
)

// Commits run on a goroutine of their own (runCommitter), one at a time: a
// synchronous OffsetCommit waits for the group coordinator, which can take
// as long as Kafka has none, and the Run goroutine must keep handling
// rebalances, results and acknowledgements meanwhile (a revoke that waited
// for a commit stuck behind another one was given up by the consumer, and
// the partition's next assignment found the old one still there). Each
// commit names the frontiers it commits; a partition's committed offset
// moves when Kafka accepted them, however far the frontier moved since.

// commitJob is one commit for the committer goroutine.
type commitJob struct {
	offsets []transport.PartitionOffset
	parts   []*partition
	at      []int64   // the frontier committed for parts[i]
	doneTs  [][]int64 // parts[i]'s timestamps passed before this commit (metrics)
	// fence: a membership check after a pause (freeze.go); it may commit
	// a partition's starting offset.
	fence bool
	// Exactly-once (eos.go): txn is the transaction committed (or, with
	// abort set to the reason, aborted).
	txn   uint64
	abort error
}

// commitDone is the outcome of a commitJob, back on the Run goroutine.
type commitDone struct {
	job  *commitJob
	err  error
	took time.Duration
	// reset: the transactional producer was re-created (exactly-once).
	reset bool
}

// runCommitter commits the jobs it is given until jobs is closed.
func (m *Manager) runCommitter(jobs <-chan *commitJob, done chan<- struct{}) {
	defer close(done)
	for j := range jobs {
		start := time.Now()
		if m.eos {
			err, reset := m.runTxn(j)
			m.in.push(&commitDone{job: j, err: err, took: time.Since(start), reset: reset})
			continue
		}
		err := m.consumer.Commit(j.offsets)
		m.in.push(&commitDone{job: j, err: err, took: time.Since(start)})
	}
}

// commitAll starts a commit of the frontier of every partition (of only,
// if set) that moved past its last commit, unless one is in flight: then
// it returns false, and the caller tries again later. Each commit cycle
// applies the tables' acknowledged mutations to their stores first.
func (m *Manager) commitAll(only map[*partition]bool) bool {
	now := time.Now()
	if m.eos {
		return m.commitTxn(now)
	}
	if m.committing {
		// The tables' acknowledged mutations go to their stores on
		// schedule all the same: they do not wait for Kafka's commit,
		// and they hold memory (Config.InflightBytes) until then.
		if now.Sub(m.lastFlush) >= m.cfg.CommitInterval {
			m.flushTables()
			m.lastFlush = now
		}
		return false
	}
	m.lastCommit = now
	m.doneCount = 0
	m.flushTables()
	m.lastFlush = now
	j := &commitJob{}
	for _, p := range m.parts {
		if only != nil && !only[p] {
			continue
		}
		m.addToCommit(j, p)
	}
	for _, req := range m.revokes { // partitions leaving (no longer in m.parts once superseded)
		for _, p := range req.ps {
			if !p.dropped && !p.superseded && m.parts[p.ktp] != p && (only == nil || only[p]) {
				m.addToCommit(j, p)
			}
		}
	}
	if len(j.offsets) == 0 {
		return true
	}
	m.committing = true
	m.commitQ <- j // never blocks: at most one job is in flight
	return true
}

func (m *Manager) addToCommit(j *commitJob, p *partition) {
	if p.frontier <= p.committed || p.startUnknown {
		return
	}
	j.offsets = append(j.offsets, transport.PartitionOffset{Topic: p.ktp.topic, Partition: p.ktp.partition, Offset: transport.Offset(p.frontier)})
	j.parts = append(j.parts, p)
	j.at = append(j.at, p.frontier)
	j.doneTs = append(j.doneTs, p.doneTs)
	p.doneTs = nil
}

// committed takes the outcome of a commit.
func (m *Manager) committed(d *commitDone) {
	if m.eos {
		m.txnDone(d)
		return
	}
	m.committing = false
	m.mon.CommitLatency.Observe(d.took)
	ok := d.err == nil || onlyNotAssigned(d.err)
	if !ok && !d.job.fence {
		m.log.Warn("commit failed; will retry", "err", d.err)
		m.mon.CommitFailures.Add(1)
	}
	now := time.Now()
	if d.job.fence {
		// Only a commit Kafka accepted proves membership: "not assigned"
		// means the consumer already forgot partitions it is about to
		// report lost.
		defer m.fenceDone(d.err == nil, d.err)
	}
	for i, p := range d.job.parts {
		if p.dropped {
			continue
		}
		if !ok {
			// Keep the timestamps for the next commit's latency figures.
			p.doneTs = append(d.job.doneTs[i], p.doneTs...)
			continue
		}
		if d.job.at[i] <= p.committed {
			continue
		}
		p.committed = d.job.at[i]
		p.stats.CommittedAt(p.committed, d.job.doneTs[i], now)
		for _, l := range p.lanes {
			m.send(l.s, Outbound{Committed: &Committed{Topic: p.ktp.topic, Partition: p.ktp.partition, Offset: p.committed}})
		}
	}
	if !ok {
		// Try again at the next cycle, not at once: a failing coordinator
		// would otherwise be asked in a loop.
		m.lastCommit = now
	}
}

// onlyNotAssigned reports whether err consists only of ErrNotAssigned
// (partitions given up, not worth retrying). transport.Consumer.Commit
// joins real failures with a *NotAssignedError, and errors.Is alone would
// take such a failure for success: a Committed notice for offsets Kafka
// does not have, and no retry.
func onlyNotAssigned(err error) bool {
	switch e := err.(type) {
	case nil:
		return false
	case interface{ Unwrap() []error }:
		errs := e.Unwrap()
		for _, x := range errs {
			if !onlyNotAssigned(x) {
				return false
			}
		}
		return len(errs) > 0
	}
	if errors.Is(err, transport.ErrNotAssigned) {
		// A plain ErrNotAssigned or *NotAssignedError, or a wrapper:
		// look through wrappers for a join inside.
		if u := errors.Unwrap(err); u != nil {
			return onlyNotAssigned(u)
		}
		return true
	}
	return false
}

// maybeCommit commits on the interval and after CommitEvery events.
// Besides, it commits soon (at most every idleCommitGap) once the worker
// has caught up — nothing buffered anywhere — so a quiet stream's last
// events are not left uncommitted for a whole interval.
func (m *Manager) maybeCommit(now time.Time) {
	switch {
	case m.eos && m.txnErr != nil:
		m.commitAll(nil) // abort at once
	case m.doneCount >= m.cfg.CommitEvery, now.Sub(m.lastCommit) >= m.cfg.CommitInterval:
		m.commitAll(nil)
	case m.doneCount > 0 && now.Sub(m.lastCommit) >= idleCommitGap && m.caughtUp():
		m.commitAll(nil)
	}
}

// idleCommitGap bounds how often a caught-up worker commits.
const idleCommitGap = 50 * time.Millisecond

func (m *Manager) caughtUp() bool {
	for _, p := range m.parts {
		if p.len() > 0 {
			return false
		}
	}
	return true
}
