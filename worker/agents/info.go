package agents

import (
	"sort"
	"time"

	"github.com/eddy-streams/eddy/worker/transport"
)

// Info reports every declared agent, its instances and partitions.
func (m *Manager) Info() []AgentInfo {
	req := &infoReq{reply: make(chan []AgentInfo, 1)}
	m.in.push(req)
	select {
	case r := <-req.reply:
		return r
	case <-m.stopped:
		return nil
	}
}

// AgentInfo describes one agent on this worker.
type AgentInfo struct {
	Name, Ordering string
	Topics, Tables []string
	Paused         bool
	// Blocked says why nothing of the agent's partitions is delivered or
	// produced any more (Manager.Block), since BlockedSince; "" while it
	// works.
	Blocked      string
	BlockedSince time.Time
	Instances    []InstanceInfo
	Unassigned   []transport.TopicPartition
	InFlight     int64
	Delivered    uint64
	Acked        uint64
	Retried      uint64
	DeadLettered uint64
	StaleDropped uint64
	// Refused counts OK results refused for a record to a topic agents may
	// not write (Config.Outputs); their events were dead-lettered.
	Refused uint64
	// ProduceRetries counts produce attempts of the worker's that failed
	// and were retried (outputs, changelog writes, dead letters).
	ProduceRetries uint64
	// DeadLettersWithoutValue counts dead letters Kafka refused in full
	// and that were written without the value.
	DeadLettersWithoutValue uint64
	Connects                uint64
	Disconnects             uint64
	AssignedCount           int
	BufferedRecords         int
}

// InstanceInfo describes one connected instance.
type InstanceInfo struct {
	InstanceID, SessionID, Peer string
	ConnectedAt                 time.Time
	Partitions                  []transport.TopicPartition
	InFlight                    int64
	CreditEvents                int64
}

func (m *Manager) info() []AgentInfo {
	var out []AgentInfo
	for _, a := range m.agents {
		ai := AgentInfo{
			Name: a.cfg.Name, Ordering: a.cfg.Ordering, Topics: a.cfg.Topics, Tables: a.cfg.Tables,
			Paused: a.paused, Blocked: a.blocked, BlockedSince: a.blockedAt, Delivered: a.stats.delivered, Acked: a.stats.acked, Retried: a.stats.retried,
			DeadLettered: a.stats.deadLettered, StaleDropped: a.stats.stale,
			Refused: a.stats.refused, ProduceRetries: a.stats.produceRetries,
			DeadLettersWithoutValue: a.stats.deadLettersNoValue,
			Connects:                a.stats.connects, Disconnects: a.stats.disconnects, AssignedCount: len(a.parts),
		}
		for _, s := range a.sessions {
			ii := InstanceInfo{InstanceID: s.instance, SessionID: s.id, Peer: s.peer, ConnectedAt: s.connectedAt,
				InFlight: s.inflight, CreditEvents: s.creditEvents}
			for p := range s.lanes {
				ii.Partitions = append(ii.Partitions, p.ref())
			}
			sortTPs(ii.Partitions)
			ai.InFlight += s.inflight
			ai.Instances = append(ai.Instances, ii)
		}
		for _, p := range a.parts {
			if len(p.lanes) == 0 {
				ai.Unassigned = append(ai.Unassigned, p.ref())
			}
			ai.BufferedRecords += p.len()
		}
		sortTPs(ai.Unassigned)
		out = append(out, ai)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func sortTPs(tps []transport.TopicPartition) {
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].Topic != tps[j].Topic {
			return tps[i].Topic < tps[j].Topic
		}
		return tps[i].Partition < tps[j].Partition
	})
}
