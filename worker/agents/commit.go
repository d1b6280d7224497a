package agents

import (
	"errors"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/worker/transport"
)

// commitAll commits the frontier of every partition that moved past its
// last commit, and tells the owners.
func (m *Manager) commitAll(only map[*partition]bool) {
	var offsets []kafka.TopicPartition
	var ps []*partition
	for _, p := range m.parts {
		if only != nil && !only[p] {
			continue
		}
		if p.frontier > p.committed {
			offsets = append(offsets, kafka.TopicPartition{Topic: &p.ktp.topic, Partition: p.ktp.partition, Offset: kafka.Offset(p.frontier)})
			ps = append(ps, p)
		}
	}
	m.lastCommit = time.Now()
	m.doneCount = 0
	m.flushTables()
	if len(offsets) == 0 {
		return
	}
	start := time.Now()
	err := m.consumer.Commit(offsets)
	m.mon.CommitLatency.Observe(time.Since(start))
	if err != nil && !onlyNotAssigned(err) {
		m.log.Warn("commit failed; will retry", "err", err)
		return
	}
	for _, p := range ps {
		p.committed = p.frontier
		p.stats.CommittedAt(p.committed, p.doneTs, time.Now())
		p.doneTs = p.doneTs[:0]
		for _, l := range p.lanes {
			m.send(l.s, Outbound{Committed: &Committed{Topic: p.ktp.topic, Partition: p.ktp.partition, Offset: p.committed}})
		}
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

// Besides the interval and the count, it commits soon (at most every
// idleCommitGap) once the worker has caught up — nothing buffered
// anywhere — so a quiet stream's last events are not left uncommitted for
// a whole interval.
func (m *Manager) maybeCommit(now time.Time) {
	switch {
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
