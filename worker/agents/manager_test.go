package agents_test

// Fakes and helpers for the manager's unit tests: an in-memory Consumer and
// Producer (the two narrow interfaces the manager needs from Kafka), a fake
// agent instance driven from the test, and a harness that runs the manager.
//
// Synchronisation: settle() is a barrier. Info is answered while the Run
// goroutine handles its inbox, before that round's dispatch; a second Info
// is taken in a later round, so once it returns, everything pushed before
// the first one was handled *and* dispatched. Time-driven work (retries,
// revoke deadlines, commit intervals, finalizing moves) is awaited with
// waitFor.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/testutil"
	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/transport"
)

// wait bounds every waitFor; generous for -race on a loaded machine.
const wait = 5 * time.Second

// The helpers these tests share with other packages (internal/testutil).
var (
	waitFor    = testutil.WaitFor[func() string]
	testLogger = testutil.QuietLogger
)

// tp names a partition in tests.
type tp struct {
	topic     string
	partition int32
}

func (k tp) String() string { return fmt.Sprintf("%s[%d]", k.topic, k.partition) }

func tpOf(p transport.TopicPartition) tp { return tp{p.Topic, p.Partition} }

func tps(topic string, parts ...int32) []transport.TopicPartition {
	out := make([]transport.TopicPartition, len(parts))
	for i, p := range parts {
		out[i] = transport.TopicPartition{Topic: topic, Partition: p}
	}
	return out
}

// msg builds a consumed record.
func msg(topic string, part int32, off int64, key, value string, hs ...transport.Header) *transport.Message {
	m := &transport.Message{
		Topic:     topic,
		Partition: part,
		Offset:    transport.Offset(off),
		Value:     []byte(value),
		Timestamp: time.Unix(1700000000, off*int64(time.Millisecond)),
		Headers:   hs,
	}
	if key != "" {
		m.Key = []byte(key)
	}
	return m
}

// --- Consumer fake ---

type fakeConsumer struct {
	mu        sync.Mutex
	paused    map[tp]bool
	log       []string // "pause in[0]", "resume in[0]"
	commits   [][]transport.PartitionOffset
	committed map[tp]int64
	commitErr error
	failNext  int                        // the next commits to fail with errCommitRefused
	assigned  []transport.TopicPartition // what Assignment reports
	problems  []string                   // commits that went backwards
	// resumeFail makes the next Resume calls fail.
	resumeFail int
}

// errCommitRefused is what a fake commit fails with (setFailNext).
var errCommitRefused = errors.New("fake: commit refused")

func newFakeConsumer() *fakeConsumer {
	return &fakeConsumer{paused: map[tp]bool{}, committed: map[tp]int64{}}
}

func (c *fakeConsumer) Pause(parts []transport.TopicPartition) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range parts {
		c.paused[tpOf(p)] = true
		c.log = append(c.log, "pause "+tpOf(p).String())
	}
	return nil
}

func (c *fakeConsumer) Resume(parts []transport.TopicPartition) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.resumeFail > 0 {
		c.resumeFail--
		return errors.New("fake: resume refused (a rebalance)")
	}
	for _, p := range parts {
		c.paused[tpOf(p)] = false
		c.log = append(c.log, "resume "+tpOf(p).String())
	}
	return nil
}

func (c *fakeConsumer) Commit(offsets []transport.PartitionOffset) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp := make([]transport.PartitionOffset, len(offsets))
	copy(cp, offsets)
	c.commits = append(c.commits, cp)
	if c.commitErr != nil {
		return c.commitErr
	}
	if c.failNext > 0 {
		c.failNext--
		return errCommitRefused
	}
	for _, o := range offsets {
		k := tp{o.Topic, o.Partition}
		if prev, ok := c.committed[k]; ok && int64(o.Offset) < prev {
			c.problems = append(c.problems, fmt.Sprintf("%s committed %d after %d", k, o.Offset, prev))
		}
		c.committed[k] = int64(o.Offset)
	}
	return nil
}

