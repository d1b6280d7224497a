package agents_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/config"
)

func keyConfig() agents.Config {
	cfg := frontierConfig()
	cfg.Agents = []config.Agent{agentCfg("count", "key", 3, "in")}
	return cfg
}

// keyChecker checks the rules of key ordering over everything the agents
// receive: per key, offsets never go back (a redelivery repeats one), and
// never two batches in flight.
type keyChecker struct {
	t        *testing.T
	inflight map[string]string // key -> instance holding an unanswered event of it
	last     map[string]int64  // last offset delivered per key
	at       map[string]map[string]bool
}

func newKeyChecker(t *testing.T) *keyChecker {
	return &keyChecker{t: t, inflight: map[string]string{}, last: map[string]int64{}, at: map[string]map[string]bool{}}
}

func (c *keyChecker) delivered(inst string, b *agents.Batch) {
	c.t.Helper()
	inBatch := map[string]bool{}
	for _, e := range b.Events {
		k := string(e.Key)
		if holder, busy := c.inflight[k]; busy && !inBatch[k] {
			c.t.Errorf("key %s: batch %v to %s while %s still holds an event of it", k, offsets(b), inst, holder)
		}
		if last, seen := c.last[k]; seen && e.Offset < last {
			c.t.Errorf("key %s: offset %d (attempt %d) after %d", k, e.Offset, e.Attempt, last)
		}
		c.last[k] = e.Offset
		c.inflight[k] = inst
		inBatch[k] = true
		if c.at[k] == nil {
			c.at[k] = map[string]bool{}
		}
		c.at[k][inst] = true
	}
}

func (c *keyChecker) answered(b *agents.Batch) {
	for _, e := range b.Events {
		delete(c.inflight, string(e.Key))
	}
}

// lost forgets a batch whose instance went away without results: its keys
// are free and start again from their first event in it.
func (c *keyChecker) lost(b *agents.Batch) {
	c.answered(b)
	for _, e := range b.Events {
		k := string(e.Key)
		c.last[k] = min(c.last[k], e.Offset)
	}
}

func TestKeyOrderingSpreadsKeysAndKeepsOrder(t *testing.T) {
	h := start(t, keyConfig())
	h.m.Assigned(tps("in", 0))
	as := []*fakeAgent{h.open("count", "a", 1000), h.open("count", "b", 1000)}
	h.settle()
	c := newKeyChecker(t)
	const n = 60
	sent := int64(0)
	done := 0
	instances := map[string]bool{}
	waitFor(t, wait, func() string { return fmt.Sprintf("%d events answered, have %d", n, done) }, func() bool {
		if sent < n { // records trickle in while the agents answer
			h.m.Message(msg("in", 0, sent, fmt.Sprintf("k%d", sent%7), "v"))
			sent++
		}
		if sent == n/2 && len(as) == 2 {
			as = append(as, h.open("count", "c", 1000)) // joins midway
		}
		for _, a := range as {
			a.pump()
			for _, b := range a.batches {
				c.delivered(a.instance, b)
				instances[a.instance] = true
				a.okAll(b)
				c.answered(b)
				done += len(b.Events)
			}
			a.batches = nil
		}
		return done >= n
	})
	if len(instances) < 2 {
		t.Errorf("events went to %v only; want them spread over instances", instances)
	}
	h.waitCommitted("in", 0, n)
}

// A busy key's later events wait for its result and then go together.
func TestKeyOrderingBusyKeyWaits(t *testing.T) {
	h := start(t, keyConfig())
	h.m.Assigned(tps("in", 0))
	h.send(msg("in", 0, 0, "k1", "v"), msg("in", 0, 1, "k2", "v"))
	h.settle()
	a := h.open("count", "a", 100)
	first := a.nextBatch()
	if got := offsets(first); !slices.Equal(got, []int64{0, 1}) {
		t.Fatalf("first batch %v, want [0 1]", got)
	}
	h.send(msg("in", 0, 2, "k1", "v"), msg("in", 0, 3, "k3", "v"))
	if got := offsets(a.nextBatch()); !slices.Equal(got, []int64{3}) {
		t.Fatalf("second batch %v, want [3]: k1 is busy", got)
	}
	h.send(msg("in", 0, 4, "k1", "v"))
	a.noBatch()
	a.reply(first, ok(1)) // k2 done; k1 still busy
	a.noBatch()
	a.reply(first, ok(0))
	b := a.nextBatch()
	if got := offsets(b); !slices.Equal(got, []int64{2, 4}) {
		t.Fatalf("k1's waiting events came as %v, want [2 4] in one batch", got)
	}
	a.okAll(b)
	expectCommitted(t, h, a, 0, 3) // 3 is still in flight
}

