package agents

import (
	"sort"

	"github.com/eddy-streams/eddy/worker/monitor"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
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
	// stateDone: finished and durable; the frontier may pass it.
	stateDone
)

// rec is one received record of a partition.
type rec struct {
	off     int64
	key     []byte
	value   []byte
	headers []Header
	ts      time.Time
	size    int
	state   recState
	tries   uint32 // RETRY outcomes and failed produces so far
	sent    uint32 // deliveries
	lost    uint32 // deliveries whose session ended before a result
	lane    *lane
	acks    int    // outstanding produce acknowledgements
	failed  error  // a produce of this attempt failed
	dlq     bool   // in the dead-letter path: retries re-produce the dead letter
	lastErr string // the agent's or the producer's last error
	retryAt time.Time
	sentAt  time.Time // last delivery, for latency and stall detection
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
	ktp           tpKey
	a             *agentState
	recs          []*rec // received, not yet passed by the frontier, in offset order
	head          int    // recs[:head] are passed and released
	scan          int    // no pending record before recs[scan]
	bytes         int
	lanes         map[*session]*lane
	frontier      int64 // next offset to commit; -1 before the first done record
	committed     int64
	paused        bool // paused in Kafka
	full          bool // buffer full: paused until half is done
	revoking      bool // leaving this worker: no more deliveries
	dropped       bool
	keyBusy       map[string]int // key ordering or tables: delivered, retrying or acking records per key
	tables        []*tablePart   // the agent's tables' partitions; nil without tables
	recovering    bool           // restoring its tables: nothing is delivered yet
	cancelRestore func()         // ends the restore under way
	retrying      int
	acking        int
	inflight      int
	stats         *monitor.PartitionStats // nil when per-event metrics are off
	doneTs        []int64                 // timestamps of records passed since the last commit (metrics)
	lastMove      time.Time               // when the frontier last moved
	streamTime    time.Time               // the highest timestamp of the events delivered (windows expire by it)
}

func (p *partition) len() int { return len(p.recs) - p.head }