func (c *fakeConsumer) isPaused(topic string, part int32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paused[tp{topic, part}]
}

// committedAt returns the last successfully committed offset, or -1.
func (c *fakeConsumer) committedAt(topic string, part int32) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if off, ok := c.committed[tp{topic, part}]; ok {
		return off
	}
	return -1
}

func (c *fakeConsumer) commitCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.commits)
}

func (c *fakeConsumer) setCommitErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commitErr = err
}

// Assignment is what the test set with setAssignment.
func (c *fakeConsumer) Assignment() []transport.TopicPartition {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.assigned)
}

func (c *fakeConsumer) setAssignment(parts []transport.TopicPartition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.assigned = parts
}

// setFailNext makes the next n commits fail.
func (c *fakeConsumer) setFailNext(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failNext = n
}

func (c *fakeConsumer) pauseLog() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.log)
}

// --- Producer fake ---

type produceCall struct {
	rec    transport.Record
	onDone func(error)
	done   bool
}

// fakeProducer records every produce; the test acknowledges or fails each
// one. onDone runs on another goroutine, never inside Produce, as with the
// real producer.
type fakeProducer struct {
	mu    sync.Mutex
	calls []*produceCall
	auto  bool // acknowledge every produce as soon as it is made
	// fail, if set, answers auto-acknowledged produces: the error Kafka
	// would give the record, or nil.
	fail func(transport.Record) error
	next map[string]int64
	// purges counts PurgeQueued calls.
	purges int
}

// kafkaErr is a produce error as transport.Producer reports it: a
// kafka.Error with code, wrapped.
func kafkaErr(code kafka.ErrorCode) error {
	return fmt.Errorf("transport: produce to t[0]: %w", kafka.NewError(code, code.String(), false))
}

// PurgeQueued records the call; the fake queues nothing.
func (p *fakeProducer) PurgeQueued() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.purges++
}

func (p *fakeProducer) purgeCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.purges
}

func (p *fakeProducer) Produce(rec transport.Record, onDone func(error)) {
	p.mu.Lock()
	c := &produceCall{rec: rec, onDone: onDone}
	p.calls = append(p.calls, c)
	auto, fail := p.auto, p.fail
	if auto {
		c.done = true
	}
	p.mu.Unlock()
	if auto {
		var err error
		if fail != nil {
			err = fail(rec)
		}
		go onDone(err)
	}
}

// ProduceOffset is Produce reporting offsets counted per topic and
// partition from 0, in produce order.
func (p *fakeProducer) ProduceOffset(rec transport.Record, onDone func(int64, error)) {
	p.mu.Lock()
	if p.next == nil {
		p.next = map[string]int64{}
	}
	k := fmt.Sprintf("%s/%d", rec.Topic, rec.Partition)
	off := p.next[k]
	p.next[k]++
	p.mu.Unlock()
	p.Produce(rec, func(err error) {
		if err != nil {
			onDone(-1, err)
		} else {
			onDone(off, nil)
		}
	})
}

// skipOffsets makes the next n offsets of topic[partition] another
// writer's: ProduceOffset reports the records after them.
func (p *fakeProducer) skipOffsets(topic string, partition int32, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next == nil {
		p.next = map[string]int64{}
	}
	p.next[fmt.Sprintf("%s/%d", topic, partition)] += n
}

func (p *fakeProducer) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.calls)
}

func (p *fakeProducer) record(i int) transport.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[i].rec
}

// waitCalls waits until at least n records were produced.
func (p *fakeProducer) waitCalls(t *testing.T, n int) {
	t.Helper()
	waitFor(t, wait, func() string { return fmt.Sprintf("%d produced records (have %d)", n, p.len()) },
		func() bool { return p.len() >= n })
}

