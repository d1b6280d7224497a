package agents

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/transport"
)

// memory is the manager's in-flight account (Config.InflightBytes, see
// docs/architecture.md#memory): bytes of Results read from agents and not yet
// applied, and of the records they produced until Kafka acknowledged them
// (table mutations until applied to the store). The Run goroutine adds and
// releases; stream readers wait in Session.WaitRoom for room.
type memory struct {
	held atomic.Int64

	mu       sync.Mutex
	waiters  int
	room     chan struct{} // closed when bytes were released and someone waits
	released bool          // owned by Run: bytes were released this round
}

// Per-item overheads, so that many small items count too.
const (
	resultOverhead = 64
	recordOverhead = 64
)

func resultsBytes(r *Results) int64 {
	n := int64(len(r.Topic)) + resultOverhead
	for i := range r.Results {
		x := &r.Results[i]
		n += resultOverhead + int64(len(x.Error))
		for j := range x.Produced {
			n += recordBytes(&x.Produced[j])
		}
		for _, mu := range x.Mutations {
			n += recordOverhead + int64(len(mu.Table)+len(mu.Key)+len(mu.Value))
		}
	}
	return n
}

func recordBytes(r *Record) int64 {
	n := int64(recordOverhead + len(r.Topic) + len(r.Key) + len(r.Value))
	for _, h := range r.Headers {
		n += int64(len(h.Key) + len(h.Value))
	}
	return n
}

func outputBytes(r transport.Record) int64 {
	n := int64(recordOverhead + len(r.Topic) + len(r.Key) + len(r.Value))
	for _, h := range r.Headers {
		n += int64(len(h.Key) + len(h.Value))
	}
	return n
}

func mutationBytes(m tables.Mutation) int64 {
	return int64(recordOverhead + len(m.Key) + len(m.Value))
}

// hold counts n bytes against the cap.
func (m *Manager) hold(n int64) {
	m.mem.held.Add(n)
	m.mon.InflightBytes.Add(n)
}

// release gives n held bytes back; waiting readers are woken at the end of
// the Run round (wakeRoom).
func (m *Manager) release(n int64) {
	if n == 0 {
		return
	}
	m.mem.held.Add(-n)
	m.mon.InflightBytes.Add(-n)
	m.mem.released = true
}

// overCap reports whether the held bytes reached Config.InflightBytes: no
// event is delivered meanwhile.
func (m *Manager) overCap() bool { return m.mem.held.Load() >= m.cfg.InflightBytes }

// wakeRoom wakes the stream readers waiting in WaitRoom when bytes were
// released since the last call. Run calls it once per round.
func (m *Manager) wakeRoom() {
	if !m.mem.released {
		return
	}
	m.mem.released = false
	m.mem.mu.Lock()
	if m.mem.waiters > 0 {
		close(m.mem.room)
		m.mem.room = make(chan struct{})
	}
	m.mem.mu.Unlock()
}

// pushResults queues a session's Results, counted against both the cap and
// the session's queue until the Run goroutine took them.
func (m *Manager) pushResults(s *session, r *Results) {
	n := resultsBytes(r)
	s.queued.Add(n)
	m.hold(n)
	m.in.push(&resultsReq{s: s, r: r, n: n})
}

// resultsTaken releases what pushResults counted.
func (m *Manager) resultsTaken(it *resultsReq) {
	it.s.queued.Add(-it.n)
	m.release(it.n)
}

func (m *Manager) hasRoom(s *session) bool {
	return s.queued.Load() < m.cfg.SessionQueueBytes && !m.overCap()
}

// InflightBytes returns the bytes held against Config.InflightBytes.
// Safe for concurrent use.
func (m *Manager) InflightBytes() int64 { return m.mem.held.Load() }

// WaitRoom returns nil once the manager has room for more of this
// session's messages: its queued Results are below
// Config.SessionQueueBytes and the manager holds less than
// Config.InflightBytes. The stream handler calls it before reading each
// message, so an agent that floods the worker is held back by the stream's
// flow control instead of growing the worker's memory. It returns
// ctx.Err() if ctx ends first (at once when ctx is already done and there
// is no room), the session's error once it ended, ErrShuttingDown once Run
// returned. Safe for concurrent use.
func (h *Session) WaitRoom(ctx context.Context) error {
	m, s := h.m, h.s
	for {
		m.mem.mu.Lock()
		if m.hasRoom(s) {
			m.mem.mu.Unlock()
			return nil
		}
		room := m.mem.room
		m.mem.waiters++
		m.mem.mu.Unlock()
		m.mon.StreamWaits.Add(1)
		var err error
		select {
		case <-room:
		case <-ctx.Done():
			err = ctx.Err()
		case <-s.done:
			err = s.err
			if err == nil {
				err = ErrShuttingDown
			}
		case <-m.stopped:
			err = ErrShuttingDown
		}
		m.mem.mu.Lock()
		m.mem.waiters--
		m.mem.mu.Unlock()
		if err != nil {
			return err
		}
	}
}
