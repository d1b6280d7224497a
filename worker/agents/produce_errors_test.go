package agents_test

// The worker's own produce failures (Correctness under churn, defects 2, 3
// and 8): records for topics agents may not write are refused; permanent
// produce errors dead-letter the event, and a dead letter Kafka refuses is
// written without its value; retriable ones hold the frontier and produce
// the failed records again, never using up the agent's retries.

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/transport"
)

func out(v string) agents.Record { return agents.Record{Topic: "out", Value: []byte(v)} }

// topicsOf lists the topics of every record produced so far.
func (p *fakeProducer) topics() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ts []string
	for _, c := range p.calls {
		ts = append(ts, c.rec.Topic)
	}
	return ts
}

// A result with a record for an internal topic or one the app does not
// declare is refused: nothing of it reaches Kafka, the event goes to the
// dead letter with the reason naming the topic, the session stays, and
// the partition goes on.
func TestResultForForbiddenTopicIsRefused(t *testing.T) {
	tests := []struct {
		name, topic, why string
	}{
		{"own dead-letter topic", "app-count-dlq", "internal"},
		{"another agent's dead-letter topic", "app-other-dlq", "internal"},
		{"a changelog", "app-counts-changelog", "internal"},
		{"undeclared topic", "nosuch", "does not declare"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFakeRestorer(t)
			close(r.release)
			cfg := frontierConfig()
			other := agentCfg("other", "", 3, "in2")
			other.Tables = []string{"counts"}
			cfg.Agents = append(cfg.Agents, other)
			cfg.Restorer = r
			h := start(t, cfg)
			h.m.Assigned(tps("in", 0))
			h.send(msg("in", 0, 0, "k0", "v0", transport.Header{Key: "trace", Value: []byte("t1")}))
			h.sendRange("in", 0, 1, 2)
			h.settle()
			a := h.open("count", "a", 100)
			b := a.nextBatch()
			bad := agents.Record{Topic: tt.topic, Value: []byte("corrupt")}
			a.reply(b, ok(0, out("fine"), bad), ok(1, out("v1")))
			h.prod.waitCalls(t, 2)
			h.settle()
			if got := h.prod.topics(); !slices.Equal(got, []string{"app-count-dlq", "out"}) {
				t.Fatalf("produced to %v, want [app-count-dlq out] (the refused result's records never produced)", got)
			}
			d := h.prod.record(0)
			hs := headerMap(d.Headers)
			if e := hs["eddy.error"]; !strings.Contains(e, fmt.Sprintf("%q", tt.topic)) || !strings.Contains(e, tt.why) ||
				!strings.Contains(e, "INVALID_ARGUMENT") || string(d.Value) != "v0" || hs["trace"] != "t1" ||
				hs["eddy.offset"] != "0" || hs["eddy.agent"] != "count" {
				t.Errorf("dead letter value %q headers %v; want v0, trace t1, eddy.offset 0 and an INVALID_ARGUMENT eddy.error naming %q (%s)",
					d.Value, hs, tt.topic, tt.why)
			}
			if !a.alive() {
				t.Fatalf("session ended: %v", a.s.Err())
			}
			h.prod.answer(t, 0, nil)
			h.prod.answer(t, 1, nil)
			expectCommitted(t, h, a, 0, 2)
			h.sendRange("in", 0, 2, 3)
			if got := offsets(a.nextBatch()); !slices.Equal(got, []int64{2}) {
				t.Errorf("next batch %v, want [2]", got)
			}
			if got := h.info("count"); got.Refused != 1 || got.DeadLettered != 1 || got.Acked != 1 {
				t.Errorf("Refused %d DeadLettered %d Acked %d; want 1, 1, 1", got.Refused, got.DeadLettered, got.Acked)
			}
		})
	}
}