// answer acknowledges (err == nil) or fails produce i. It returns once
// onDone has returned, so the acknowledgement is in the manager's inbox.
func (p *fakeProducer) answer(t *testing.T, i int, err error) {
	t.Helper()
	p.mu.Lock()
	if i >= len(p.calls) {
		p.mu.Unlock()
		t.Fatalf("answer produce %d: only %d produced", i, len(p.calls))
	}
	c := p.calls[i]
	if c.done {
		p.mu.Unlock()
		t.Fatalf("produce %d answered twice", i)
	}
	c.done = true
	p.mu.Unlock()
	ran := make(chan struct{})
	go func() { c.onDone(err); close(ran) }()
	<-ran
}

// --- Harness ---

// agentCfg declares an agent; ordering "" is partition ordering.
func agentCfg(name, ordering string, maxRetries int, topics ...string) config.Agent {
	return config.Agent{Name: name, Topics: topics, Ordering: ordering, MaxRetries: &maxRetries}
}

// testConfig is a small, fast configuration with one partition-ordered
// agent "count" on topic "in".
func testConfig() agents.Config {
	return agents.Config{
		App:             "app",
		Agents:          []config.Agent{agentCfg("count", "", 3, "in")},
		Outputs:         []string{"out"},
		MaxBatchEvents:  100,
		BufferEvents:    1000,
		CommitInterval:  10 * time.Millisecond,
		RetryBackoffMin: 5 * time.Millisecond,
		RetryBackoffMax: 20 * time.Millisecond,
		RevokeTimeout:   200 * time.Millisecond,
		Logger:          testLogger(),
	}
}

type harness struct {
	t    *testing.T
	m    *agents.Manager
	cons *fakeConsumer
	prod *fakeProducer
	stop func() error // cancels Run and returns its error
}

// start runs a manager with cfg until the test ends.
func start(t *testing.T, cfg agents.Config) *harness {
	t.Helper()
	return startWith(t, cfg, &fakeProducer{}, nil)
}

// startWith is start with the producer given (and prod as the manager's
// producer when set: a fake wrapping p).
func startWith(t *testing.T, cfg agents.Config, p *fakeProducer, prod agents.Producer) *harness {
	t.Helper()
	return startWrapped(t, cfg, p, prod, nil)
}

// startWrapped is startWith with the manager's consumer wrap(h.cons) when
// wrap is set (a fake with more than fakeConsumer has).
func startWrapped(t *testing.T, cfg agents.Config, p *fakeProducer, prod agents.Producer, wrap func(*fakeConsumer) agents.Consumer) *harness {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	if prod == nil {
		prod = p
	}
	h := &harness{t: t, cons: newFakeConsumer(), prod: p}
	h.m = agents.New(cfg, prod)
	if wrap != nil {
		h.m.Attach(wrap(h.cons))
	} else {
		h.m.Attach(h.cons)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.m.Run(ctx) }()
	var once sync.Once
	var runErr error
	h.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(wait):
				runErr = errors.New("Run did not return after cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		h.cons.mu.Lock()
		defer h.cons.mu.Unlock()
		for _, p := range h.cons.problems {
			t.Errorf("commit went backwards: %s", p)
		}
	})
	return h
}

// settle returns once everything pushed to the manager before it was
// handled and dispatched.
func (h *harness) settle() {
	h.m.Info()
	h.m.Info()
	h.m.Quiesce() // commits run on a goroutine of their own
	h.m.Info()
}

func (h *harness) send(msgs ...*transport.Message) {
	for _, m := range msgs {
		h.m.Message(m)
	}
}

// sendRange sends records [from, to) of a partition with keys "k<off>".
func (h *harness) sendRange(topic string, part int32, from, to int64) {
	for off := from; off < to; off++ {
		h.m.Message(msg(topic, part, off, fmt.Sprintf("k%d", off), fmt.Sprintf("v%d", off)))
	}
}

func (h *harness) info(agent string) agents.AgentInfo {
	h.t.Helper()
	for _, ai := range h.m.Info() {
		if ai.Name == agent {
			return ai
		}
	}
	h.t.Fatalf("Info has no agent %q", agent)
	return agents.AgentInfo{}
}