func (p *partition) ref() kafka.TopicPartition {
	t := p.ktp.topic
	return kafka.TopicPartition{Topic: &t, Partition: p.ktp.partition}
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

// advance moves the frontier past done records and releases them. It
// returns how many it released.
func (p *partition) advance() int {
	n := 0
	for p.head < len(p.recs) && p.recs[p.head].state == stateDone {
		r := p.recs[p.head]
		p.frontier = r.off + 1
		if p.stats != nil {
			p.doneTs = append(p.doneTs, r.ts.UnixNano())
		}
		p.bytes -= r.size
		p.recs[p.head] = nil
		p.head++
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
func (m *Manager) receive(msg *kafka.Message) {
	p := m.parts[tpKey{*msg.TopicPartition.Topic, msg.TopicPartition.Partition}]
	if p == nil || p.revoking {
		// Not (or no longer) ours: never committed here, so the owner
		// consumes it again.
		return
	}
	off := int64(msg.TopicPartition.Offset)
	if n := len(p.recs); n > p.head && p.recs[n-1].off >= off || off < p.frontier {
		// librdkafka re-fetched from an earlier position (e.g. after a
		// pause); these records are already buffered, or already done:
		// with an empty buffer only the frontier remembers them.
		return
	}
	r := &rec{off: off, key: msg.Key, value: msg.Value, ts: msg.Timestamp, size: len(msg.Key) + len(msg.Value)}
	if len(msg.Headers) > 0 {
		r.headers = make([]Header, len(msg.Headers))
		for i, h := range msg.Headers {
			r.headers[i] = Header{Key: h.Key, Value: h.Value}
		}
	}
	p.recs = append(p.recs, r)
	p.stats.AddReceived(1)
	p.bytes += r.size
	if r.size > m.cfg.MaxEventBytes {
		// It cannot travel on the agent stream: dead-letter it, loudly.
		m.deadLetter(p, r, "record too large for the agent stream")
		return
	}
	if len(p.recs)-p.head >= m.cfg.BufferEvents || p.bytes >= m.cfg.BufferBytes {
		m.applyPause(p)
	}
}

// applyPause pauses or resumes the partition in Kafka to match what it
// needs: paused without an instance, while its agent is paused, while its
// buffer is full (resumed at half), or while it is leaving.
func (m *Manager) applyPause(p *partition) {
	if p.dropped {
		return
	}
	if p.full {
		p.full = p.len() > m.cfg.BufferEvents/2 || p.bytes > m.cfg.BufferBytes/2
	} else {
		p.full = p.len() >= m.cfg.BufferEvents || p.bytes >= m.cfg.BufferBytes
	}
	want := len(p.lanes) == 0 || p.a.paused || p.full || p.revoking
	if want == p.paused {
		return
	}
	parts := []kafka.TopicPartition{p.ref()}
	var err error
	if want {
		err = m.consumer.Pause(parts)
	} else {
		err = m.consumer.Resume(parts)
	}
	if err != nil {
		m.log.Debug("pause/resume partition", "topic", p.ktp.topic, "partition", p.ktp.partition, "pause", want, "err", err)
		return
	}
	p.paused = want
}

// assign takes partitions newly assigned by Kafka.
func (m *Manager) assign(parts []kafka.TopicPartition) {
	if len(parts) > 0 {
		m.mon.Rebalances.Add(1)
	}
	for _, tp := range parts {
		k := tpKey{*tp.Topic, tp.Partition}
		a := m.agentOf(k.topic)
		if a == nil || m.parts[k] != nil {
			continue
		}
		p := &partition{ktp: k, a: a, lanes: map[*session]*lane{}, frontier: -1, committed: -1,
			stats: m.mon.Partition(a.cfg.Name, k.topic, k.partition), lastMove: time.Now()}
		if a.byKey || a.tables {
			p.keyBusy = map[string]int{}
		}
		m.parts[k] = p
		if a.tables {
			m.startRecovery(p)
		}
		a.parts[k] = p
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

// addLane gives s a share of p under a new epoch.
func (m *Manager) addLane(p *partition, s *session) *lane {
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
	req.started = now
	m.mon.Rebalances.Add(1)
	for _, tp := range req.parts {
		p := m.parts[tpKey{*tp.Topic, tp.Partition}]
		if p == nil {
			continue
		}
		p.revoking = true
		if req.lost {
			continue
		}
		for _, l := range p.lanes {
			m.revokeLane(l, now)
		}
	}
	m.revokes = append(m.revokes, req)
	m.checkRevokes(now)
}

// checkRevokes finishes revocations whose partitions are quiet (or whose
// deadline passed): commit the frontier (unless lost), drop the state.
// It also finalizes lanes moving between instances.
func (m *Manager) checkRevokes(now time.Time) {
	kept := m.revokes[:0]
	for _, req := range m.revokes {
		ready := req.lost || now.After(req.deadline)
		if !ready {
			ready = true
			for _, tp := range req.parts {
				if p := m.parts[tpKey{*tp.Topic, tp.Partition}]; p != nil && !p.quiet() {
					ready = false
					break
				}
			}
		}
		if !ready {
			kept = append(kept, req)
			continue
		}
		only := map[*partition]bool{}
		for _, tp := range req.parts {
			if p := m.parts[tpKey{*tp.Topic, tp.Partition}]; p != nil {
				p.advance()
				only[p] = true
			}
		}
		if !req.lost {
			m.commitAll(only)
		}
		for p := range only {
			m.dropPartition(p, req.lost)
		}
		m.mon.RebalanceDuration.Observe(now.Sub(req.started))
		close(req.done)
	}
	m.revokes = kept
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
	m.closeTables(p)
	p.dropped = true
	delete(m.parts, p.ktp)
	m.mon.Release(p.ktp.topic, p.ktp.partition)
	delete(p.a.parts, p.ktp)
	m.log.Info("partition released", "agent", p.a.cfg.Name, "topic", p.ktp.topic, "partition", p.ktp.partition,
		"committed", p.committed, "lost", lost, "uncommitted_records", p.len())
}

// tick handles time: retries whose backoff passed, lanes whose revoke
// deadline passed.
func (m *Manager) tick(now time.Time) {
	for _, p := range m.parts {
		if p.retrying > 0 {
			for _, r := range p.recs[p.head:] {
				if r.state == stateRetry && !now.Before(r.retryAt) {
					p.retrying--
					if r.dlq {
						m.produceDeadLetter(p, r)
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
