package agents

import (
	"strconv"
	"time"

	"github.com/eddy-streams/eddy/worker/transport"
)

// results applies an agent's results. A stale epoch is dropped and
// counted; anything else that does not fit what was delivered is a
// protocol violation and ends the session (its work is redelivered).
func (m *Manager) results(s *session, res *Results) error {
	a := s.agent
	p := m.parts[tpKey{res.Topic, res.Partition}]
	var l *lane
	if p != nil {
		l = p.lanes[s]
	}
	if l == nil || l.epoch != res.Epoch {
		if res.Epoch > m.epochSeq {
			return badRequest("results for %s[%d] carry epoch %d, which this worker never issued", res.Topic, res.Partition, res.Epoch)
		}
		a.addStale(len(res.Results))
		m.log.Debug("stale results dropped", "agent", a.cfg.Name, "instance", s.instance, "topic", res.Topic,
			"partition", res.Partition, "epoch", res.Epoch, "results", len(res.Results))
		return nil
	}
	// Validate everything before applying anything.
	for i := range res.Results {
		r := &res.Results[i]
		rec := p.find(r.Offset)
		switch {
		case rec == nil && r.Offset < p.frontier, rec != nil && rec.sent > 0 && (rec.state != stateDelivered || rec.lane != l):
			return badRequest("duplicate result for %s[%d] offset %d", res.Topic, res.Partition, r.Offset)
		case rec == nil || rec.state != stateDelivered || rec.lane != l:
			return badRequest("result for %s[%d] offset %d, which was not delivered to this instance", res.Topic, res.Partition, r.Offset)
		}
		for j := i + 1; j < len(res.Results); j++ {
			if res.Results[j].Offset == r.Offset {
				return badRequest("duplicate result for %s[%d] offset %d", res.Topic, res.Partition, r.Offset)
			}
		}
		switch r.Status {
		case StatusOK:
			for _, out := range r.Produced {
				if out.Topic == "" {
					return badRequest("result for offset %d produces a record without a topic", r.Offset)
				}
			}
			if err := validateMutations(p, rec, r.Mutations); err != nil {
				return err
			}
		case StatusRetry, StatusDeadLetter:
		default:
			return badRequest("result for offset %d has no status (want OK, RETRY or DEAD_LETTER)", r.Offset)
		}
	}
	now := time.Now()
	for i := range res.Results {
		r := &res.Results[i]
		rec := p.find(r.Offset)
		l.inflight--
		s.inflight--
		p.inflight--
		p.stats.Result(r.Status == StatusOK, r.Status == StatusRetry, rec.sentAt, now)
		switch r.Status {
		case StatusOK:
			a.stats.acked++
			rec.lane = nil
			rec.lastErr = ""
			if len(r.Produced) == 0 && len(r.Mutations) == 0 {
				if p.keyBusy != nil {
					p.unbusy(rec.key)
				}
				rec.state = stateDone
				m.doneCount++
				continue
			}
			// In key ordering (and with tables) the key stays busy until
			// Kafka has what the event produced and its changelog
			// records: a failed produce redelivers the event, which must
			// not be overtaken by the key's later events, and the next
			// event of the key must see the mutations.
			rec.state = stateAcking
			p.acking++
			rec.acks = len(r.Produced) + len(r.Mutations)
			rec.failed = nil
			m.produceMutations(p, rec, r.Mutations)
			for _, out := range r.Produced {
				kr := transport.Record{
					Topic:     out.Topic,
					Partition: transport.AnyPartition,
					Key:       out.Key,
					Value:     out.Value,
					Headers:   kafkaHeaders(out.Headers),
				}
				n := outputBytes(kr) // held until Kafka acknowledges it
				m.hold(n)
				m.produce(kr, m.onProduced(p, rec, n))
			}
		case StatusRetry:
			a.stats.retried++
			rec.lastErr = r.Error
			m.retryOrDeadLetter(p, rec, now)
		case StatusDeadLetter:
			if p.keyBusy != nil {
				p.unbusy(rec.key)
			}
			rec.lane = nil
			m.deadLetter(p, rec, r.Error)
		}
	}
	p.advance()
	m.applyPause(p)
	return nil
}

// onProduced returns the callback of one produce for r; its
// acknowledgement releases n held bytes.
func (m *Manager) onProduced(p *partition, r *rec, n int64) func(error) {
	start := time.Now()
	return func(err error) {
		m.mon.ProduceLatency.Observe(time.Since(start))
		m.in.push(&produceAck{p: p, r: r, err: err, n: n})
	}
}

