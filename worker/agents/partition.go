package agents

import (
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/eddy-streams/eddy/worker/monitor"
	"github.com/eddy-streams/eddy/worker/tables/live"
	"github.com/eddy-streams/eddy/worker/transport"
)

// recState is where one received record stands.
type recState uint8

const (
	// statePending: received, waiting to be delivered.
	statePending recState = iota
	// stateDelivered: in an EventBatch, waiting for its result.
	stateDelivered
	// stateRetry: a RETRY (or a failed produce) waits for its backoff.
	stateRetry
	// stateAcking: result applied, waiting for Kafka to acknowledge the
	// records it produced (outputs or the dead letter).
	stateAcking
	// stateDone: finished and durable; the frontier may pass it. Under
	// exactly-once: its writes are handed over to the open transaction.
	stateDone
	// stateHeld (exactly-once): result applied, its writes held until the
	// frontier reaches it (eos.go).
	stateHeld
)

// rec is one received record of a partition.
type rec struct {
	off          int64
	key          []byte
	value        []byte
	headers      []Header
	ts           time.Time
	size         int
	state        recState
	tries        uint32 // RETRY outcomes so far (the worker's own produce failures never count)
	sent         uint32 // deliveries
	lost         uint32 // deliveries whose session ended before a result
	lane         *lane
	acks         int   // outstanding produce acknowledgements
	failed       error // a produce of this attempt failed and is worth retrying
	refused      error // a produce of this attempt failed permanently (transport.IsPermanent)
	refusedTopic string
	redo         []*write // writes of this attempt that failed and are produced again after a backoff
	writes       uint32   // produce attempts that failed and were retried
	dlq          bool     // in the dead-letter path: retries re-produce the dead letter
	noValue      string   // the dead letter is written without the value, for this reason
	lastErr      string   // the agent's or the producer's last error
	retryAt      time.Time
	sentAt       time.Time // last delivery, for latency and stall detection
	held         []*write  // exactly-once: the writes of its result, until handed over (eos.go)
	landed       []string  // the table keys ("<table>\x00<key>") of its changelog writes Kafka acknowledged, for rewrite
}

// lane is one instance's share of a partition under one epoch. In
// partition ordering a partition has at most one lane; in key ordering one
// per connected instance.
type lane struct {
	s        *session
	p        *partition
	epoch    uint64
	inflight int
	revoking bool      // Revoke sent: no more deliveries
	deadline time.Time // when a revoking lane is finalized anyway
	moveTo   *session  // partition ordering: the instance taking over
	progress time.Time // the lane's last result: its processing timeout counts from here
}

