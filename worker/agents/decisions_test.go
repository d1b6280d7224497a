package agents_test

// Two decisions on the stricter reading of docs/protocol.md: a key stays busy
// until Kafka has what its event produced, and a disconnect is not a retry.

import (
	"errors"
	"slices"
	"testing"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/config"
)

// An OK result keeps its key busy until Kafka acknowledged what it
// produced: if that produce fails, the record is produced again, and the
// key's later events wait until Kafka has it.
func TestProduceFailureKeepsKeyOrder(t *testing.T) {
	h := start(t, keyConfig())
	h.m.Assigned(tps("in", 0))
	h.send(msg("in", 0, 0, "k1", "v"))
	h.settle()
	a := h.open("count", "a", 100)
	a.reply(a.nextBatch(), ok(0, agents.Record{Topic: "out", Value: []byte("x")}))
	h.prod.waitCalls(t, 1)
	h.send(msg("in", 0, 1, "k1", "v"))
	a.noBatch() // k1 is busy until offset 0's record is in Kafka
	h.prod.answer(t, 0, errors.New("produce failed"))
	h.prod.waitCalls(t, 2) // produced again after a backoff
	if r := h.prod.record(1); r.Topic != "out" || string(r.Value) != "x" {
		t.Fatalf("second produce %s %q, want out \"x\" again", r.Topic, r.Value)
	}
	a.noBatch() // still busy: neither offset 0 again nor offset 1
	h.prod.answer(t, 1, nil)
	if got := offsets(a.nextBatch()); !slices.Equal(got, []int64{1}) {
		t.Fatalf("got %v, want offset 1 once offset 0's record is in Kafka", got)
	}
}

// A delivery lost to a disconnect is not a retry: Attempt stays 1 and the
// first RETRY is retried, not dead-lettered.
func TestDisconnectIsNotARetry(t *testing.T) {
	cfg := frontierConfig()
	cfg.Agents = []config.Agent{agentCfg("count", "", 1, "in")}
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 1)
	h.settle()
	a := h.open("count", "a", 100)
	a.nextBatch()
	a.s.Close(nil)
	a.waitDone()
	b := h.open("count", "b", 100)
	bt := b.nextBatch()
	if bt.Events[0].Attempt != 1 {
		t.Errorf("attempt after a disconnect = %d, want 1 (no RETRY yet)", bt.Events[0].Attempt)
	}
	b.reply(bt, retry(0, "transient")) // the first RETRY, max_retries 1
	if got := b.nextBatch(); got.Events[0].Offset != 0 {
		t.Fatalf("got %v, want offset 0 retried", offsets(got))
	}
	if h.prod.len() != 0 {
		t.Errorf("dead-lettered on the first RETRY")
	}
}
