package agents_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/transport"
)

// localFailTxnProducer is fakeTxnProducer, except that records localFail
// picks are refused the way librdkafka refuses a record at produce() time
// (e.g. MSG_SIZE_TOO_LARGE over message.max.bytes): transport.Producer
// calls the callback on a new goroutine and the record never joins the
// librdkafka transaction; transport then makes the transaction abort-only
// (CommitTxn aborts), which the fake does too.
type localFailTxnProducer struct {
	*fakeTxnProducer
	localFail func(transport.Record) bool
}

func (p *localFailTxnProducer) Produce(rec transport.Record, onDone func(error)) {
	p.ProduceOffset(rec, func(_ int64, err error) { onDone(err) })
}

func (p *localFailTxnProducer) ProduceOffset(rec transport.Record, onDone func(int64, error)) {
	if p.localFail != nil && p.localFail(rec) {
		p.mu.Lock()
		p.open().failed = true
		p.mu.Unlock()
		go func() {
			// no delay: goroutine scheduling vs. the committer
			onDone(-1, kafkaErr(kafka.ErrMsgSizeTooLarge))
		}()
		return
	}
	p.fakeTxnProducer.ProduceOffset(rec, onDone)
}

func (p *localFailTxnProducer) CommitTxn(ctx context.Context, o []transport.PartitionOffset, gm transport.GroupMetadata) error {
	return p.fakeTxnProducer.CommitTxn(ctx, o, gm)
}
func (p *localFailTxnProducer) AbortTxn(ctx context.Context) error {
	return p.fakeTxnProducer.AbortTxn(ctx)
}
func (p *localFailTxnProducer) ResetTxn(ctx context.Context) error {
	return p.fakeTxnProducer.ResetTxn(ctx)
}

// A record refused locally after the commit job was made: the commit
// succeeds and the offset past the event is committed without its output
// (nor a dead letter).
func TestEOSLocalFailureCommitted(t *testing.T) {
	cfg := testConfig()
	cfg.ExactlyOnce = true
	cfg.CommitEvery = 1 // commit in the same round as the hand-over
	cfg.CommitInterval = time.Hour
	tp := &localFailTxnProducer{fakeTxnProducer: newFakeTxnProducer(),
		localFail: func(r transport.Record) bool { return r.Topic == "out" && string(r.Value) == "huge" }}
	h := startWith(t, cfg, tp.fakeProducer, tp)
	tp.cons = h.cons
	h.m.Assigned(tps("in", 0))
	a := h.open("count", "a", 100)
	h.sendRange("in", 0, 0, 1)
	b := a.nextBatch()
	a.reply(b, ok(0, out("huge")))
	time.Sleep(300 * time.Millisecond)
	h.settle()
	committed := h.cons.committedAt("in", 0)
	var dlq int
	tp.mu.Lock()
	for _, x := range tp.txns {
		for _, c := range x.calls {
			if tp.fakeProducer.record(c).Topic == agents.DLQTopic("app", "count") && x.outcome == "committed" {
				dlq++
			}
		}
	}
	tp.mu.Unlock()
	if committed == 1 && dlq == 0 {
		t.Errorf("offset 1 committed, but the event's output was refused and no dead letter was committed: its effect is lost")
	}
	t.Logf("committed=%d dead letters committed=%d", committed, dlq)
}

// A DEAD_LETTER result whose dead letter Kafka refuses with its value: the
// poison mark is only consulted for OK results, so the event is
// dead-lettered with its value again on every redelivery and every
// transaction aborts.
func TestEOSDeadLetterRefusedLoops(t *testing.T) {
	h, tp := startEOS(t, testConfig())
	h.m.Assigned(tps("in", 0))
	a := h.open("count", "a", 100)
	h.sendRange("in", 0, 0, 1)
	tp.fakeProducer.mu.Lock()
	tp.fakeProducer.fail = func(r transport.Record) error {
		if strings.HasPrefix(r.Topic, "app") && r.Value != nil { // the DLQ refuses the full record
			return kafkaErr(kafka.ErrMsgSizeTooLarge)
		}
		return nil
	}
	tp.fakeProducer.mu.Unlock()
	epochs := map[uint64]bool{}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && h.cons.committedAt("in", 0) != 1 {
		a.pump()
		for _, x := range a.batches {
			if !epochs[x.Epoch] {
				epochs[x.Epoch] = true
				a.reply(x, deadLetter(0, "bad"))
			}
		}
		a.batches = nil
		time.Sleep(10 * time.Millisecond)
	}
	if h.cons.committedAt("in", 0) != 1 {
		t.Errorf("after %d deliveries answered DEAD_LETTER the offset is still not committed (dead letter without value never tried)", len(epochs))
	}
}

