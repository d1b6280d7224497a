package agents

import (
	"errors"
	"fmt"
	"time"
)

// errAgentBlocked fails a record of a blocked agent's partition before it
// is handed to Kafka: it is held (a retriable failure) and never produced.
var errAgentBlocked = errors.New("the agent is blocked: nothing of its partitions is produced")

// blockReq blocks an agent (Manager.Block).
type blockReq struct {
	agent  string
	reason string
}

// Block stops everything of one agent's partitions on this worker, for
// good (until the worker restarts): nothing more is delivered to its
// instances, nothing more is produced for them (outputs, changelog
// records, dead letters), and their records stay buffered or paused in
// Kafka, so the commit frontier never passes an event that was not done.
// The app calls it when a source topic of an agent with tables changed its
// partition count (docs/tables.md#partitions): keys no longer hash to the
// table partition holding their state, and a changelog partition may not
// even exist. reason says why, for the log, the stalls and status. A
// second Block of the same agent keeps the first reason. Safe for
// concurrent use.
func (m *Manager) Block(agent, reason string) { m.in.push(&blockReq{agent: agent, reason: reason}) }

// block takes an agent out of service on the Run goroutine. Its
// instances get Revoke for every partition and their lanes end at once:
// what they still send under those epochs is stale and dropped (results
// arriving now would write state to the wrong table partition), and the
// events they held go back to pending, never to be delivered here.
func (m *Manager) block(a *agentState, reason string) {
	if a.blocked != "" {
		return
	}
	a.blocked, a.blockedAt = reason, time.Now()
	n := 0
	for _, p := range m.partitionsOf(a) {
		m.blockPartition(p)
		n++
	}
	m.log.Warn("agent blocked: none of its partitions is delivered or produced for any more", "agent", a.cfg.Name,
		"partitions", n, "reason", reason)
}

// partitionsOf returns a's partitions: those it serves and those still
// leaving (revoked, or superseded by a new assignment).
func (m *Manager) partitionsOf(a *agentState) []*partition {
	var out []*partition
	for _, p := range a.parts {
		out = append(out, p)
	}
	for _, req := range m.revokes {
		for _, p := range req.ps {
			if p.a == a && !p.dropped && a.parts[p.ktp] != p {
				out = append(out, p)
			}
		}
	}
	return out
}

// blockPartition stops p's deliveries and produces (see block).
func (m *Manager) blockPartition(p *partition) {
	p.blocked.Store(true) // the producer goroutine fails its queued records
	now := time.Now()
	for _, l := range p.lanes {
		if !l.revoking {
			m.send(l.s, Outbound{Revoke: &Revoke{
				PartitionRef: PartitionRef{Topic: p.ktp.topic, Partition: p.ktp.partition, Epoch: l.epoch},
				Deadline:     now,
			}})
		}
		if l.moveTo != nil {
			l.moveTo.pendingIn--
			l.moveTo = nil
		}
		m.dropLane(l, false)
	}
	m.applyPause(p)
}

// beyondChangelog reports why p must never be restored or written: its
// agent has tables and p's number has no changelog partition (the source
// topic has more partitions than when the app started), or "".
func (m *Manager) beyondChangelog(p *partition) string {
	n := m.cfg.SourcePartitions[p.ktp.topic]
	if !p.a.tables || n <= 0 || int(p.ktp.partition) < n {
		return ""
	}
	return fmt.Sprintf("Kafka assigned partition %d of source topic %q, which had %d partitions when the app started: "+
		"the tables %v have no changelog partition %d, and keys no longer hash to the table partitions holding their state",
		p.ktp.partition, p.ktp.topic, n, p.a.cfg.Tables, p.ktp.partition)
}

// blockedReason is the stall reason of a blocked agent's partitions.
func (a *agentState) blockedReason() string {
	return "not delivered: agent " + a.cfg.Name + " is blocked: " + a.blocked
}
