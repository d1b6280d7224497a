package agents

import (
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
)

// Quiesce waits until no commit is in flight, so a test sees the outcome
// of the commits its last step started.
func (m *Manager) Quiesce() {
	for {
		reply := make(chan bool, 1)
		if !m.in.push(&funcReq{f: func() { reply <- m.committing }}) {
			return
		}
		if !<-reply {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// StandStill makes the manager's freeze guard see the process stand still
// for d, as after SIGSTOP and SIGCONT.
func (m *Manager) StandStill(d time.Duration) { m.freeze.skew.Add(int64(d)) }

// HoldingWrites reports whether producing waits for a membership check.
func (m *Manager) HoldingWrites() bool {
	reply := make(chan bool, 1)
	if !m.in.push(&funcReq{f: func() { reply <- len(m.fenceWait) > 0 }}) {
		return false
	}
	return <-reply
}

// GapSeenAt is the freeze guard's clock at the end of the latest pause
// its pulse saw (0: none).
func (m *Manager) GapSeenAt() int64 { return m.freeze.gapTo.Load() }

// SwapStore puts st in place of the store of table in topic[partition] (on
// the Run goroutine) and returns the one it replaced: a test closes a store
// to make its reads fail, and swaps a working one in to end the failure.
func (m *Manager) SwapStore(topic string, partition int32, table string, st *tables.Store) *tables.Store {
	reply := make(chan *tables.Store, 1)
	if !m.in.push(&funcReq{f: func() {
		var old *tables.Store
		if p := m.parts[tpKey{topic: topic, partition: partition}]; p != nil {
			if t := p.tableOf(table); t != nil {
				old = t.SwapStore(st)
			}
		}
		reply <- old
	}}) {
		return nil
	}
	return <-reply
}

// Revoking reports how many revokes are under way.
func (m *Manager) Revoking() int {
	reply := make(chan int, 1)
	if !m.in.push(&funcReq{f: func() { reply <- len(m.revokes) }}) {
		return 0
	}
	return <-reply
}