// partition is the state of one owned source partition.
type partition struct {
	ktp       tpKey
	a         *agentState
	recs      []*rec // received, not yet passed by the frontier, in offset order
	head      int    // recs[:head] are passed and released
	scan      int    // no pending record before recs[scan]
	bytes     int
	lanes     map[*session]*lane
	frontier  int64 // next offset to commit; -1 before the first done record
	committed int64
	paused    bool // paused in Kafka
	// pauseUnknown: whether the consumer has the partition paused is not
	// known, so applyPause pauses or resumes it even if paused says it
	// is as wanted: a new assignment (a pause meant for its previous
	// assignment may have reached the consumer after it was assigned),
	// or the last pause or resume failed (pausesDue tries again).
	pauseUnknown bool
	full         bool // buffer full: paused until half is done
	revoking     bool // leaving this worker: no more deliveries
	dropped      bool
	keyBusy      map[string]int // key ordering or tables: delivered, retrying or acking records per key
	tables       []*live.Part   // the agent's tables' partitions; nil without tables
	recovering   bool           // restoring its tables: nothing is delivered yet
	// endPos is the consumer's position (Manager.Position), -1 unknown:
	// offsets below it that no record was received for hold none
	// (transaction markers), and the frontier passes them once every
	// record before is done (an assignment that starts at a marker gets
	// the position past it and no record). lastRecv is the offset of the
	// last record received, -1 none.
	endPos, lastRecv int64
	// startUnknown (exactly-once): the group's stable committed offset is
	// being read; nothing is delivered until it is known (readStart).
	startUnknown  bool
	cancelRestore func() // ends the restore under way
	retrying      int
	acking        int
	inflight      int
	stats         *monitor.PartitionStats // nil when per-event metrics are off
	doneTs        []int64                 // timestamps of records passed since the last commit (metrics)
	lastMove      time.Time               // when the frontier last moved
	streamTime    time.Time               // the highest timestamp of the events delivered (windows expire by it)
	// prev is the previous assignment of the same partition, still
	// leaving: nothing is restored or delivered until it is gone (see
	// assign).
	prev *partition
	// superseded: assigned again while leaving; it finishes leaving
	// without a commit.
	superseded bool
	// gone is set once the partition left (or was lost): records of it
	// still queued for the producer are failed, not produced. Read by the
	// producer goroutine.
	gone atomic.Bool
	// blocked is set when its agent is blocked (blocked.go): records of
	// it still queued for the producer are failed and held, not produced.
	// Read by the producer goroutine.
	blocked atomic.Bool
	// lost is set, before gone, when the assignment was lost (not given
	// back in order): see handOver.
	lost atomic.Bool
	// allowed is its records' transport.Record.Allowed (made once: a
	// closure per record would allocate on the produce path).
	allowed func() bool
	notGone func() bool // exactly-once's Allowed: no freeze guard
	// tombstones counts expiry tombstones not acknowledged yet: a leaving
	// partition waits for them like for its events' writes.
	tombstones int
	// Exactly-once (eos.go): keep holds records passed by the frontier in
	// uncommitted until their offset is committed (an abort delivers them
	// again); final stops handing writes over once a leaving partition's
	// frontier is settled; handedTxn is the transaction it last handed a
	// write over in.
	keep        bool
	uncommitted []*rec
	final       bool
	handedTxn   uint64
}

func (p *partition) len() int { return len(p.recs) - p.head }

func (p *partition) ref() transport.TopicPartition {
	return transport.TopicPartition{Topic: p.ktp.topic, Partition: p.ktp.partition}
}

// find returns the record at offset, or nil.
func (p *partition) find(off int64) *rec {
	live := p.recs[p.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].off >= off })
	if i < len(live) && live[i].off == off {
		return live[i]
	}
	return nil
}

// markPending puts a record back for delivery.
func (p *partition) markPending(r *rec) {
	r.state = statePending
	r.lane = nil
	idx := p.head + sort.Search(len(p.recs)-p.head, func(i int) bool { return p.recs[p.head+i].off >= r.off })
	if idx < p.scan {
		p.scan = idx
	}
}

// advance moves the frontier past done records and releases them, and past
// the offsets without a record up to the consumer's position (endPos) once
// nothing received is left. It returns how many records it released, plus
// one for that jump (non-zero: the frontier moved).
func (p *partition) advance() int {
	n := 0
	for p.head < len(p.recs) && p.recs[p.head].state == stateDone {
		r := p.recs[p.head]
		p.frontier = r.off + 1
		if p.stats != nil {
			p.doneTs = append(p.doneTs, r.ts.UnixNano())
		}
		if p.keep {
			p.uncommitted = append(p.uncommitted, r)
		} else {
			p.bytes -= r.size
		}
		p.recs[p.head] = nil
		p.head++
		n++
	}
	if p.head == len(p.recs) && p.endPos > p.frontier && !p.startUnknown && p.prev == nil {
		// Every record received is done, and the consumer's position is
		// past them: what lies between holds no record (a commit
		// marker). Committing the last record's offset + 1 would leave a
		// lag of 1 for good.
		p.frontier = p.endPos
		n++
	}
	if n > 0 {
		p.lastMove = time.Now()
		p.stats.FrontierMoved(p.lastMove)
	}
	if p.scan < p.head {
		p.scan = p.head
	}
	// Compact once the released prefix dominates.
	if p.head > 1024 && p.head*2 > len(p.recs) {
		k := copy(p.recs, p.recs[p.head:])
		clear(p.recs[k:])
		p.recs = p.recs[:k]
		p.scan -= p.head
		p.head = 0
	}
	return n
}