// A RETRY blocks its key until the retried event is resolved; other keys
// go on.
func TestKeyOrderingRetryBlocksKey(t *testing.T) {
	cfg := keyConfig()
	cfg.RetryBackoffMin = 30 * time.Millisecond
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0))
	h.send(msg("in", 0, 0, "k1", "v"), msg("in", 0, 1, "k2", "v"))
	h.settle()
	a := h.open("count", "a", 100)
	a.reply(a.nextBatch(), retry(0, "later"), ok(1))
	h.send(msg("in", 0, 2, "k1", "v"), msg("in", 0, 3, "k2", "v"))
	if got := offsets(a.nextBatch()); !slices.Equal(got, []int64{3}) {
		t.Fatalf("batch %v, want [3]: k1 waits for its retry", got)
	}
	b := a.nextBatch()
	if got := offsets(b); !slices.Equal(got, []int64{0}) || b.Events[0].Attempt != 2 {
		t.Fatalf("after the backoff: %v (attempt %d), want [0] attempt 2 alone", got, b.Events[0].Attempt)
	}
	a.reply(b, retry(0, "still later")) // not resolved yet
	b = a.nextBatch()
	if got := offsets(b); !slices.Equal(got, []int64{0}) || b.Events[0].Attempt != 3 {
		t.Fatalf("after the second backoff: %v (attempt %d), want [0] attempt 3 alone", got, b.Events[0].Attempt)
	}
	a.reply(b, ok(0))
	if got := offsets(a.nextBatch()); !slices.Equal(got, []int64{2}) {
		t.Fatalf("after k1's retry resolved: %v, want [2]", got)
	}
}

// A dead letter resolves the key: its later events go on.
func TestKeyOrderingDeadLetterFreesKey(t *testing.T) {
	cfg := keyConfig()
	cfg.Agents = []config.Agent{agentCfg("count", "key", 0, "in")}
	h := start(t, cfg)
	h.prod.auto = true
	h.m.Assigned(tps("in", 0))
	h.send(msg("in", 0, 0, "k1", "v"))
	h.settle()
	a := h.open("count", "a", 100)
	a.reply(a.nextBatch(), retry(0, "no")) // max_retries 0: dead letter
	h.send(msg("in", 0, 1, "k1", "v"))
	b := a.nextBatch()
	if got := offsets(b); !slices.Equal(got, []int64{1}) {
		t.Fatalf("batch %v, want [1]", got)
	}
	a.okAll(b)
	expectCommitted(t, h, a, 0, 2)
}

func TestKeyOrderingPausedUntilInstanceConnects(t *testing.T) {
	h := start(t, keyConfig())
	h.m.Assigned(tps("in", 0))
	h.settle()
	if !h.cons.isPaused("in", 0) {
		t.Fatalf("in[0] without an instance is not paused; consumer log %v", h.cons.pauseLog())
	}
	a := h.open("count", "a", 100)
	h.settle()
	if h.cons.isPaused("in", 0) {
		t.Fatalf("in[0] still paused after an instance connected; consumer log %v", h.cons.pauseLog())
	}
	h.sendRange("in", 0, 0, 1)
	a.okAll(a.nextBatch())
	a.s.Close(nil)
	a.waitDone()
	h.settle()
	if !h.cons.isPaused("in", 0) {
		t.Errorf("in[0] not paused after its last instance left; consumer log %v", h.cons.pauseLog())
	}
}

// When an instance leaves, its keys' events go to the others under their
// own epochs, in order; the leaver's late results are stale.
func TestKeyOrderingInstanceLeaves(t *testing.T) {
	h := start(t, keyConfig())
	h.m.Assigned(tps("in", 0))
	for off := int64(0); off < 20; off++ {
		h.send(msg("in", 0, off, fmt.Sprintf("k%d", off%5), "v"))
	}
	h.settle()
	a := h.open("count", "a", 1000)
	b := h.open("count", "b", 1000)
	h.settle()
	c := newKeyChecker(t)
	var aBatches []*agents.Batch
	for _, bt := range a.takeBatches() {
		c.delivered("a", bt)
		aBatches = append(aBatches, bt)
	}
	for _, bt := range b.takeBatches() {
		c.delivered("b", bt)
		b.okAll(bt)
		c.answered(bt)
	}
	if len(aBatches) == 0 {
		t.Fatalf("a got nothing; all 20 events went to b")
	}
	before := len(b.log)
	a.s.Close(errors.New("agent crashed"))
	a.waitDone()
	moved := 0
	for _, bt := range aBatches {
		moved += len(bt.Events)
		c.lost(bt)
	}
	got := b.takeEvents(moved)
	for _, bt := range b.log {
		if bt.Batch != nil && bt.Batch.Epoch != b.epoch[tp{"in", 0}] {
			t.Errorf("b got a batch under epoch %d, its Assign was %d", bt.Batch.Epoch, b.epoch[tp{"in", 0}])
		}
	}
	stale := h.info("count").StaleDropped
	for _, bt := range aBatches {
		a.okAll(bt)
	}
	h.settle()
	if got := h.info("count").StaleDropped; got != stale+uint64(moved) {
		t.Errorf("StaleDropped = %d, want %d", got, stale+uint64(moved))
	}
	// The frontier waits for the first of a's events, now b's.
	first := got[0].Offset
	for _, e := range got {
		first = min(first, e.Offset)
	}
	want := first
	if first == 0 {
		want = -1
	}
	expectCommitted(t, h, b, 0, want)
	for _, o := range b.log[before:] { // what b got after a left
		if o.Batch != nil {
			c.delivered("b", o.Batch)
			b.okAll(o.Batch)
		}
	}
	h.waitCommitted("in", 0, 20)
}