// Held writes count against InflightBytes, and they wait for an earlier
// event: when the earlier event must be delivered again (RETRY), dispatch
// refuses to deliver while over the cap, and nothing ever releases it.
func TestEOSHeldBytesDeadlock(t *testing.T) {
	for _, eos := range []bool{false, true} {
		t.Run(map[bool]string{false: "at_least_once", true: "exactly_once"}[eos], func(t *testing.T) {
			cfg := testConfig()
			cfg.InflightBytes = 4000
			var h *harness
			if eos {
				h, _ = startEOS(t, cfg)
			} else {
				h = startWith(t, cfg, &fakeProducer{auto: true}, nil)
			}
			h.m.Assigned(tps("in", 0))
			a := h.open("count", "a", 100)
			h.sendRange("in", 0, 0, 3)
			b := a.nextBatch()
			big := string(make([]byte, 3000))
			a.reply(b, retry(0, "later"), ok(1, out("1"+big)), ok(2, out("2"+big)))
			var again *agents.Batch
			waitFor(t, 2*time.Second, func() string { return "redelivery of offset 0" }, func() bool {
				a.pump()
				for _, x := range a.batches {
					if slices.Contains(offsets(x), 0) {
						again = x
					}
				}
				return again != nil
			})
		})
	}
}

// A partition assigned again while its revoke is under way: writes the old
// assignment hands over after the supersede go into a transaction that is
// committed without the old assignment's offset; the new assignment
// processes the events again.
func TestEOSSupersededCommitsWrites(t *testing.T) {
	cfg := testConfig()
	cfg.CommitEvery = 1
	cfg.CommitInterval = time.Hour
	cfg.RevokeTimeout = 2 * time.Second
	h, tp := startEOS(t, cfg)
	h.m.Assigned(tps("in", 0))
	a := h.open("count", "a", 100)
	h.sendRange("in", 0, 0, 1)
	b := a.nextBatch()
	go h.m.Revoked(tps("in", 0))
	waitFor(t, wait, func() string { return "revoke" }, func() bool { a.pump(); return len(a.revokes) > 0 })
	a.reply(b, ok(0, out("o0")))
	h.m.Assigned(tps("in", 0)) // same inbox round as the result, with luck
	time.Sleep(200 * time.Millisecond)
	h.settle()
	i, outcome := tp.txnOf("o0")
	var offs []transport.PartitionOffset
	if i >= 0 {
		tp.mu.Lock()
		offs = tp.txns[i].offsets
		tp.mu.Unlock()
	}
	t.Logf("o0 in txn %d (%s) with offsets %v; committed in[0]=%d", i, outcome, offs, h.cons.committedAt("in", 0))
	if outcome == "committed" && len(offs) == 0 {
		t.Errorf("o0 committed in a transaction without in[0]'s offset: the new assignment processes offset 0 again")
	}
}

// Assigned again without a revoke (supersede's own lost-like leave): the
// idle-commit rule fires in the same round (the new assignment has nothing
// buffered, so the worker looks caught up) and commits the old
// assignment's handed-over output without its offset.
func TestEOSSupersedeIdleCommit(t *testing.T) {
	cfg := testConfig()
	cfg.CommitInterval = time.Hour
	h, tp := startEOS(t, cfg)
	h.m.Assigned(tps("in", 0))
	a := h.open("count", "a", 100)
	h.sendRange("in", 0, 0, 2)
	b := a.nextBatch()
	a.reply(b, ok(0, out("o0"))) // 1 stays with the agent: not caught up
	h.m.Info()
	time.Sleep(100 * time.Millisecond) // past idleCommitGap
	h.m.Assigned(tps("in", 0))
	time.Sleep(100 * time.Millisecond)
	h.settle()
	i, outcome := tp.txnOf("o0")
	var offs []transport.PartitionOffset
	if i >= 0 {
		tp.mu.Lock()
		offs = tp.txns[i].offsets
		tp.mu.Unlock()
	}
	t.Logf("o0 in txn %d (%s) with offsets %v; committed in[0]=%d", i, outcome, offs, h.cons.committedAt("in", 0))
	if outcome == "committed" && len(offs) == 0 {
		t.Errorf("o0 committed in a transaction without in[0]'s offset: the new assignment processes offset 0 again")
	}
}

