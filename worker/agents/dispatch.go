package agents

import (
	"time"

	"slices"
)

// dispatch sends every instance what its credit allows: pending records of
// its partitions, in offset order, in batches.
func (m *Manager) dispatch() {
	m.now = time.Now()
	if m.overCap() {
		// Results and outputs fill Config.InflightBytes: delivering more
		// would only make more. Acknowledgements from Kafka make room.
		return
	}
	for _, a := range m.agents {
		if a.paused || a.blocked != "" || len(a.sessions) == 0 {
			continue
		}
		for _, p := range a.parts {
			if p.revoking || p.recovering || p.prev != nil || p.startUnknown || p.scan >= len(p.recs) {
				continue
			}
			// With tables, a key's next event must see the previous
			// one's mutations: the key-busy rule applies in partition
			// ordering too (its one lane is the owner's).
			if a.byKey || a.tables {
				m.dispatchByKey(p)
			} else if l := p.ownerLane(); l != nil {
				m.dispatchLane(p, l)
			}
		}
	}
}

// canTake reports whether s has credit for one more event of size, given
// what the batch under construction already holds. An instance with
// nothing in flight always gets at least one event if it has event credit,
// so a record larger than its byte credit cannot wedge it.
func (s *session) canTake(size int, batchEvents int) bool {
	if s.creditEvents <= 0 {
		return false
	}
	if int64(size) <= s.creditBytes {
		return true
	}
	return s.inflight == 0 && batchEvents == 0
}

func (m *Manager) take(p *partition, l *lane, r *rec) {
	s := l.s
	r.state = stateDelivered
	r.lane = l
	r.sent++
	r.sentAt = m.now
	p.stats.AddDelivered(1)
	l.inflight++
	s.inflight++
	p.inflight++
	s.creditEvents--
	s.creditBytes -= int64(r.size)
	p.a.stats.delivered++
}

// eventOf is r as delivered, with its state. A failed state read holds r
// back instead (holdRead) and returns false.
func (m *Manager) eventOf(p *partition, r *rec) (Event, bool) {
	// Stream time moves with delivery, not with fetching: a buffer filled
	// far ahead must not expire the windows of the events still in it.
	was := p.streamTime
	if r.ts.After(p.streamTime) {
		p.streamTime = r.ts
	}
	state, t, err := m.stateOf(p, r)
	if err != nil {
		p.streamTime = was // not delivered
		m.holdRead(p, r, t)
		return Event{}, false
	}
	return Event{Offset: r.off, Key: r.key, Value: r.value, Headers: r.headers, Timestamp: r.ts, Attempt: r.tries + 1,
		State: state}, true
}

// dispatchLane fills batches for the single owner of a partition.
func (m *Manager) dispatchLane(p *partition, l *lane) {
	s := l.s
	for !s.ended {
		var batch []Event
		bytes := 0
		i := p.scan
		firstSkipped := -1
		for ; i < len(p.recs) && len(batch) < m.cfg.MaxBatchEvents; i++ {
			r := p.recs[i]
			if r.state != statePending {
				continue
			}
			if !s.canTake(r.size, len(batch)) {
				firstSkipped = i
				break
			}
			if len(batch) > 0 && bytes+r.size > m.cfg.MaxBatchBytes {
				// The batch is full, not the credit: the next batch
				// starts at i in this same round (counting this as a
				// skip ended the round after one batch).
				break
			}
			ev, ok := m.eventOf(p, r)
			if !ok {
				continue // held: its state could not be read
			}
			m.take(p, l, r)
			batch = append(batch, ev)
			bytes += r.size
		}
		if firstSkipped >= 0 {
			p.scan = firstSkipped
		} else if i >= len(p.recs) {
			p.scan = len(p.recs)
		} else {
			p.scan = i // the batch is full; the next starts here
		}
		if len(batch) == 0 {
			return
		}
		m.send(s, Outbound{Batch: &Batch{
			PartitionRef: PartitionRef{Topic: p.ktp.topic, Partition: p.ktp.partition, Epoch: l.epoch},
			Events:       batch,
		}})
		if firstSkipped >= 0 || p.scan >= len(p.recs) {
			return
		}
	}
}

