package agents

import (
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// outboxSize bounds what waits to be sent to one instance. Credits bound
// the batches in it; an instance that lets it fill is not reading.
const outboxSize = 16384

// session is one connected agent instance, owned by the Run goroutine
// except for the fields set before registration and the channels.
type session struct {
	id          string
	agent       *agentState
	instance    string
	peer        string
	connectedAt time.Time
	out         chan Outbound
	done        chan struct{}
	err         error // why the session ended; set before done is closed

	ended        bool
	creditEvents int64
	creditBytes  int64
	inflight     int64
	lanes        map[*partition]*lane
	pendingIn    int          // partitions moving to this instance
	queued       atomic.Int64 // bytes of Results pushed, not yet taken by Run
}

// Session is the handle the gRPC service holds for one Connect stream. Its
// methods are safe for concurrent use and never block on the manager.
type Session struct {
	m *Manager
	s *session
}

// Open validates a Hello and starts a session. The caller sends the
// returned Welcome first, then everything from Outbox until Done is
// closed, and feeds the agent's messages to the Session's methods. Once
// Run has returned it fails with ErrShuttingDown.
func (m *Manager) Open(h Hello) (*Session, Welcome, error) {
	// The app comes first: an agent pointed at another app's worker may
	// well share an agent name with it and would otherwise take its
	// partitions.
	if h.App != "" && h.App != m.cfg.App {
		return nil, Welcome{}, &AppMismatchError{Hello: h.App, Worker: m.cfg.App}
	}
	a := m.agents[h.Agent]
	if a == nil {
		var names []string
		for n := range m.agents {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, Welcome{}, &UnknownAgentError{Name: h.Agent, Declared: names}
	}
	if h.ProtocolVersion != ProtocolVersion {
		return nil, Welcome{}, fmt.Errorf("%w %d: this worker speaks version %d", ErrProtocolVersion, h.ProtocolVersion, ProtocolVersion)
	}
	if h.InstanceID == "" {
		return nil, Welcome{}, badRequest("hello.instance_id is required (a stable id of the agent process)")
	}
	if h.CreditEvents == 0 {
		return nil, Welcome{}, badRequest("hello.credit.events must be at least 1")
	}
	if h.App == "" {
		m.log.Warn("agent Hello without app is deprecated: upgrade the agent SDK, which sends hello.app",
			"app", m.cfg.App, "agent", h.Agent, "instance", h.InstanceID, "peer", h.Peer)
	}
	s := &session{
		id:           newID(),
		agent:        a,
		instance:     h.InstanceID,
		peer:         h.Peer,
		connectedAt:  time.Now(),
		out:          make(chan Outbound, outboxSize),
		done:         make(chan struct{}),
		creditEvents: int64(h.CreditEvents),
		creditBytes:  int64(h.CreditBytes),
		lanes:        map[*partition]*lane{},
	}
	if s.creditBytes == 0 {
		s.creditBytes = 1 << 62 // no byte limit
	}
	if !m.in.push(&openReq{s: s}) {
		return nil, Welcome{}, ErrShuttingDown // Run returned
	}
	w := Welcome{
		SessionID:       s.id,
		MaxMessageBytes: 4 << 20,
		MaxBatchEvents:  uint32(m.cfg.MaxBatchEvents),
		MaxBatchBytes:   uint32(m.cfg.MaxBatchBytes),
		MaxRetries:      uint32(a.cfg.Retries()),
	}
	return &Session{m: m, s: s}, w, nil
}

// ID is the session id.
func (h *Session) ID() string { return h.s.id }

// Outbox delivers the messages to send, in order.
func (h *Session) Outbox() <-chan Outbound { return h.s.out }

// Done is closed when the manager ended the session; Err says why.
func (h *Session) Done() <-chan struct{} { return h.s.done }

// Err is why the session ended (ErrBadRequest, ErrStalled,
// ErrShuttingDown...). Valid once Done is closed.
func (h *Session) Err() error { return h.s.err }

// Credit adds credit.
func (h *Session) Credit(events uint32, bytes uint64) {
	h.m.in.push(&creditReq{s: h.s, events: events, bytes: bytes})
}

// Results hands over results; protocol violations end the session.
func (h *Session) Results(r *Results) { h.m.pushResults(h.s, r) }

// AssignAck acknowledges an Assign (informational).
func (h *Session) AssignAck(ref PartitionRef) { h.m.in.push(&ackReq{s: h.s, ref: ref}) }

// RevokeAck acknowledges a Revoke: the instance holds no more work for it.
func (h *Session) RevokeAck(ref PartitionRef) { h.m.in.push(&ackReq{s: h.s, ref: ref, revoke: true}) }

// Close ends the session from the stream's side (the agent went away).
func (h *Session) Close(err error) { h.m.in.push(&closeReq{s: h.s, err: err}) }

// register adds a session and gives it partitions.
func (m *Manager) register(s *session) {
	a := s.agent
	// A reconnect under the same instance id replaces the old session.
	for _, old := range a.sessions {
		if old.instance == s.instance {
			m.endSession(old, fmt.Errorf("%w %q", ErrReplaced, s.instance))
			break
		}
	}
	a.sessions = append(a.sessions, s)
	a.stats.connects++
	a.mon.Connects.Add(1)
	a.mon.Sessions.Add(1)
	m.log.Info("agent connected", "agent", a.cfg.Name, "instance", s.instance, "session", s.id, "peer", s.peer)
	if a.byKey {
		for _, p := range a.parts {
			if !p.revoking {
				m.addLane(p, s)
				m.applyPause(p)
			}
		}
		return
	}
	// Partition ordering: unowned partitions first, then even out.
	for _, p := range a.sortedParts() {
		if len(p.lanes) == 0 && !p.revoking {
			m.addLane(p, a.leastLoaded(nil))
			m.applyPause(p)
		}
	}
	m.rebalance(a, time.Now())
}

// rebalance moves partitions from the most to the least loaded instance
// until loads differ by at most one. Moves are graceful: the old owner gets
// Revoke and may finish; the new one gets the partition afterwards.
func (m *Manager) rebalance(a *agentState, now time.Time) {
	for {
		min := a.leastLoaded(nil)
		max := a.mostLoaded()
		if min == nil || max == nil || max.load()-min.load() <= 1 {
			return
		}
		var l *lane
		for _, cand := range max.sortedLanes() {
			if !cand.revoking {
				l = cand
				break
			}
		}
		if l == nil {
			// max's load is partitions still on their way to it
			// (instances joined while moves were under way): send one
			// of those to min instead. Returning here left 8
			// partitions over 3 instances at 3/4/1 for good.
			if l = a.movingTo(max); l == nil {
				return
			}
			max.pendingIn--
			l.moveTo = min
			min.pendingIn++
			continue
		}
		l.moveTo = min
		m.revokeLane(l, now)
		min.pendingIn++
	}
}

// movingTo returns a revoking lane whose partition moves to s, or nil.
func (a *agentState) movingTo(s *session) *lane {
	for _, p := range a.sortedParts() {
		for _, l := range p.lanes {
			if l.moveTo == s {
				return l
			}
		}
	}
	return nil
}

// load counts the partitions an instance owns or is about to receive.
func (s *session) load() int {
	n := s.pendingIn
	for _, l := range s.lanes {
		if !l.revoking {
			n++
		}
	}
	return n
}

func (s *session) sortedLanes() []*lane {
	ls := make([]*lane, 0, len(s.lanes))
	for _, l := range s.lanes {
		ls = append(ls, l)
	}
	slices.SortFunc(ls, func(x, y *lane) int { return cmpTP(x.p.ktp, y.p.ktp) })
	return ls
}

func cmpTP(x, y tpKey) int {
	if x.topic != y.topic {
		if x.topic < y.topic {
			return -1
		}
		return 1
	}
	return int(x.partition - y.partition)
}

func (a *agentState) sortedParts() []*partition {
	ps := make([]*partition, 0, len(a.parts))
	for _, p := range a.parts {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(x, y *partition) int { return cmpTP(x.ktp, y.ktp) })
	return ps
}

// leastLoaded returns the connected instance with the fewest partitions,
// skipping except; nil when there is none.
func (a *agentState) leastLoaded(except *session) *session {
	var best *session
	for _, s := range a.sessions {
		if s != except && (best == nil || s.load() < best.load()) {
			best = s
		}
	}
	return best
}

func (a *agentState) mostLoaded() *session {
	var best *session
	for _, s := range a.sessions {
		if best == nil || s.load() > best.load() {
			best = s
		}
	}
	return best
}

// endSession ends a session: its undone deliveries go back to pending and
// its partitions to the other instances (new epochs).
func (m *Manager) endSession(s *session, err error) {
	if s.ended {
		return
	}
	s.ended = true
	s.err = err
	close(s.done)
	a := s.agent
	a.sessions = slices.DeleteFunc(a.sessions, func(x *session) bool { return x == s })
	a.stats.disconnects++
	a.mon.Disconnects.Add(1)
	a.mon.Sessions.Add(-1)
	m.log.Info("agent disconnected", "agent", a.cfg.Name, "instance", s.instance, "session", s.id, "err", err)
	var orphans []*partition
	for _, l := range s.sortedLanes() {
		if l.moveTo != nil {
			l.moveTo.pendingIn--
		}
		m.dropLane(l, true)
		orphans = append(orphans, l.p)
	}
	// Moves towards this session go elsewhere.
	for _, p := range a.parts {
		for _, l := range p.lanes {
			if l.moveTo == s {
				l.moveTo = nil
			}
		}
	}
	for _, p := range orphans {
		if !a.byKey && !p.revoking && p.ownerLane() == nil && !hasRevokingLane(p) {
			if to := a.leastLoaded(nil); to != nil {
				m.addLane(p, to)
			}
		}
		m.applyPause(p)
	}
}

func hasRevokingLane(p *partition) bool {
	for _, l := range p.lanes {
		if l.revoking {
			return true
		}
	}
	return false
}

// send queues a message for an instance; an instance whose outbox is full
// is not reading and is disconnected (its work is redelivered).
func (m *Manager) send(s *session, msg Outbound) {
	if s.ended {
		return
	}
	select {
	case s.out <- msg:
	default:
		m.endSession(s, ErrStalled)
	}
}

// ack handles AssignAck and RevokeAck.
//
// A RevokeAck says the instance holds no more work for the lane: the SDKs
// drop the queued events of a revoked partition and send their in-flight
// results before it (docs/protocol.md, Revocation). Events still delivered
// to the lane will never get a result, so they go back to pending at once
// rather than at the revoke deadline: in a move they go to the next owner;
// in a Kafka revoke they are not committed here, so the partition is quiet
// as soon as its acknowledgements are in and the next owner consumes them
// again (at least once).
func (m *Manager) ack(s *session, ref PartitionRef, revoke bool) {
	if !revoke {
		return
	}
	p := m.parts[tpKey{ref.Topic, ref.Partition}]
	if p == nil {
		return
	}
	l := p.lanes[s]
	if l == nil || l.epoch != ref.Epoch || !l.revoking {
		s.agent.addStale(1)
		return
	}
	if p.revoking || p.a.byKey {
		// Leaving this worker (key-ordered lanes are revoked only
		// then): drop the lane, so checkRevokes sees the partition
		// quiet, and whatever the instance still sends for the epoch
		// is stale. A move under way ends here, as in dropPartition.
		if l.moveTo != nil {
			l.moveTo.pendingIn--
			l.moveTo = nil
		}
		m.dropLane(l, false)
		return
	}
	m.finalizeMove(l)
}
