package agents

import (
	"sync/atomic"
	"time"

	"github.com/eddy-streams/eddy/worker/transport"
)

// A worker whose process stood still (SIGSTOP, a paused VM, a starved
// host) for longer than its group session timeout has lost its partitions
// without knowing it: Kafka gave them to other workers, and it learns so
// only after its next heartbeat. Records it produces meanwhile for those
// partitions land after the new owners' (a changelog going backwards). So
// the producer goroutine checks, before it hands any record to Kafka,
// whether the process stood still for FreezeGap or more; if so, producing
// stops until a commit made after the pause succeeds — the group
// coordinator accepts a commit only from a member of the current
// generation, which still owns its partitions — or until the partitions
// are lost. Records librdkafka queued before the pause are the producer's
// message timeout's: it is shorter than the session timeout, so they
// expire rather than go out after a pause that cost the partitions. See
// docs/architecture.md ("Handover").

// freezeGuard notices that the process stood still. The pulse goroutine
// stores the monotonic time every pulseEvery; a gap longer than gap, seen
// by the pulse itself or by a reader of a stale pulse, is a suspected
// freeze. A gap is known by the pulse it started from, so the pulse and a
// reader seeing the same gap report it once. Safe for concurrent use.
type freezeGuard struct {
	gap  time.Duration
	base time.Time
	skew atomic.Int64 // added to the clock (tests make the process "stand still")
	last atomic.Int64 // the last pulse
	// gapFrom is the pulse before the latest gap the pulse goroutine saw,
	// gapTo the pulse that ended it.
	gapFrom atomic.Int64
	gapTo   atomic.Int64
	// handled is the latest gap the producer goroutine reported (its own
	// field).
	handled int64
}

// pulseEvery is how often the pulse beats.
const pulseEvery = 100 * time.Millisecond

func newFreezeGuard(gap time.Duration) *freezeGuard {
	g := &freezeGuard{gap: gap, base: time.Now()}
	g.last.Store(int64(g.clock()))
	g.gapFrom.Store(-1)
	g.handled = -1
	return g
}

// clock is the monotonic time since base.
func (g *freezeGuard) clock() time.Duration {
	return time.Since(g.base) + time.Duration(g.skew.Load())
}

// beat is one pulse: a gap since the last one is recorded before the new
// pulse is stored (suspect relies on that order). It returns the gap, or 0.
func (g *freezeGuard) beat() time.Duration {
	now := g.clock()
	var gap time.Duration
	if last := g.last.Load(); now-time.Duration(last) > g.gap {
		g.gapTo.Store(int64(now))
		g.gapFrom.Store(last)
		gap = now - time.Duration(last)
	}
	g.last.Store(int64(now))
	return gap
}

// run beats until stop is closed, and calls stood for each gap it sees.
func (g *freezeGuard) run(stop <-chan struct{}, stood func(time.Duration)) {
	t := time.NewTicker(pulseEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if d := g.beat(); d > 0 {
				stood(d)
			}
		}
	}
}

// suspect reports whether the process stood still since the last call
// (producer goroutine only), and for how long at least. It reads the pulse
// before the gap: a fresh pulse was stored after its gap was recorded.
func (g *freezeGuard) suspect() (bool, time.Duration) {
	last := g.last.Load()
	from := g.gapFrom.Load()
	stale := g.clock() - time.Duration(last)
	if stale > g.gap {
		if g.handled == last {
			return false, 0
		}
		g.handled = last
		return true, stale
	}
	if from >= 0 && from != g.handled {
		g.handled = from
		return true, time.Duration(last - from)
	}
	return false, 0
}

// calm reports, without marking anything handled, whether no pause is
// pending: suspect would say no. Producer goroutine only.
func (g *freezeGuard) calm() bool {
	last := g.last.Load()
	from := g.gapFrom.Load()
	if g.clock()-time.Duration(last) > g.gap && g.handled != last {
		return false
	}
	return from < 0 || from == g.handled
}

// suspectReq stops producing until membership is confirmed: resume is
// closed then.
type suspectReq struct {
	resume chan struct{}
	stood  time.Duration
}

// suspected takes the producer goroutine's report of a pause: producing
// waits until checkFence confirms the worker still owns its partitions.
func (m *Manager) suspected(req *suspectReq) {
	if len(m.fenceWait) == 0 {
		m.log.Warn("producing waits until the group confirms this worker still owns its partitions",
			"stood_still", req.stood.Round(time.Millisecond), "partitions", len(m.parts))
	}
	m.fenceWait = append(m.fenceWait, req)
	m.fenceAt = time.Time{}
	m.checkFence(time.Now())
}

// checkFence runs the membership check of a suspected pause: a commit of
// every partition's frontier (or, before anything is done, its starting
// offset: committing it changes nothing), sent after the pause. Kafka
// accepts it only from a current member, which owns those partitions; then
// producing resumes. A failure is tried again; partitions lost meanwhile
// leave (their queued records fail) and are not asked about.
func (m *Manager) checkFence(now time.Time) {
	if len(m.fenceWait) == 0 || m.committing || now.Before(m.fenceAt) {
		return
	}
	j := &commitJob{fence: true}
	for _, p := range m.parts {
		off := p.frontier
		if off < 0 && p.len() > 0 {
			off = p.recs[p.head].off
		}
		if off < 0 {
			continue
		}
		j.offsets = append(j.offsets, transport.PartitionOffset{Topic: p.ktp.topic, Partition: p.ktp.partition, Offset: transport.Offset(off)})
		j.parts = append(j.parts, p)
		j.at = append(j.at, off)
		j.doneTs = append(j.doneTs, p.doneTs)
		p.doneTs = nil
	}
	if len(j.offsets) == 0 {
		// Nothing received, so nothing of ours waits to be produced.
		m.fenceConfirmed()
		return
	}
	m.committing = true
	m.fenceAt = now.Add(200 * time.Millisecond) // the earliest retry
	m.fenceSent = m.freeze.clock()
	m.commitQ <- j
}

// fenceDone takes the outcome of a membership check.
func (m *Manager) fenceDone(ok bool, err error) {
	if !ok {
		m.log.Warn("membership check after a pause failed; producing still waits", "err", err)
		return
	}
	if time.Duration(m.freeze.gapTo.Load()) > m.fenceSent {
		// A pause ended after the check was sent: its commit may have
		// gone out before that pause. Ask again.
		m.log.Warn("the worker stood still again while its membership was checked; checking again")
		return
	}
	m.fenceConfirmed()
}

func (m *Manager) fenceConfirmed() {
	m.log.Info("the group confirmed this worker's partitions; producing again", "partitions", len(m.parts))
	for _, req := range m.fenceWait {
		close(req.resume)
	}
	m.fenceWait = nil
}