// quiet reports whether no record of the partition is being worked on.
func (p *partition) quiet() bool { return p.inflight == 0 && p.acking == 0 }

// ownerLane returns the lane that may receive deliveries in partition
// ordering, or nil.
func (p *partition) ownerLane() *lane {
	for _, l := range p.lanes {
		if !l.revoking {
			return l
		}
	}
	return nil
}

// receive appends a record from the poll loop to its partition.
func (m *Manager) receive(msg *transport.Message) {
	p := m.parts[tpKey{msg.Topic, msg.Partition}]
	if p == nil || p.revoking {
		// Not (or no longer) ours: never committed here, so the owner
		// consumes it again.
		return
	}
	off := int64(msg.Offset)
	if n := len(p.recs); n > p.head && p.recs[n-1].off >= off || off < p.frontier {
		// librdkafka re-fetched from an earlier position (e.g. after a
		// pause); these records are already buffered, or already done:
		// with an empty buffer only the frontier remembers them.
		return
	}
	// The headers are the consumer's conversion, made for this record
	// alone: kept as they are (Header is transport.Header).
	r := &rec{off: off, key: msg.Key, value: msg.Value, headers: msg.Headers, ts: msg.Timestamp, size: len(msg.Key) + len(msg.Value)}
	p.recs = append(p.recs, r)
	p.lastRecv = off
	p.stats.AddReceived(1)
	p.bytes += r.size
	if r.size > m.cfg.MaxEventBytes && !(m.eos && (p.startUnknown || p.prev != nil)) {
		// It cannot travel on the agent stream: dead-letter it, loudly.
		// (Under exactly-once not before the partition's start is known:
		// it may be below it, and its dead letter would move the
		// frontier; deadLetterOversized does it then.)
		m.deadLetter(p, r, "record too large for the agent stream")
		return
	}
	if len(p.recs)-p.head >= m.cfg.BufferEvents || p.bytes >= m.cfg.BufferBytes {
		m.applyPause(p)
	}
}

// position takes the consumer's position in a partition (Position), after
// the records before it.
func (m *Manager) position(msg *transport.Message) {
	p := m.parts[tpKey{msg.Topic, msg.Partition}]
	next := int64(msg.Offset)
	if p == nil || p.revoking || next <= p.endPos || next <= p.lastRecv {
		return
	}
	p.endPos = next
	if !m.eos && p.advance() > 0 { // exactly-once: handOut advances it
		m.applyPause(p)
	}
}

// applyPause pauses or resumes the partition in Kafka to match what it
// needs: paused without an instance, while its agent is paused, while its
// buffer is full (resumed at half), or while it is leaving.
func (m *Manager) applyPause(p *partition) {
	if p.dropped || p.superseded {
		// Its topic partition is no longer its own (a new assignment
		// has it, or nobody): a pause would land on the next owner.
		return
	}
	if p.full {
		p.full = p.len() > m.cfg.BufferEvents/2 || p.bytes > m.cfg.BufferBytes/2
	} else {
		p.full = p.len() >= m.cfg.BufferEvents || p.bytes >= m.cfg.BufferBytes
	}
	want := len(p.lanes) == 0 || p.a.paused || p.full || p.revoking || p.a.blocked != ""
	if want == p.paused && !p.pauseUnknown {
		return
	}
	parts := []transport.TopicPartition{p.ref()}
	var err error
	if want {
		err = m.consumer.Pause(parts)
	} else {
		err = m.consumer.Resume(parts)
	}
	if err != nil {
		// Tried again by the tick (pausesDue): nothing else may come to
		// call it, since a paused partition receives nothing.
		m.log.Debug("pause/resume partition", "topic", p.ktp.topic, "partition", p.ktp.partition, "pause", want, "err", err)
		p.pauseUnknown = true
		return
	}
	p.paused, p.pauseUnknown = want, false
}

// pauseRetryEvery is how often a failed pause or resume is tried again.
const pauseRetryEvery = 500 * time.Millisecond

