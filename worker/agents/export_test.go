package agents

import "time"

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