// A failed produce of the worker's is produced again after a backoff,
// only the records that failed, while the frontier waits; the event is
// not delivered again and the agent's retries (none here) are untouched.
func TestProduceFailureRetriesRecordsNotEvent(t *testing.T) {
	for _, fail := range []error{kafkaErr(kafka.ErrMsgTimedOut), kafkaErr(kafka.ErrAllBrokersDown), fmt.Errorf("unclassified")} {
		t.Run(fail.Error(), func(t *testing.T) {
			h := start(t, retryConfig(0)) // max_retries 0: the first RETRY dead-letters
			h.m.Assigned(tps("in", 0))
			h.sendRange("in", 0, 0, 2)
			h.settle()
			a := h.open("count", "a", 100)
			a.reply(a.nextBatch(), ok(0, out("x"), out("y")), ok(1))
			h.prod.waitCalls(t, 2)
			h.prod.answer(t, 1, nil) // y made it
			h.prod.answer(t, 0, fail)
			const failures = 4 // a broker outage longer than a few message timeouts
			for i := 1; i < failures; i++ {
				h.prod.waitCalls(t, 2+i)
				if r := h.prod.record(1 + i); r.Topic != "out" || string(r.Value) != "x" {
					t.Fatalf("retry %d produced %s %q, want out \"x\" only", i, r.Topic, r.Value)
				}
				expectCommitted(t, h, a, 0, -1)
				h.prod.answer(t, 1+i, fail)
			}
			h.prod.waitCalls(t, 2+failures)
			a.noBatch() // never delivered again
			if r := h.prod.record(1 + failures); r.Topic != "out" || string(r.Value) != "x" {
				t.Fatalf("retry produced %s %q, want out \"x\"", r.Topic, r.Value)
			}
			h.prod.answer(t, 1+failures, nil)
			expectCommitted(t, h, a, 0, 2)
			if n := h.prod.len(); n != 2+failures {
				t.Errorf("%d records produced, want %d (no dead letter, y once)", n, 2+failures)
			}
			if got := h.info("count"); got.Retried != 0 || got.DeadLettered != 0 || got.ProduceRetries != failures {
				t.Errorf("Retried %d DeadLettered %d ProduceRetries %d; want 0, 0, %d", got.Retried, got.DeadLettered, got.ProduceRetries, failures)
			}
		})
	}
}

// A changelog write that fails is written again; the event is not
// delivered again, and the key's next event sees the value once Kafka has
// it.
func TestChangelogWriteFailureIsRetried(t *testing.T) {
	r := newFakeRestorer(t)
	close(r.release)
	cfg := tableConfig(r, "")
	cfg.Agents[0].MaxRetries = new(int) // 0
	h := start(t, cfg)
	a := h.open("count", "a", 100)
	h.m.Assigned(tps("in", 0))
	h.send(msg("in", 0, 0, "w", "x"))
	h.settle()
	a.reply(a.nextBatch(), set(0, "w", "1"))
	h.prod.waitCalls(t, 1)
	h.send(msg("in", 0, 1, "w", "x"))
	h.prod.answer(t, 0, kafkaErr(kafka.ErrMsgTimedOut))
	h.prod.waitCalls(t, 2)
	if rec := h.prod.record(1); rec.Topic != "app-counts-changelog" || string(rec.Key) != "w" || string(rec.Value) != "1" {
		t.Fatalf("second produce %s %q=%q, want the changelog write again", rec.Topic, rec.Key, rec.Value)
	}
	a.noBatch() // offset 0 is not redelivered; offset 1 (same key) waits
	h.prod.answer(t, 1, nil)
	e := a.takeEvents(1)[0]
	if v, has := stateOf(t, e); e.Offset != 1 || !has || v != "1" {
		t.Errorf("event %d state %q/%v, want offset 1 with w=1", e.Offset, v, has)
	}
}