// pausesDue tries again the pauses and resumes Kafka refused (during a
// rebalance a resume can fail, and a partition left paused would receive
// nothing, so nothing would call applyPause again: TestExactlyOnceKills and
// the fault suite saw partitions stall that way).
func (m *Manager) pausesDue(now time.Time) {
	if now.Sub(m.lastPauseRetry) < pauseRetryEvery {
		return
	}
	m.lastPauseRetry = now
	for _, p := range m.parts {
		if p.pauseUnknown {
			m.applyPause(p)
		}
	}
}

// assign takes partitions newly assigned by Kafka.
//
// A partition may come back while this worker still gives it up: the
// consumer waits only so long for a revoke (Revoked), then lets Kafka have
// the partition, which can hand it straight back. The old partition then
// leaves as its revoke goes on (it is no longer in m.parts, so nothing new
// of it is delivered or received), and the new one starts from the
// committed offset. The new one's tables are restored only once the old
// one has nothing in flight: a changelog write of the old one landing
// after the restore read the end would put the table back.
func (m *Manager) assign(parts []transport.TopicPartition) {
	if len(parts) > 0 {
		m.mon.Rebalances.Add(1)
	}
	for _, tp := range parts {
		k := tpKey{tp.Topic, tp.Partition}
		a := m.agentOf(k.topic)
		if a == nil {
			continue
		}
		old := m.parts[k]
		if old != nil {
			m.supersede(old)
		}
		prev := old
		if old != nil && old.prev != nil {
			// old never started (it waited for its own predecessor):
			// nothing of it is in flight; the one to wait for is that
			// predecessor.
			prev = old.prev
		}
		p := &partition{ktp: k, a: a, lanes: map[*session]*lane{}, frontier: -1, committed: -1, endPos: -1, lastRecv: -1,
			stats: m.mon.Partition(a.cfg.Name, k.topic, k.partition), lastMove: time.Now(), prev: prev, keep: m.eos,
			pauseUnknown: true}
		if a.byKey || a.tables {
			p.keyBusy = map[string]int{}
		}
		if m.eos {
			m.readStart(p)
		}
		p.allowed = func() bool { return !p.gone.Load() && m.freeze.calm() }
		p.notGone = func() bool { return !p.gone.Load() }
		m.parts[k] = p
		a.parts[k] = p
		if a.blocked != "" {
			p.blocked.Store(true)
		}
		if a.tables {
			p.tables = m.newTableParts(p)
			p.recovering = true
			if prev == nil {
				m.startRecovery(p)
			}
		}
		if a.byKey {
			for _, s := range a.sessions {
				m.addLane(p, s)
			}
		} else if s := a.leastLoaded(nil); s != nil {
			m.addLane(p, s)
		}
		m.applyPause(p)
	}
}

// supersede takes old, a partition still leaving, out of the partitions
// this worker serves: its assignment came back as a new partition. Its
// revoke finishes as if lost (it is committed no more: the new partition
// commits from now on).
func (m *Manager) supersede(old *partition) {
	m.log.Warn("partition assigned again before its revoke finished; the old assignment is dropped",
		"agent", old.a.cfg.Name, "topic", old.ktp.topic, "partition", old.ktp.partition,
		"in_flight", old.inflight, "acking", old.acking)
	if m.eos {
		// Its writes in the open transaction would commit without its
		// offset (it commits no more): abort (eos.go).
		m.txnLeaving(old)
	}
	old.revoking = true
	old.superseded = true
	for _, l := range old.lanes {
		m.revokeLane(l, time.Now())
	}
	delete(m.parts, old.ktp)
	delete(old.a.parts, old.ktp)
	found := false
	for _, req := range m.revokes {
		if slices.Contains(req.ps, old) {
			found = true
		}
	}
	if !found {
		// Not being revoked (the consumer never told us it left): it
		// leaves now, like a lost partition.
		now := time.Now()
		req := &revokeReq{lost: true, ps: []*partition{old}, started: now, deadline: now, drainBy: now.Add(m.drainTimeout()),
			done: make(chan struct{})}
		m.revokes = append(m.revokes, req)
	}
}