// retryOrDeadLetter schedules a redelivery after backoff, or dead-letters
// the record once it used up its retries. The key stays busy meanwhile.
func (m *Manager) retryOrDeadLetter(p *partition, r *rec, now time.Time) {
	r.lane = nil
	if int(r.tries) >= p.a.cfg.Retries() {
		if p.keyBusy != nil {
			p.unbusy(r.key)
		}
		m.deadLetter(p, r, "retries exhausted: "+r.lastErr)
		return
	}
	r.tries++
	r.state = stateRetry
	r.retryAt = now.Add(m.backoff(r.tries))
	p.retrying++
}

func (m *Manager) backoff(attempts uint32) time.Duration {
	d := m.cfg.RetryBackoffMin
	for i := uint32(1); i < attempts && d < m.cfg.RetryBackoffMax; i++ {
		d *= 2
	}
	return min(d, m.cfg.RetryBackoffMax)
}

// deadLetter sends the record to the agent's dead-letter topic with headers
// naming the error, agent, source and attempts. The record is done only
// once Kafka has the dead letter; a failed produce is retried, never
// skipped.
func (m *Manager) deadLetter(p *partition, r *rec, reason string) {
	if reason == "" {
		reason = "dead-lettered by the agent"
	}
	r.lastErr = reason
	r.dlq = true
	p.a.stats.deadLettered++
	p.stats.AddDeadLettered()
	m.log.Warn("dead-lettering record", "agent", p.a.cfg.Name, "topic", p.ktp.topic, "partition", p.ktp.partition,
		"offset", r.off, "attempts", r.attempt(), "err", reason)
	m.produceDeadLetter(p, r)
}

// attempt is the Attempt of the record's last delivery (0: never delivered).
func (r *rec) attempt() uint32 {
	if r.sent == 0 {
		return 0
	}
	return r.tries + 1
}

// deadLetterLost dead-letters an event whose deliveries kept ending with
// the agent's session.
func (m *Manager) deadLetterLost(p *partition, r *rec) {
	r.state = stateAcking // leaves pending: no longer delivered
	m.deadLetter(p, r, "delivered "+strconv.Itoa(int(r.lost))+" times and each time the agent session ended before a result (does the event crash the agent?)")
}

func (m *Manager) produceDeadLetter(p *partition, r *rec) {
	r.state = stateAcking
	p.acking++
	r.acks = 1
	r.failed = nil
	hs := append(kafkaHeaders(r.headers),
		header("eddy.error", r.lastErr),
		header("eddy.agent", p.a.cfg.Name),
		header("eddy.topic", p.ktp.topic),
		header("eddy.partition", strconv.Itoa(int(p.ktp.partition))),
		header("eddy.offset", strconv.FormatInt(r.off, 10)),
		header("eddy.attempts", strconv.Itoa(int(r.attempt()))),
	)
	m.produce(transport.Record{
		Topic: p.a.dlq, Partition: transport.AnyPartition, Key: r.key, Value: r.value, Headers: hs, Timestamp: r.ts,
	}, m.onProduced(p, r, 0)) // the dead letter is the buffered record: held there
}

// produced takes one produce acknowledgement.
func (m *Manager) produced(p *partition, r *rec, err error) {
	if p.dropped || r.state != stateAcking {
		return
	}
	if err != nil && r.failed == nil {
		r.failed = err
	}
	r.acks--
	if r.acks > 0 {
		return
	}
	p.acking--
	if r.failed != nil {
		now := time.Now()
		if r.dlq {
			m.log.Error("dead letter not accepted by Kafka; retrying", "agent", p.a.cfg.Name, "topic", p.a.dlq, "offset", r.off, "err", r.failed)
			r.state = stateRetry
			r.retryAt = now.Add(m.backoff(2))
			p.retrying++
			return
		}
		m.log.Warn("produce failed; the event will be delivered again", "agent", p.a.cfg.Name, "topic", p.ktp.topic,
			"partition", p.ktp.partition, "offset", r.off, "err", r.failed)
		r.lastErr = "produce failed: " + r.failed.Error()
		m.retryOrDeadLetter(p, r, now) // the key is still busy
		return
	}
	if p.keyBusy != nil && !r.dlq {
		p.unbusy(r.key)
	}
	r.state = stateDone
	m.doneCount++
	p.advance()
	m.applyPause(p)
}
