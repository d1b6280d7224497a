package agents

import (
	"fmt"
	"time"
)

// processingCheckEvery is how often held events are checked against their
// agent's processing timeout.
const processingCheckEvery = 100 * time.Millisecond

// noteProgress records a result of a lane: the processing timeout of the
// lane's next event counts from here (an SDK runs a partition's events one
// at a time, so the next one started no earlier).
func (m *Manager) noteProgress(s *session, res *Results, now time.Time) {
	p := m.parts[tpKey{res.Topic, res.Partition}]
	if p == nil || len(res.Results) == 0 {
		return
	}
	if l := p.lanes[s]; l != nil && l.epoch == res.Epoch {
		l.progress = now
	}
}

// hungLane is a lane whose oldest unanswered event is past its agent's
// processing timeout.
type hungLane struct {
	l     *lane
	r     *rec
	since time.Time
}

// checkProcessing ends the sessions of instances that hold a partition's
// oldest unanswered event longer than their agent's processing timeout,
// counted from its delivery or the lane's previous result, whichever is
// later (docs/configuration.md, agents[].processing_timeout). Their events
// go back to pending, for another instance or the next one to connect.
// Revoking lanes are left to their revoke deadline.
func (m *Manager) checkProcessing(now time.Time) {
	if now.Sub(m.lastProcessingCheck) < processingCheckEvery {
		return
	}
	m.lastProcessingCheck = now
	var hung []hungLane
	for _, p := range m.parts {
		if p.inflight == 0 {
			continue
		}
		limit := p.a.cfg.Processing()
		holding := 0
		for _, l := range p.lanes {
			if l.inflight > 0 {
				holding++
			}
		}
		var seen []*lane
		for _, r := range p.recs[p.head:] {
			if len(seen) == holding {
				break
			}
			if r.state != stateDelivered || r.lane == nil || containsLane(seen, r.lane) {
				continue
			}
			l := r.lane
			seen = append(seen, l)
			since := r.sentAt
			if l.progress.After(since) {
				since = l.progress
			}
			if !l.revoking && now.Sub(since) >= limit {
				hung = append(hung, hungLane{l: l, r: r, since: since})
			}
		}
	}
	for _, h := range hung {
		s, p := h.l.s, h.l.p
		if s.ended {
			continue // another of its lanes ended it
		}
		held := now.Sub(h.since).Round(time.Millisecond)
		p.a.mon.ProcessingTimeouts.Add(1)
		m.log.Warn("agent instance hung: no result within processing_timeout; ending its session",
			"agent", p.a.cfg.Name, "instance", s.instance, "session", s.id, "topic", p.ktp.topic,
			"partition", p.ktp.partition, "offset", h.r.off, "epoch", h.l.epoch, "held", held,
			"processing_timeout", p.a.cfg.Processing())
		m.endSession(s, fmt.Errorf("%w: offset %d of %s[%d] held %s without a result (processing_timeout %s)",
			ErrProcessingTimeout, h.r.off, p.ktp.topic, p.ktp.partition, held, p.a.cfg.Processing()))
	}
}

func containsLane(ls []*lane, l *lane) bool {
	for _, x := range ls {
		if x == l {
			return true
		}
	}
	return false
}