// drainTimeout is how long, past the agents' revoke deadline, a leaving
// partition waits for Kafka to acknowledge what it produced and for its
// final commit: the producer fails a record it could not deliver within
// MessageTimeout, so past that nothing of the partition is in flight.
func (m *Manager) drainTimeout() time.Duration { return m.cfg.MessageTimeout + time.Second }

// startAt makes p start at off, a committed offset above its own: the
// records buffered below it (never delivered) are dropped, and so are
// those that arrive later (receive drops what is below the frontier). It
// returns how many it dropped.
func (p *partition) startAt(off int64) int {
	p.committed, p.frontier = off, off
	n := 0
	for p.head+n < len(p.recs) && p.recs[p.head+n].off < off {
		p.bytes -= p.recs[p.head+n].size
		p.recs[p.head+n] = nil
		n++
	}
	p.head += n
	p.scan = max(p.scan, p.head)
	return n
}

// startPending starts the partition that waited for its previous
// assignment to leave.
func (m *Manager) startPending(old *partition) {
	p := m.parts[old.ktp]
	if p == nil || p.prev != old {
		return
	}
	p.prev = nil
	if m.eos && old.committed > p.committed {
		// A commit of old's transaction succeeded after p was assigned
		// from the offset committed before: p starts after it (the
		// records before were buffered, never delivered: dispatch waits
		// for prev).
		if p.startAt(old.committed) > 0 {
			m.applyPause(p) // a buffer full of them paused it
		}
	}
	if m.eos {
		m.deadLetterOversized(p)
	}
	if p.a.tables {
		m.startRecovery(p)
	}
}

// agentOf returns the agent consuming topic (one per topic).
func (m *Manager) agentOf(topic string) *agentState {
	for _, a := range m.agents {
		for _, t := range a.cfg.Topics {
			if t == topic {
				return a
			}
		}
	}
	return nil
}

// addLane gives s a share of p under a new epoch; nothing (nil) while
// p's agent is blocked.
func (m *Manager) addLane(p *partition, s *session) *lane {
	if p.a.blocked != "" {
		return nil
	}
	l := &lane{s: s, p: p, epoch: m.nextEpoch()}
	p.lanes[s] = l
	s.lanes[p] = l
	m.send(s, Outbound{Assign: &PartitionRef{Topic: p.ktp.topic, Partition: p.ktp.partition, Epoch: l.epoch}})
	m.log.Debug("assign", "agent", p.a.cfg.Name, "instance", s.instance, "topic", p.ktp.topic,
		"partition", p.ktp.partition, "epoch", l.epoch)
	return l
}

// revokeLane sends Revoke and stops deliveries to l; finalizeLane ends it.
func (m *Manager) revokeLane(l *lane, now time.Time) {
	if l.revoking {
		return
	}
	l.revoking = true
	l.deadline = now.Add(m.cfg.RevokeTimeout)
	m.send(l.s, Outbound{Revoke: &Revoke{
		PartitionRef: PartitionRef{Topic: l.p.ktp.topic, Partition: l.p.ktp.partition, Epoch: l.epoch},
		Deadline:     l.deadline,
	}})
}

// dropLane removes l; its undone deliveries go back to pending, for the
// next owner.
//
// crashed is set when the instance went away (not a graceful move): a
// disconnect is not the event's failure and does not count as a retry, but
// an event that every instance dies on (a poison event that crashes the
// agent process) is dead-lettered after maxLost such deliveries.
func (m *Manager) dropLane(l *lane, crashed bool) {
	p := l.p
	if l.inflight > 0 {
		for _, r := range p.recs[p.head:] {
			if r.state == stateDelivered && r.lane == l {
				m.undeliver(p, r)
				if crashed {
					r.lost++
					if int(r.lost) >= maxLost(p.a.cfg.Retries()) {
						m.deadLetterLost(p, r)
					}
				}
			}
		}
	}
	delete(p.lanes, l.s)
	delete(l.s.lanes, p)
}

// undeliver returns a delivered record to pending.
// maxLost is how many deliveries of one event may end with the session
// before the event is dead-lettered as the likely cause.
func maxLost(retries int) int { return retries + 5 }

