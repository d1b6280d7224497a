package agents

import (
	"fmt"
	"time"

	"github.com/eddy-streams/eddy/worker/monitor"
	"github.com/eddy-streams/eddy/worker/transport"
)

// stallCheckEvery is how often stalls are looked for.
const stallCheckEvery = time.Second

// stallKey identifies one stall episode's subject: a partition, or an
// instance holding events of a partition.
type stallKey struct {
	topic     string
	partition int32
	instance  string
	// tables: the partition's table writes fail (a stall of its own,
	// beside any other of the partition).
	tables bool
}

// checkStalls reports partitions whose frontier has not moved for
// StallTimeout while they have work waiting, and instances holding an event
// without a result for StallTimeout. Each episode is logged once when it
// starts and once when it ends; the current list goes to the monitor.
// Partitions paused by the operator are not stalled.
func (m *Manager) checkStalls(now time.Time) {
	if now.Sub(m.lastStallCheck) < stallCheckEvery {
		return
	}
	m.lastStallCheck = now
	limit := m.cfg.StallTimeout
	seen := map[stallKey]bool{}
	report := func(k stallKey, agent, reason string, since time.Time) {
		seen[k] = true
		if st := m.stalls[k]; st != nil {
			st.Reason = reason
			return
		}
		m.stalls[k] = &monitor.Stall{Agent: agent, Topic: k.topic, Partition: k.partition, InstanceID: k.instance, Since: since, Reason: reason}
		m.log.Warn("stalled", "agent", agent, "topic", k.topic, "partition", k.partition, "instance", k.instance,
			"since", since.Format(time.RFC3339), "reason", reason)
	}
	m.checkUnknownAssigned(now, report)
	for _, p := range m.parts {
		if p.a.blocked != "" && !p.revoking {
			// Known at once, not after StallTimeout: it will not move.
			report(stallKey{topic: p.ktp.topic, partition: p.ktp.partition}, p.a.cfg.Name, p.a.blockedReason(), p.a.blockedAt)
			continue
		}
		if !p.revoking {
			m.checkTableWrites(p, func(reason string, since time.Time) {
				k := stallKey{topic: p.ktp.topic, partition: p.ktp.partition, tables: true}
				report(k, p.a.cfg.Name, reason, since)
				m.stalls[k].Error = true
			})
		}
		if p.a.paused || p.revoking || p.recovering {
			continue // a restore reports its own progress
		}
		readFailing := false
		for _, t := range p.tables {
			if err, fails, since := t.ReadFailure(); err != nil && !readFailing {
				// Known at once: the events of its keys wait until a read works.
				readFailing = true
				report(stallKey{topic: p.ktp.topic, partition: p.ktp.partition}, p.a.cfg.Name,
					fmt.Sprintf("reading table %q failed (%d times in a row): %v; its events are held and read again after a backoff", t.Name(), fails, err), since)
			}
		}
		waiting := p.len()
		// A partition the consumer does not fetch (its committed offset
		// never came, say) has no lag librdkafka knows of: its fetch
		// state tells.
		f := p.fetch()
		notFetched := f != nil && f.State != "active"
		// Nor has a partition no instance serves, paused before it
		// fetched anything: its watermarks are not known either.
		unserved := len(p.lanes) == 0 && (f == nil || f.High < 0)
		if lag := p.statsLag(); !readFailing && (waiting > 0 || lag > 0 || notFetched || unserved) {
			if idle := now.Sub(p.lastMove); idle >= limit {
				reason := fmt.Sprintf("frontier has not moved for %s with %d records waiting", idle.Round(time.Second), waiting)
				if len(p.lanes) == 0 {
					reason += "; no agent instance is connected"
				}
				if f != nil && waiting == 0 {
					reason += "; the consumer's " + f.String()
				}
				report(stallKey{topic: p.ktp.topic, partition: p.ktp.partition}, p.a.cfg.Name, reason, p.lastMove)
			}
		}
		if p.inflight == 0 {
			continue
		}
		oldest := map[*lane]*rec{}
		for _, r := range p.recs[p.head:] {
			if r.state == stateDelivered && oldest[r.lane] == nil {
				oldest[r.lane] = r
			}
		}
		for l, r := range oldest {
			if held := now.Sub(r.sentAt); held >= limit {
				k := stallKey{topic: p.ktp.topic, partition: p.ktp.partition, instance: l.s.instance}
				report(k, p.a.cfg.Name, fmt.Sprintf("instance holds offset %d for %s without a result", r.off, held.Round(time.Second)), r.sentAt)
			}
		}
	}
	list := make([]monitor.Stall, 0, len(m.stalls))
	for k, st := range m.stalls {
		if !seen[k] {
			m.log.Info("no longer stalled", "agent", st.Agent, "topic", k.topic, "partition", k.partition,
				"instance", k.instance, "after", now.Sub(st.Since).Round(time.Second))
			delete(m.stalls, k)
			continue
		}
		list = append(list, *st)
	}
	m.mon.SetStalls(list)
}

// checkTableWrites counts p's failed table writes (the metric) and reports
// a table whose store cannot be written: at once, since its changes are
// held in memory until a write works (Config.InflightBytes then stops
// delivery), and the worker's commits go on (the changelog has them).
func (m *Manager) checkTableWrites(p *partition, report func(reason string, since time.Time)) {
	for _, t := range p.tables {
		p.a.mon.TableWriteErrors.Add(t.TakeWriteErrors())
	}
	for _, t := range p.tables {
		if err, fails, since := t.WriteFailure(); err != nil {
			report(fmt.Sprintf("writing table %q partition %d to its store failed (%d times in a row): %v; "+
				"its changes (%d bytes) are held in memory and written again every commit cycle (%s); "+
				"the worker stops taking events when it holds %d bytes in all",
				t.Name(), p.ktp.partition, fails, err, t.HeldBytes(), m.cfg.CommitInterval, m.cfg.InflightBytes), since)
			return
		}
	}
}

// statsLag is librdkafka's consumer lag of the partition, or 0 unknown.
func (p *partition) statsLag() int64 {
	if p.stats == nil {
		return 0
	}
	return max(p.stats.Lag.Load(), 0)
}

// checkUnknownAssigned reports partitions Kafka assigned to this worker's
// consumer that the manager has not known for StallTimeout: their records
// would be dropped, and nothing else would say so (the failure mode of a
// partition that is assigned but silent).
func (m *Manager) checkUnknownAssigned(now time.Time, report func(stallKey, string, string, time.Time)) {
	ar, ok := m.consumer.(interface {
		Assignment() []transport.TopicPartition
	})
	if !ok {
		return
	}
	seen := map[tpKey]bool{}
	for _, tp := range ar.Assignment() {
		k := tpKey{tp.Topic, tp.Partition}
		a := m.agentOf(k.topic)
		if a == nil || m.parts[k] != nil {
			continue
		}
		seen[k] = true
		since, ok := m.unknownSince[k]
		if !ok {
			m.unknownSince[k] = now
			continue
		}
		if now.Sub(since) >= m.cfg.StallTimeout {
			report(stallKey{topic: k.topic, partition: k.partition}, a.cfg.Name,
				"assigned to this worker by Kafka but not served by it (no agent delivery)", since)
		}
	}
	for k := range m.unknownSince {
		if !seen[k] {
			delete(m.unknownSince, k)
		}
	}
}

// fetch is librdkafka's fetch state of the partition, or nil unknown.
func (p *partition) fetch() *monitor.Fetch {
	if p.stats == nil {
		return nil
	}
	return p.stats.Fetch.Load()
}
