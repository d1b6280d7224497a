package agents

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/tables/live"
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
	var refused []string // per result: why it is refused, or ""
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
				if ts := out.Timestamp; !ts.IsZero() && (ts.Before(minRecordTime) || ts.After(maxRecordTime)) {
					return badRequest("result for offset %d produces a record with timestamp %s, outside what Kafka records hold (%s to %s)",
						r.Offset, ts.UTC().Format(time.RFC3339Nano), minRecordTime.Format(time.RFC3339), maxRecordTime.Format(time.RFC3339))
				}
			}
			if err := validateMutations(p, rec, r.Mutations); err != nil {
				return err
			}
			if why := m.refuseOutputs(r.Produced); why != "" {
				if refused == nil {
					refused = make([]string, len(res.Results))
				}
				refused[i] = why
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
		if refused != nil && refused[i] != "" {
			p.stats.Result(false, rec.sentAt, now)
			m.refuse(s, p, rec, refused[i])
			continue
		}
		p.stats.Result(r.Status == StatusRetry, rec.sentAt, now)
		switch r.Status {
		case StatusOK:
			rec.lane = nil
			rec.lastErr = ""
			if len(r.Produced) == 0 && len(r.Mutations) == 0 {
				if p.keyBusy != nil {
					p.unbusy(rec.key)
				}
				rec.state = stateDone
				m.doneCount++
				p.processed()
				continue
			}
			if m.eos {
				m.holdResult(p, rec, &res.Results[i])
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
			rec.failed, rec.refused, rec.redo = nil, nil, nil
			m.produceMutations(p, rec, r.Mutations)
			for _, out := range r.Produced {
				w := &write{rec: m.outputRecord(rec, out), n: -1}
				m.produce(p, w.rec, m.onProduced(p, rec, w))
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

// The timestamps an output record may set: Kafka's are milliseconds since
// 1970 (0 would mean "now" to librdkafka), and Go's nanosecond clock ends
// in 2262.
var (
	minRecordTime = time.UnixMilli(1)
	maxRecordTime = time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)
)

// outputRecord is the record an agent's output out of event r becomes: in
// the partition the topic's partitioner picks for its key, with the input's
// timestamp unless the agent gave one (docs/protocol.md).
func (m *Manager) outputRecord(r *rec, out Record) transport.Record {
	ts := out.Timestamp
	if ts.IsZero() {
		ts = r.ts // the input's, as in Kafka Streams
	}
	return transport.Record{
		Topic:     out.Topic,
		Partition: m.cfg.Partitioners.Partition(out.Topic, out.Key),
		Timestamp: ts,
		Key:       out.Key,
		Value:     out.Value,
		Headers:   out.Headers, // the session made them for this result alone
	}
}

// write is one record the worker produces for an event: an output or the
// dead letter (rec), or the changelog record of a mutation (tp, mut). A
// write that fails with a retriable error is produced again as it was.
type write struct {
	rec transport.Record
	tp  *live.Part
	mut tables.Mutation
	// n is the bytes it holds against Config.InflightBytes while Kafka
	// has not acknowledged it; -1: its record's size (an output); 0: none
	// (a dead letter is the buffered record, held there).
	n int64
	// log is the mutation's entry in its table partition's transaction
	// log (exactly-once, eos.go).
	log *live.TxnMut
}

// topic is the topic w goes to.
func (w *write) topic() string {
	if w.tp != nil {
		return w.tp.Topic()
	}
	return w.rec.Topic
}

// onProduced returns the callback of one produce of w for r; the bytes w
// holds are held from now until its acknowledgement.
func (m *Manager) onProduced(p *partition, r *rec, w *write) func(error) {
	start := time.Now()
	if w.n < 0 {
		w.n = outputBytes(w.rec)
	}
	m.hold(w.n)
	n := w.n
	return func(err error) {
		m.mon.ProduceLatency.Observe(time.Since(start))
		m.in.push(&produceAck{p: p, r: r, w: w, err: err, n: n})
	}
}

// refuseOutputs returns why records of an OK result may not be produced,
// or "": agents write only the topics in Config.Outputs, never a changelog
// or a dead-letter topic (docs/protocol.md, "What an agent may produce").
// Such a record is not a protocol violation (the agent may have been
// configured with a wrong topic name): the event is refused, not the
// session.
func (m *Manager) refuseOutputs(outs []Record) string {
	for _, out := range outs {
		switch {
		case m.internal[out.Topic]:
			return fmt.Sprintf("refused (INVALID_ARGUMENT): the result produces a record for topic %q, which is internal to the worker (a changelog or dead-letter topic); agents may write only the app's declared topics", out.Topic)
		case !m.outputs[out.Topic]:
			return fmt.Sprintf("refused (INVALID_ARGUMENT): the result produces a record for topic %q, which the app does not declare (declare it under topics in the app file)", out.Topic)
		}
	}
	return ""
}

// refuse dead-letters a delivered event whose OK result was refused: none
// of its records or mutations are applied. The session goes on; the
// refusal is counted and logged with code INVALID_ARGUMENT.
func (m *Manager) refuse(s *session, p *partition, r *rec, why string) {
	a := p.a
	a.stats.refused++
	a.mon.Refused.Add(1)
	m.log.Warn("agent result refused; the event goes to the dead-letter topic", "code", "INVALID_ARGUMENT",
		"agent", a.cfg.Name, "instance", s.instance, "topic", p.ktp.topic, "partition", p.ktp.partition,
		"offset", r.off, "err", why)
	if p.keyBusy != nil {
		p.unbusy(r.key)
	}
	r.lane = nil
	m.deadLetter(p, r, why)
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
	if k := (poisonKey{p.ktp, r.off}); m.eos && m.poisoned[k].noValue != "" && r.noValue == "" {
		// Its dead letter with the value was refused for good and the
		// transaction aborted: without the value this time.
		r.noValue = m.poisoned[k].noValue
		delete(m.poisoned, k)
	}
	r.state = stateAcking
	p.acking++
	r.acks = 1
	r.failed, r.refused, r.redo = nil, nil, nil
	hs := cloneHeaders(r.headers)
	value := r.value
	if r.noValue != "" {
		// Kafka refused the full dead letter: the value (and the record's
		// own headers) stay behind in the source topic, at the partition
		// and offset the headers name.
		hs, value = nil, nil
	}
	hs = append(hs,
		header("eddy.error", r.lastErr),
		header("eddy.agent", p.a.cfg.Name),
		header("eddy.topic", p.ktp.topic),
		header("eddy.partition", strconv.Itoa(int(p.ktp.partition))),
		header("eddy.offset", strconv.FormatInt(r.off, 10)),
		header("eddy.attempts", strconv.Itoa(int(r.attempt()))),
	)
	if r.noValue != "" {
		hs = append(hs,
			header("eddy.value.dropped", r.noValue),
			header("eddy.value.bytes", strconv.Itoa(len(r.value))),
		)
	}
	w := &write{rec: transport.Record{
		Topic: p.a.dlq, Partition: transport.AnyPartition, Key: r.key, Value: value, Headers: hs, Timestamp: r.ts,
	}}
	if m.eos {
		// Into the transaction with the offset past it (eos.go).
		p.acking--
		r.acks = 0
		r.held = []*write{w}
		r.state = stateHeld
		return
	}
	m.produce(p, w.rec, m.onProduced(p, r, w))
}

// rewrite produces again the writes of r that failed with a retriable
// error; those Kafka acknowledged are not repeated.
//
// A changelog write of a key that a later event of the partition also wrote
// is not repeated: the later value supersedes it in the compacted changelog
// and in the store, and the first attempt of the later write may have
// landed although it was reported failed (a timeout), so writing the older
// value again would put the key back (the fault suite saw a count go from
// 11 to 8 after a broker restart).
func (m *Manager) rewrite(p *partition, r *rec) {
	ws := r.redo[:0:0]
	for _, w := range r.redo {
		if w.tp != nil && p.writtenAfter(r, w.tp.Name(), w.mut.Key) {
			continue
		}
		ws = append(ws, w)
	}
	r.state = stateAcking
	p.acking++
	r.acks = len(ws)
	r.failed, r.refused, r.redo = nil, nil, nil
	if len(ws) == 0 {
		// Done through the inbox, not here: tick is walking p.recs, which
		// finishing r would change under it.
		r.acks = 1
		m.in.push(&produceAck{p: p, r: r, w: &write{}})
		return
	}
	for _, w := range ws {
		if w.tp != nil {
			m.produceChangelog(p, r, w.tp, w.mut)
		} else {
			m.produce(p, w.rec, m.onProduced(p, r, w))
		}
	}
}

// writtenAfter reports whether an event of p after r has a changelog write
// of key of table that Kafka acknowledged: that later value is durable and
// supersedes r's. A later write still in flight or failed does not count
// (it may yet be refused, and r's value would then be lost).
func (p *partition) writtenAfter(r *rec, table string, key []byte) bool {
	k := table + "\x00" + string(key)
	for _, x := range p.recs[p.head:] {
		if x.off > r.off && slices.Contains(x.landed, k) {
			return true
		}
	}
	return false
}

// holdWrites schedules the failed writes of r (or its dead letter) to be
// produced again after a backoff. The frontier and the key wait; the
// event is not delivered again and its retries are not used up: a broker
// outage is the worker's failure, not the agent's.
func (m *Manager) holdWrites(p *partition, r *rec, now time.Time) {
	r.writes++
	p.a.stats.produceRetries++
	p.a.mon.ProduceRetries.Add(1)
	r.state = stateRetry
	r.retryAt = now.Add(m.backoff(r.writes))
	p.retrying++
}

// produced takes one produce acknowledgement of r; w is what was
// produced. Once every write of the attempt is answered:
//   - all acknowledged: r is done;
//   - one failed permanently (transport.IsPermanent: too large, not
//     authorised, unknown topic): the event is dead-lettered with the
//     reason (writes Kafka already has stay); a dead letter Kafka refuses
//     is written again without its value;
//   - otherwise the failed writes are produced again after a backoff.
func (m *Manager) produced(p *partition, r *rec, w *write, err error) {
	if p.dropped || r.state != stateAcking {
		return
	}
	if err != nil {
		if transport.IsPermanent(err) {
			if r.refused == nil {
				r.refused, r.refusedTopic = err, w.topic()
			}
		} else {
			r.redo = append(r.redo, w)
			if r.failed == nil {
				r.failed = err
			}
		}
	}
	r.acks--
	if r.acks > 0 {
		return
	}
	p.acking--
	now := time.Now()
	switch {
	case r.dlq && r.refused != nil && r.noValue == "":
		r.noValue = "the dead-letter topic refused the record: " + r.refused.Error()
		p.a.stats.deadLettersNoValue++
		p.a.mon.DeadLettersWithoutValue.Add(1)
		m.log.Warn("dead letter refused by Kafka; writing it without its value (the original stays in the source topic)",
			"agent", p.a.cfg.Name, "topic", p.ktp.topic, "partition", p.ktp.partition, "offset", r.off,
			"bytes", len(r.value), "err", r.refused)
		m.produceDeadLetter(p, r)
	case r.dlq && (r.refused != nil || r.failed != nil):
		// Even the dead letter without its value is refused (the
		// dead-letter topic is missing or not writable), or Kafka is
		// unavailable: nothing may be skipped, so it holds and retries.
		err := r.failed
		if err == nil {
			err = r.refused
		}
		m.log.Error("dead letter not accepted by Kafka; retrying", "agent", p.a.cfg.Name, "topic", p.a.dlq,
			"partition", p.ktp.partition, "offset", r.off, "attempt", r.writes+1, "err", err)
		r.redo = nil
		m.holdWrites(p, r, now)
	case r.refused != nil:
		reason := fmt.Sprintf("producing to topic %q failed permanently: %v", r.refusedTopic, r.refused)
		m.log.Warn("produce refused by Kafka; dead-lettering the event", "agent", p.a.cfg.Name, "topic", p.ktp.topic,
			"partition", p.ktp.partition, "offset", r.off, "to", r.refusedTopic, "err", r.refused)
		r.redo = nil
		if p.keyBusy != nil {
			p.unbusy(r.key)
		}
		m.deadLetter(p, r, reason)
	case r.failed != nil:
		level := slog.LevelDebug
		if r.writes == 0 {
			level = slog.LevelWarn
		}
		m.log.Log(context.Background(), level, "produce failed; retrying after a backoff", "agent", p.a.cfg.Name,
			"topic", p.ktp.topic, "partition", p.ktp.partition, "offset", r.off, "records", len(r.redo),
			"attempt", r.writes+1, "err", r.failed)
		m.holdWrites(p, r, now) // the key stays busy
	default:
		if p.keyBusy != nil && !r.dlq {
			p.unbusy(r.key)
		}
		r.state = stateDone
		m.doneCount++
		if !r.dlq {
			p.processed()
		}
		p.advance()
		m.applyPause(p)
	}
}

// processed counts an event done with an OK result, once Kafka has what it
// produced: one whose writes fail permanently is dead-lettered instead,
// and counted only there.
func (p *partition) processed() {
	p.a.stats.acked++
	p.stats.AddProcessed()
}