func (m *Manager) undeliver(p *partition, r *rec) {
	p.stats.Undelivered(1)
	l := r.lane
	l.inflight--
	l.s.inflight--
	p.inflight--
	if p.keyBusy != nil {
		p.unbusy(r.key)
	}
	p.markPending(r)
}

func (p *partition) busy(key []byte) { p.keyBusy[string(key)]++ }

func (p *partition) unbusy(key []byte) {
	k := string(key)
	if p.keyBusy[k] <= 1 {
		delete(p.keyBusy, k)
	} else {
		p.keyBusy[k]--
	}
}

// finalizeMove ends a revoking lane of a partition-ordered partition and
// hands the partition to its next owner.
func (m *Manager) finalizeMove(l *lane) {
	p := l.p
	m.dropLane(l, false)
	if p.revoking || p.dropped || p.a.byKey {
		return
	}
	to := l.moveTo
	if to != nil {
		to.pendingIn--
	}
	if to == nil || to.ended {
		to = p.a.leastLoaded(nil)
	}
	if to != nil && p.ownerLane() == nil {
		m.addLane(p, to)
	}
	m.applyPause(p)
}

// startRevoke begins giving partitions back to Kafka.
func (m *Manager) startRevoke(req *revokeReq) {
	now := time.Now()
	req.deadline = now.Add(m.cfg.RevokeTimeout)
	req.drainBy = req.deadline.Add(m.drainTimeout())
	if req.lost {
		req.deadline = now
		req.drainBy = now
	}
	req.started = now
	m.mon.Rebalances.Add(1)
	for _, tp := range req.parts {
		p := m.parts[tpKey{tp.Topic, tp.Partition}]
		if p == nil {
			continue
		}
		req.ps = append(req.ps, p)
		p.revoking = true
		if req.lost {
			p.lost.Store(true)
			p.gone.Store(true) // what it still has queued is not produced
			continue
		}
		for _, l := range p.lanes {
			m.revokeLane(l, now)
		}
	}
	if req.lost && !m.eos {
		// The whole assignment is lost (librdkafka reports no less): what
		// the producer still queues for it must not go out after the next
		// owners' writes. Records already sent are beyond recall; the
		// producer's message timeout bounds how late they can land.
		// (Under exactly-once the open transaction aborts instead:
		// txnLeaving.)
		if pq, ok := m.producer.(interface{ PurgeQueued() }); ok {
			pq.PurgeQueued()
		}
	}
	m.revokes = append(m.revokes, req)
	m.checkRevokes(now)
}

// checkRevokes finishes revocations, in three steps:
//  1. The agents finish the events delivered to them, until the revoke
//     deadline; past it, what they still hold goes back to pending (it is
//     not done here, and the next owner gets it).
//  2. Kafka acknowledges every record the partition produced: until then
//     a write of this worker could land after the next owner's. Bounded
//     by the producer's message timeout (drainBy).
//  3. The frontier is committed (not for a lost partition), retried on
//     failure until drainBy.
//
// Then the partitions are dropped. Lost partitions skip all three: they may
// already be another worker's.
// It also finalizes lanes moving between instances.
func (m *Manager) checkRevokes(now time.Time) {
	kept := m.revokes[:0]
	for _, req := range m.revokes {
		if !m.revokeDone(req, now) {
			kept = append(kept, req)
			continue
		}
		for _, p := range req.ps {
			if !p.dropped {
				m.dropPartition(p, req.lost || p.superseded)
			}
		}
		m.mon.RebalanceDuration.Observe(now.Sub(req.started))
		close(req.done)
	}
	m.revokes = kept
}

