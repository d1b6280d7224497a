package agents_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/transport"
)

func retryConfig(maxRetries int) agents.Config {
	cfg := frontierConfig()
	cfg.Agents = []config.Agent{agentCfg("count", "", maxRetries, "in")}
	return cfg
}

func headerMap(hs []transport.Header) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	return m
}

func TestRetryRedeliversAfterBackoff(t *testing.T) {
	cfg := retryConfig(3)
	cfg.RetryBackoffMin = 40 * time.Millisecond
	cfg.RetryBackoffMax = 60 * time.Millisecond
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 2)
	h.settle()
	a := h.open("count", "a", 100)
	b := a.nextBatch()
	sent := time.Now()
	a.reply(b, retry(0, "db busy"), ok(1))
	for _, step := range []struct {
		attempt uint32
		backoff time.Duration
	}{{2, 40 * time.Millisecond}, {3, 60 * time.Millisecond}} { // doubled, capped at max
		expectCommitted(t, h, a, 0, -1) // the retry holds the frontier
		b = a.nextBatch()
		if waited := time.Since(sent); waited < step.backoff {
			t.Errorf("attempt %d after %v, want a backoff of at least %v", step.attempt, waited, step.backoff)
		}
		if got := offsets(b); !slices.Equal(got, []int64{0}) || b.Events[0].Attempt != step.attempt {
			t.Fatalf("redelivery offsets %v attempt %d, want [0] attempt %d", got, b.Events[0].Attempt, step.attempt)
		}
		if step.attempt < 3 {
			sent = time.Now()
			a.reply(b, retry(0, "db busy"))
		}
	}
	a.reply(b, ok(0))
	expectCommitted(t, h, a, 0, 2)
	if got := h.info("count"); got.Retried != 2 || got.DeadLettered != 0 {
		t.Errorf("Retried %d, DeadLettered %d; want 2, 0", got.Retried, got.DeadLettered)
	}
}

// max_retries RETRYs are redelivered; the next RETRY dead-letters.
func TestRetriesExhaustedGoToDeadLetter(t *testing.T) {
	for _, maxRetries := range []int{0, 1, 3} {
		t.Run(fmt.Sprintf("max_retries=%d", maxRetries), func(t *testing.T) {
			h := start(t, retryConfig(maxRetries))
			h.m.Assigned(tps("in", 0))
			h.send(msg("in", 0, 0, "key", "value", transport.Header{Key: "trace", Value: []byte("t1")}))
			h.sendRange("in", 0, 1, 2)
			h.settle()
			a := h.open("count", "a", 100)
			b := a.nextBatch()
			a.reply(b, retry(0, "boom"), ok(1))
			for attempt := uint32(2); attempt <= uint32(maxRetries)+1; attempt++ {
				b = a.nextBatch()
				if b.Events[0].Offset != 0 || b.Events[0].Attempt != attempt {
					t.Fatalf("offset %d attempt %d, want 0 attempt %d", b.Events[0].Offset, b.Events[0].Attempt, attempt)
				}
				a.reply(b, retry(0, "boom"))
			}
			h.prod.waitCalls(t, 1)
			a.noBatch()
			r := h.prod.record(0)
			want := map[string]string{
				"trace": "t1", "eddy.error": "retries exhausted: boom", "eddy.agent": "count", "eddy.topic": "in",
				"eddy.partition": "0", "eddy.offset": "0", "eddy.attempts": fmt.Sprint(maxRetries + 1),
			}
			if got := headerMap(r.Headers); r.Topic != "app-count-dlq" || string(r.Key) != "key" || string(r.Value) != "value" ||
				r.Partition != transport.AnyPartition || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("dead letter = %s key %q value %q partition %d headers %v;\nwant app-count-dlq key \"key\" value \"value\" any partition headers %v",
					r.Topic, r.Key, r.Value, r.Partition, got, want)
			}
			expectCommitted(t, h, a, 0, -1) // until Kafka has the dead letter
			h.prod.answer(t, 0, nil)
			expectCommitted(t, h, a, 0, 2)
			if got := h.info("count"); got.DeadLettered != 1 || got.Retried != uint64(maxRetries)+1 {
				t.Errorf("DeadLettered %d, Retried %d; want 1, %d", got.DeadLettered, got.Retried, maxRetries+1)
			}
		})
	}
}

func TestDeadLetterProduceFailureIsRetried(t *testing.T) {
	h := start(t, retryConfig(3))
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 2)
	h.settle()
	a := h.open("count", "a", 100)
	a.reply(a.nextBatch(), deadLetter(0, "bad json"), ok(1))
	h.prod.waitCalls(t, 1)
	for i := range 3 {
		h.prod.answer(t, i, errors.New("dlq topic unavailable"))
		expectCommitted(t, h, a, 0, -1)
		h.prod.waitCalls(t, i+2) // produced again after a backoff
		if r := h.prod.record(i + 1); r.Topic != "app-count-dlq" || headerMap(r.Headers)["eddy.error"] != "bad json" {
			t.Fatalf("dead letter retry %d = %s %v", i, r.Topic, headerMap(r.Headers))
		}
	}
	a.noBatch() // never back to the agent, never skipped
	h.prod.answer(t, 3, nil)
	expectCommitted(t, h, a, 0, 2)
	if got := h.info("count").DeadLettered; got != 1 {
		t.Errorf("DeadLettered = %d, want 1", got)
	}
}

func TestDeadLetterStatus(t *testing.T) {
	tests := []struct{ why, wantErr string }{
		{"bad json", "bad json"},
		{"", "dead-lettered by the agent"},
	}
	for _, tt := range tests {
		t.Run(tt.wantErr, func(t *testing.T) {
			h := start(t, retryConfig(3))
			h.m.Assigned(tps("in", 0))
			h.sendRange("in", 0, 0, 1)
			h.settle()
			a := h.open("count", "a", 100)
			a.reply(a.nextBatch(), deadLetter(0, tt.why))
			h.prod.waitCalls(t, 1)
			r := h.prod.record(0)
			hs := headerMap(r.Headers)
			if r.Topic != "app-count-dlq" || hs["eddy.error"] != tt.wantErr || hs["eddy.attempts"] != "1" {
				t.Errorf("dead letter %s headers %v, want app-count-dlq, eddy.error %q, eddy.attempts 1", r.Topic, hs, tt.wantErr)
			}
			if got := h.info("count").Retried; got != 0 {
				t.Errorf("Retried = %d, want 0", got)
			}
			h.prod.answer(t, 0, nil)
			expectCommitted(t, h, a, 0, 1)
		})
	}
}

// A record too large for the agent stream is dead-lettered, not delivered.
func TestOversizedRecordDeadLettered(t *testing.T) {
	cfg := retryConfig(3)
	cfg.MaxEventBytes = 16
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0))
	h.send(msg("in", 0, 0, "k", strings.Repeat("x", 16)), msg("in", 0, 1, "k", "small"))
	h.settle()
	a := h.open("count", "a", 100)
	b := a.nextBatch()
	if got := offsets(b); !slices.Equal(got, []int64{1}) {
		t.Errorf("delivered %v, want only [1]", got)
	}
	h.prod.waitCalls(t, 1)
	if r := h.prod.record(0); r.Topic != "app-count-dlq" || !strings.Contains(headerMap(r.Headers)["eddy.error"], "too large") {
		t.Errorf("dead letter %s %v, want app-count-dlq with a 'too large' error", r.Topic, headerMap(r.Headers))
	}
	a.okAll(b)
	expectCommitted(t, h, a, 0, -1)
	h.prod.answer(t, 0, nil)
	expectCommitted(t, h, a, 0, 2)
}