// dispatchByKey spreads pending records over the partition's lanes by key
// hash. A key with a delivered or retrying record is busy: its later
// records wait, so per-key order holds and each key has at most one batch
// in flight. Records of one key in one pass go to one lane, in order.
func (m *Manager) dispatchByKey(p *partition) {
	lanes := make([]*lane, 0, len(p.lanes))
	credit := false
	for _, l := range p.lanes {
		if !l.revoking && !l.s.ended {
			lanes = append(lanes, l)
			credit = credit || l.s.creditEvents > 0
		}
	}
	if !credit {
		// No lane can take an event: nothing to scan for (the common case
		// under load, woken by acknowledgements while credit is used up).
		return
	}
	// Stable routing: lanes sorted by instance id.
	slices.SortFunc(lanes, func(x, y *lane) int {
		switch {
		case x.s.instance < y.s.instance:
			return -1
		case x.s.instance > y.s.instance:
			return 1
		}
		return 0
	})
	type pending struct {
		events []Event
		bytes  int
		full   bool
	}
	batches := make([]pending, len(lanes))
	// Keys that must wait for the rest of this pass, beyond those busy
	// before it (p.keyBusy without inBatch): skipped for a full lane, or
	// retrying alone.
	var blocked, inBatch map[string]bool
	firstSkipped := -1
	open := len(lanes)
	for i := p.scan; i < len(p.recs) && open > 0; i++ {
		r := p.recs[i]
		if r.state != statePending {
			continue
		}
		skip := blocked[string(r.key)]
		if !skip && p.keyBusy[string(r.key)] > 0 && !inBatch[string(r.key)] {
			// Busy since before this pass: stays so for the whole pass.
			if firstSkipped < 0 {
				firstSkipped = i
			}
			continue
		}
		li := int(hashKey(r.key) % uint32(len(lanes)))
		b := &batches[li]
		if !skip && (b.full || !lanes[li].s.canTake(r.size, len(b.events)) ||
			len(b.events) >= m.cfg.MaxBatchEvents || (len(b.events) > 0 && b.bytes+r.size > m.cfg.MaxBatchBytes)) {
			if !b.full {
				b.full = true
				open--
			}
			skip = true
		}
		if skip {
			if blocked == nil {
				blocked = map[string]bool{}
			}
			blocked[string(r.key)] = true
			if firstSkipped < 0 {
				firstSkipped = i
			}
			continue
		}
		ev, ok := m.eventOf(p, r)
		if !ok {
			// Held, its key busy: the key's later events wait for it.
			if blocked == nil {
				blocked = map[string]bool{}
			}
			blocked[string(r.key)] = true
			continue
		}
		m.take(p, lanes[li], r)
		p.busy(r.key)
		if inBatch == nil {
			inBatch = map[string]bool{}
		}
		inBatch[string(r.key)] = true
		if r.lastErr != "" {
			// It failed before (RETRY or a failed produce): it goes
			// alone, and the key's later events wait for its result,
			// so they cannot overtake it if it fails again.
			if blocked == nil {
				blocked = map[string]bool{}
			}
			blocked[string(r.key)] = true
		}
		b.events = append(b.events, ev)
		b.bytes += r.size
	}
	if firstSkipped >= 0 {
		p.scan = firstSkipped
	} else if open > 0 {
		p.scan = len(p.recs)
	}
	for i, b := range batches {
		if len(b.events) == 0 {
			continue
		}
		l := lanes[i]
		m.send(l.s, Outbound{Batch: &Batch{
			PartitionRef: PartitionRef{Topic: p.ktp.topic, Partition: p.ktp.partition, Epoch: l.epoch},
			Events:       b.events,
		}})
	}
}

// hashKey is 32-bit FNV-1a of k (hash/fnv's, without its allocation).
func hashKey(k []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range k {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}