// A produce Kafka will never take (too large, not authorised, no such
// topic) dead-letters the event with the reason, at once.
func TestPermanentProduceErrorDeadLetters(t *testing.T) {
	for _, code := range []kafka.ErrorCode{kafka.ErrMsgSizeTooLarge, kafka.ErrTopicAuthorizationFailed, kafka.ErrUnknownTopicOrPart} {
		t.Run(code.String(), func(t *testing.T) {
			h := start(t, keyConfig())
			h.m.Assigned(tps("in", 0))
			h.send(msg("in", 0, 0, "k", "v0"))
			h.settle()
			a := h.open("count", "a", 100)
			a.reply(a.nextBatch(), ok(0, out("x")))
			h.prod.waitCalls(t, 1)
			h.send(msg("in", 0, 1, "k", "v1"))
			a.noBatch() // k is busy until Kafka answers
			h.prod.answer(t, 0, kafkaErr(code))
			h.prod.waitCalls(t, 2)
			d := h.prod.record(1)
			hs := headerMap(d.Headers)
			if d.Topic != "app-count-dlq" || string(d.Value) != "v0" || !strings.Contains(hs["eddy.error"], `"out"`) ||
				!strings.Contains(hs["eddy.error"], code.String()) {
				t.Fatalf("dead letter %s %q headers %v; want app-count-dlq v0 with an eddy.error naming \"out\" and %q", d.Topic, d.Value, hs, code)
			}
			// The key's next event is delivered (offset 0 is not redelivered).
			if got := offsets(a.nextBatch()); !slices.Equal(got, []int64{1}) {
				t.Errorf("next batch %v, want [1]", got)
			}
			h.prod.answer(t, 1, nil)
			expectCommitted(t, h, a, 0, 1)
		})
	}
}

// A dead letter Kafka refuses (too large for the dead-letter topic) is
// written without its value, with headers saying why and where the
// original is; never retried for ever, never skipped. Should even that be
// refused (the dead-letter topic is not writable), it holds and retries.
func TestRefusedDeadLetterWrittenWithoutValue(t *testing.T) {
	h := start(t, retryConfig(3))
	h.m.Assigned(tps("in", 0))
	big := strings.Repeat("x", 1000)
	h.send(msg("in", 0, 0, "k", big, transport.Header{Key: "trace", Value: []byte("t1")}))
	h.settle()
	a := h.open("count", "a", 100)
	a.reply(a.nextBatch(), deadLetter(0, "bad json"))
	h.prod.waitCalls(t, 1)
	if r := h.prod.record(0); string(r.Value) != big {
		t.Fatalf("first dead letter value has %d bytes, want %d", len(r.Value), len(big))
	}
	h.prod.answer(t, 0, kafkaErr(kafka.ErrMsgSizeTooLarge))
	h.prod.waitCalls(t, 2)
	r := h.prod.record(1)
	hs := headerMap(r.Headers)
	want := map[string]string{
		"eddy.error": "bad json", "eddy.agent": "count", "eddy.topic": "in", "eddy.partition": "0", "eddy.offset": "0",
		"eddy.attempts": "1", "eddy.value.bytes": "1000",
	}
	for k, v := range want {
		if hs[k] != v {
			t.Errorf("header %s = %q, want %q", k, hs[k], v)
		}
	}
	if r.Topic != "app-count-dlq" || r.Value != nil || string(r.Key) != "k" || hs["trace"] != "" ||
		!strings.Contains(hs["eddy.value.dropped"], kafka.ErrMsgSizeTooLarge.String()) {
		t.Errorf("dead letter %s key %q value %d bytes headers %v; want app-count-dlq, key k, no value, no trace, eddy.value.dropped naming the error",
			r.Topic, r.Key, len(r.Value), hs)
	}
	expectCommitted(t, h, a, 0, -1)
	h.prod.answer(t, 1, kafkaErr(kafka.ErrTopicAuthorizationFailed))
	h.prod.waitCalls(t, 3) // held and retried, still without the value
	if r := h.prod.record(2); r.Topic != "app-count-dlq" || r.Value != nil {
		t.Fatalf("retry %s value %d bytes, want app-count-dlq without value", r.Topic, len(r.Value))
	}
	expectCommitted(t, h, a, 0, -1)
	h.prod.answer(t, 2, nil)
	expectCommitted(t, h, a, 0, 1)
	if got := h.info("count"); got.DeadLettered != 1 || got.DeadLettersWithoutValue != 1 {
		t.Errorf("DeadLettered %d DeadLettersWithoutValue %d; want 1, 1", got.DeadLettered, got.DeadLettersWithoutValue)
	}
}