// waitCommitted waits until the consumer committed exactly off.
func (h *harness) waitCommitted(topic string, part int32, off int64) {
	h.t.Helper()
	waitFor(h.t, wait, func() string {
		return fmt.Sprintf("%s[%d] committed at %d (is %d)", topic, part, off, h.cons.committedAt(topic, part))
	}, func() bool { return h.cons.committedAt(topic, part) == off })
}

// --- Fake agent instance ---

type fakeAgent struct {
	t        *testing.T
	h        *harness
	instance string
	s        *agents.Session
	w        agents.Welcome

	log       []agents.Outbound // everything received, in order
	batches   []*agents.Batch   // received, not yet taken by the test
	epoch     map[tp]uint64     // epoch of the latest Assign
	owned     map[tp]bool       // assigned and not revoked
	revokes   []agents.Revoke
	committed map[tp]int64        // latest Committed notice
	replies   []agents.StateReply // StateReplies received, not yet taken
}

func (h *harness) open(agent, instance string, credit uint32) *fakeAgent {
	h.t.Helper()
	return h.openHello(agents.Hello{Agent: agent, InstanceID: instance, ProtocolVersion: agents.ProtocolVersion, CreditEvents: credit})
}

func (h *harness) openHello(hello agents.Hello) *fakeAgent {
	h.t.Helper()
	s, w, err := h.m.Open(hello)
	if err != nil {
		h.t.Fatalf("Open(%+v): %v", hello, err)
	}
	return &fakeAgent{t: h.t, h: h, instance: hello.InstanceID, s: s, w: w,
		epoch: map[tp]uint64{}, owned: map[tp]bool{}, committed: map[tp]int64{}}
}

// pump reads everything queued in the outbox without blocking.
func (a *fakeAgent) pump() {
	for {
		select {
		case o := <-a.s.Outbox():
			a.record(o)
		default:
			return
		}
	}
}

func (a *fakeAgent) record(o agents.Outbound) {
	a.t.Helper()
	a.log = append(a.log, o)
	switch {
	case o.Assign != nil:
		k := tp{o.Assign.Topic, o.Assign.Partition}
		if o.Assign.Epoch <= a.epoch[k] {
			a.t.Errorf("%s: Assign %s epoch %d, not above the previous %d", a.instance, k, o.Assign.Epoch, a.epoch[k])
		}
		a.epoch[k] = o.Assign.Epoch
		a.owned[k] = true
	case o.Revoke != nil:
		k := tp{o.Revoke.Topic, o.Revoke.Partition}
		if o.Revoke.Epoch != a.epoch[k] {
			a.t.Errorf("%s: Revoke %s epoch %d, want the Assign's %d", a.instance, k, o.Revoke.Epoch, a.epoch[k])
		}
		a.owned[k] = false
		a.revokes = append(a.revokes, *o.Revoke)
	case o.Batch != nil:
		k := tp{o.Batch.Topic, o.Batch.Partition}
		if !a.owned[k] || o.Batch.Epoch != a.epoch[k] {
			a.t.Errorf("%s: batch for %s epoch %d, but owns=%v with epoch %d", a.instance, k, o.Batch.Epoch, a.owned[k], a.epoch[k])
		}
		if len(o.Batch.Events) == 0 {
			a.t.Errorf("%s: empty batch for %s", a.instance, k)
		}
		for i := 1; i < len(o.Batch.Events); i++ {
			if o.Batch.Events[i].Offset <= o.Batch.Events[i-1].Offset {
				a.t.Errorf("%s: batch for %s out of offset order: %v", a.instance, k, offsets(o.Batch))
			}
		}
		a.batches = append(a.batches, o.Batch)
	case o.Committed != nil:
		k := tp{o.Committed.Topic, o.Committed.Partition}
		if prev, ok := a.committed[k]; ok && o.Committed.Offset < prev {
			a.t.Errorf("%s: Committed %s went back from %d to %d", a.instance, k, prev, o.Committed.Offset)
		}
		a.committed[k] = o.Committed.Offset
	case o.StateReply != nil:
		a.replies = append(a.replies, *o.StateReply)
	default:
		a.t.Errorf("%s: empty Outbound", a.instance)
	}
}