// revokeDone advances req through the steps of checkRevokes and reports
// whether it is finished.
func (m *Manager) revokeDone(req *revokeReq, now time.Time) bool {
	if req.lost {
		return true
	}
	late := now.After(req.drainBy)
	if !req.drained {
		for _, p := range req.ps {
			if p.dropped || p.inflight == 0 {
				continue
			}
			if !now.After(req.deadline) && !p.superseded {
				return false
			}
			m.takeBack(p) // step 1's deadline passed
		}
		for _, p := range req.ps {
			if !p.dropped && (p.acking > 0 || p.tombstones > 0) && !late {
				return false
			}
		}
		req.drained = true
		for _, p := range req.ps {
			if !p.dropped {
				if m.eos {
					m.handOut(p)
					p.final = true // what it still holds is its next owner's
				}
				p.advance()
			}
		}
	}
	pending := false
	only := map[*partition]bool{}
	for _, p := range req.ps {
		if !p.dropped && !p.superseded && p.frontier > p.committed {
			pending = true
			only[p] = true
		}
	}
	if !pending {
		return true
	}
	if late {
		m.log.Error("final commit of revoked partitions did not succeed in time; their next owner processes again from the last commit",
			"partitions", len(only), "waited", now.Sub(req.started).Round(time.Millisecond))
		return true
	}
	if !m.committing && now.Sub(req.lastTry) >= 100*time.Millisecond {
		req.lastTry = now
		m.commitAll(only)
	}
	return false
}

// takeBack ends p's lanes: the events delivered on them and not answered
// go back to pending (its instances had their time), and a late result is
// stale.
func (m *Manager) takeBack(p *partition) {
	for _, l := range p.lanes {
		if l.moveTo != nil {
			l.moveTo.pendingIn--
			l.moveTo = nil
		}
		m.dropLane(l, false)
	}
}

// dropPartition forgets a partition that left this worker.
func (m *Manager) dropPartition(p *partition, lost bool) {
	for _, l := range p.lanes {
		if !l.revoking {
			m.revokeLane(l, time.Now())
		}
		if l.moveTo != nil {
			// A move under way ends here: its target no longer expects
			// the partition, so it must not stay counted in its load.
			l.moveTo.pendingIn--
			l.moveTo = nil
		}
		l.inflight = 0
		delete(l.s.lanes, p)
		if !l.s.ended {
			// The session's in-flight count loses this partition's share.
			for _, r := range p.recs[p.head:] {
				if r.state == stateDelivered && r.lane == l {
					l.s.inflight--
				}
			}
		}
	}
	p.lanes = nil
	if m.eos {
		m.txnLeaving(p)
		for k := range m.poisoned {
			if k.tp == p.ktp {
				delete(m.poisoned, k)
			}
		}
		for _, r := range append(p.uncommitted, p.recs[p.head:]...) {
			r.held = nil // not handed over: its bytes were never held
		}
	}
	m.closeTables(p)
	p.dropped = true
	p.gone.Store(true)
	if m.parts[p.ktp] == p {
		delete(m.parts, p.ktp)
		delete(p.a.parts, p.ktp)
		m.mon.Release(p.ktp.topic, p.ktp.partition)
	} else {
		defer m.startPending(p) // its next assignment waited for it
	}
	m.log.Info("partition released", "agent", p.a.cfg.Name, "topic", p.ktp.topic, "partition", p.ktp.partition,
		"committed", p.committed, "lost", lost, "uncommitted_records", p.len())
}

// tick handles time: retries whose backoff passed, lanes whose revoke
// deadline passed.
func (m *Manager) tick(now time.Time) {
	m.pausesDue(now)
	for _, p := range m.parts {
		// A blocked agent's retries wait for good; a leaving partition's
		// are its next owner's (they must not produce after its revoke
		// drained: a late write could land after the next owner's).
		if p.retrying > 0 && p.a.blocked == "" && !p.revoking {
			for _, r := range p.recs[p.head:] {
				if r.state == stateRetry && !now.Before(r.retryAt) {
					p.retrying--
					if r.dlq {
						m.produceDeadLetter(p, r)
					} else if len(r.redo) > 0 {
						m.rewrite(p, r)
					} else {
						if p.keyBusy != nil {
							p.unbusy(r.key)
						}
						p.markPending(r)
					}
				}
			}
		}
		for _, l := range p.lanes {
			if l.revoking && !p.revoking && (l.inflight == 0 || now.After(l.deadline)) {
				m.finalizeMove(l)
			}
		}
	}
	m.checkProcessing(now)
}