// A poison record too large for the agent stream and for its dead-letter
// topic is dead-lettered without its value; its partition is committed
// past it and the other partitions are never held.
func TestOversizedPoisonDoesNotBlock(t *testing.T) {
	cfg := frontierConfig()
	cfg.MaxEventBytes = 16
	cfg.Agents = []config.Agent{agentCfg("count", "", 3, "in")}
	h := start(t, cfg)
	h.prod.mu.Lock()
	h.prod.auto = true
	h.prod.fail = func(r transport.Record) error {
		if r.Topic == "app-count-dlq" && len(r.Value) > 16 {
			return kafkaErr(kafka.ErrMsgSizeTooLarge)
		}
		return nil
	}
	h.prod.mu.Unlock()
	h.m.Assigned(tps("in", 0, 1))
	h.send(msg("in", 0, 0, "k", "small"), msg("in", 0, 1, "k", strings.Repeat("p", 64)), msg("in", 0, 2, "k", "small"))
	h.sendRange("in", 1, 0, 3)
	h.settle()
	a := h.open("count", "a", 100)
	for _, b := range []*agents.Batch{a.nextBatch(), a.nextBatch()} {
		a.okAll(b)
	}
	h.waitCommitted("in", 0, 3)
	h.waitCommitted("in", 1, 3)
	if got := h.info("count"); got.DeadLettered != 1 || got.DeadLettersWithoutValue != 1 {
		t.Errorf("DeadLettered %d DeadLettersWithoutValue %d; want 1, 1", got.DeadLettered, got.DeadLettersWithoutValue)
	}
}

// TestRewriteSkipsSupersededChangelogWrites: two events of one key in one
// batch write 1 and then 2. The first write times out (it may have landed)
// and the second is acknowledged: writing 1 again would put the key back
// after 2 (the fault suite saw a count go from 11 to 8 after a broker
// restart), so it is not written again, and both events finish (finishing
// the first from tick once crashed the worker).
func TestRewriteSkipsSupersededChangelogWrites(t *testing.T) {
	r := newFakeRestorer(t)
	close(r.release)
	h := start(t, tableConfig(r, ""))
	h.m.Assigned(tps("in", 0))
	// Both events are buffered before the instance connects, so they go
	// in one batch (one of a busy key waits for the other's writes).
	h.send(msg("in", 0, 0, "w", "x"), msg("in", 0, 1, "w", "x"))
	h.settle()
	a := h.open("count", "a", 100)
	evs := a.takeEvents(2)
	if len(evs) != 2 {
		t.Fatalf("delivered %d events, want both of key w in one batch", len(evs))
	}
	b := a.log[len(a.log)-1].Batch
	a.reply(b, set(0, "w", "1"), set(1, "w", "2"))
	h.prod.waitCalls(t, 2)
	h.prod.answer(t, 0, kafkaErr(kafka.ErrMsgTimedOut))
	h.prod.answer(t, 1, nil)
	h.waitCommitted("in", 0, 2)
	if n := h.prod.len(); n != 2 {
		t.Errorf("%d records produced, want 2: the older value is not written again after the newer one landed", n)
	}
}

// TestRewriteKeepsWriteWhenTheLaterOneIsRefused: the first event's write
// of w times out; the later event's write of w is refused for good (it is
// dead-lettered). The first value must then be written again: nothing
// newer landed.
func TestRewriteKeepsWriteWhenTheLaterOneIsRefused(t *testing.T) {
	r := newFakeRestorer(t)
	close(r.release)
	h := start(t, tableConfig(r, ""))
	h.m.Assigned(tps("in", 0))
	h.send(msg("in", 0, 0, "w", "x"), msg("in", 0, 1, "w", "x")) // one batch: see above
	h.settle()
	a := h.open("count", "a", 100)
	a.takeEvents(2)
	b := a.log[len(a.log)-1].Batch
	a.reply(b, set(0, "w", "1"), set(1, "w", "2"))
	h.prod.waitCalls(t, 2)
	h.prod.answer(t, 1, kafkaErr(kafka.ErrMsgSizeTooLarge))
	h.prod.answer(t, 0, kafkaErr(kafka.ErrMsgTimedOut))
	// The dead letter of offset 1, and offset 0's value written again.
	waitFor(t, wait, func() string { return "w=1 written again" }, func() bool {
		for i := 2; i < h.prod.len(); i++ {
			if rec := h.prod.record(i); rec.Topic == "app-counts-changelog" && string(rec.Value) == "1" {
				return true
			}
		}
		return false
	})
}