// nextBatch waits for the next batch.
func (a *fakeAgent) nextBatch() *agents.Batch {
	a.t.Helper()
	waitFor(a.t, wait, func() string { return a.instance + " to receive a batch" }, func() bool {
		a.pump()
		return len(a.batches) > 0
	})
	b := a.batches[0]
	a.batches = a.batches[1:]
	return b
}

// takeBatches settles the manager and returns every batch received so far.
func (a *fakeAgent) takeBatches() []*agents.Batch {
	a.h.settle()
	a.pump()
	bs := a.batches
	a.batches = nil
	return bs
}

// takeEvents waits until n events arrived (over any batches) and returns
// them; it fails if more arrive.
func (a *fakeAgent) takeEvents(n int) []agents.Event {
	a.t.Helper()
	var got []agents.Event
	waitFor(a.t, wait, func() string { return fmt.Sprintf("%s to receive %d events (has %d)", a.instance, n, len(got)) }, func() bool {
		a.pump()
		for _, b := range a.batches {
			got = append(got, b.Events...)
		}
		a.batches = nil
		return len(got) >= n
	})
	if len(got) > n {
		a.t.Fatalf("%s received %d events, want %d", a.instance, len(got), n)
	}
	return got
}

// noBatch asserts nothing is delivered once the manager settled.
func (a *fakeAgent) noBatch() {
	a.t.Helper()
	if bs := a.takeBatches(); len(bs) > 0 {
		a.t.Fatalf("%s received %d unexpected batches, first: %s offsets %v", a.instance, len(bs),
			tp{bs[0].Topic, bs[0].Partition}, offsets(bs[0]))
	}
}

func (a *fakeAgent) ownedParts() []int32 {
	var ps []int32
	for k, ok := range a.owned {
		if ok {
			ps = append(ps, k.partition)
		}
	}
	slices.Sort(ps)
	return ps
}

// reply sends results for events of b.
func (a *fakeAgent) reply(b *agents.Batch, rs ...agents.Result) {
	a.s.Results(&agents.Results{Topic: b.Topic, Partition: b.Partition, Epoch: b.Epoch, Results: rs})
}

// okAll answers every event of b with OK.
func (a *fakeAgent) okAll(b *agents.Batch) {
	rs := make([]agents.Result, len(b.Events))
	for i, e := range b.Events {
		rs[i] = ok(e.Offset)
	}
	a.reply(b, rs...)
}

// waitDone waits until the manager ended the session and returns why.
func (a *fakeAgent) waitDone() error {
	a.t.Helper()
	select {
	case <-a.s.Done():
		return a.s.Err()
	case <-time.After(wait):
		a.t.Fatalf("session of %s did not end", a.instance)
		return nil
	}
}

func (a *fakeAgent) alive() bool {
	select {
	case <-a.s.Done():
		return false
	default:
		return true
	}
}

func ok(off int64, produced ...agents.Record) agents.Result {
	return agents.Result{Offset: off, Status: agents.StatusOK, Produced: produced}
}

func retry(off int64, why string) agents.Result {
	return agents.Result{Offset: off, Status: agents.StatusRetry, Error: why}
}

func deadLetter(off int64, why string) agents.Result {
	return agents.Result{Offset: off, Status: agents.StatusDeadLetter, Error: why}
}

func offsets(b *agents.Batch) []int64 {
	out := make([]int64, len(b.Events))
	for i, e := range b.Events {
		out[i] = e.Offset
	}
	return out
}

func eventOffsets(es []agents.Event) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.Offset
	}
	return out
}

func span(from, to int64) []int64 {
	var out []int64
	for o := from; o < to; o++ {
		out = append(out, o)
	}
	return out
}

func TestRunTwice(t *testing.T) {
	h := start(t, testConfig())
	h.settle()
	if err := h.m.Run(context.Background()); err == nil {
		t.Fatalf("second Run = nil, want an error")
	}
}