// stuckTxnProducer is fakeTxnProducer whose Produce of records stuck picks
// waits, as transport.Producer does while librdkafka's queue is full, until
// the record's Allowed says no (then ErrWithheld).
type stuckTxnProducer struct {
	*fakeTxnProducer
	stuck func(transport.Record) bool
}

func (p *stuckTxnProducer) Produce(rec transport.Record, onDone func(error)) {
	p.ProduceOffset(rec, func(_ int64, err error) { onDone(err) })
}

func (p *stuckTxnProducer) ProduceOffset(rec transport.Record, onDone func(int64, error)) {
	if p.stuck != nil && p.stuck(rec) {
		for rec.Allowed == nil || rec.Allowed() {
			time.Sleep(5 * time.Millisecond) // transport.Producer waits for room like this (50 ms)
		}
		go onDone(-1, transport.ErrWithheld)
		return
	}
	p.fakeTxnProducer.ProduceOffset(rec, onDone)
}

// TestEOSStuckProducerAborts: the producer goroutine stuck handing a record
// over (librdkafka's queue stays full while the transaction is in error)
// kept the commit waiting for ever (the fault suite's group churn stalled
// every partition of a worker). Past the message timeout the commit aborts
// instead; the stuck record is withheld, not handed to the next
// transaction, and the event is processed again and committed once.
func TestEOSStuckProducerAborts(t *testing.T) {
	cfg := testConfig()
	cfg.ExactlyOnce = true
	cfg.MessageTimeout = 300 * time.Millisecond
	once := true
	var mu sync.Mutex
	tp := &stuckTxnProducer{fakeTxnProducer: newFakeTxnProducer(), stuck: func(r transport.Record) bool {
		mu.Lock()
		defer mu.Unlock()
		if string(r.Value) == "o0" && once {
			once = false
			return true
		}
		return false
	}}
	h := startWith(t, cfg, tp.fakeProducer, tp)
	tp.cons = h.cons
	h.m.Assigned(tps("in", 0))
	a := h.open("count", "a", 100)
	h.sendRange("in", 0, 0, 1)
	b := a.nextBatch()
	a.reply(b, ok(0, out("o0")))
	var again *agents.Batch
	waitFor(t, wait, func() string { return "redelivery after the abort" }, func() bool {
		a.pump()
		for _, x := range a.batches {
			if x.Epoch != b.Epoch {
				again = x
			}
		}
		return again != nil
	})
	a.reply(again, ok(0, out("o0")))
	h.waitCommitted("in", 0, 1)
	if got := tp.committedValues()["o0"]; got != 1 {
		t.Errorf("o0 in committed transactions %d times, want 1", got)
	}
	if n := h.m.InflightBytes(); n != 0 {
		t.Errorf("InflightBytes %d after everything committed, want 0", n)
	}
}

// TestEOSHeldBytesNeverNegative: a partition that leaves with held (never
// handed over) outputs releases nothing for them (they were never held).
func TestEOSHeldBytesNeverNegative(t *testing.T) {
	cfg := testConfig()
	cfg.Agents[0].Ordering = "key"
	h, _ := startEOS(t, cfg)
	h.m.Assigned(tps("in", 0))
	a := h.open("count", "a", 100)
	h.send(msg("in", 0, 0, "k0", "v0"), msg("in", 0, 1, "k1", "v1"))
	a.takeEvents(2)
	b := a.log[len(a.log)-1].Batch
	a.reply(b, ok(1, out("held-behind-0")))
	h.settle()
	h.m.Lost(tps("in", 0))
	h.settle()
	if n := h.m.InflightBytes(); n != 0 {
		t.Errorf("InflightBytes %d after the partition left, want 0", n)
	}
}
