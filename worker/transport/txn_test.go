package transport_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/worker/transport"
)

func txnConfig(t *testing.T) transport.Config {
	cfg := testConfig(t)
	cfg.TransactionalID = "txn-" + kafkatest.Group(t)
	cfg.TransactionTimeout = 10 * time.Second
	return cfg
}

// produceAll produces one record per value to topic[0] and waits for the
// callbacks; it returns their errors.
func produceAll(t *testing.T, p *transport.Producer, topic string, values ...string) []error {
	t.Helper()
	return produceAllTo(t, p, topic, 0, values...)
}

// produceAllTo is produceAll to a partition of topic.
func produceAllTo(t *testing.T, p *transport.Producer, topic string, partition int32, values ...string) []error {
	t.Helper()
	var mu sync.Mutex
	errs := make([]error, len(values))
	n := 0
	for i, v := range values {
		p.Produce(transport.Record{Topic: topic, Partition: partition, Value: []byte(v)}, func(err error) {
			mu.Lock()
			defer mu.Unlock()
			errs[i] = err
			n++
		})
	}
	waitFor(t, waitTimeout, func() string { return "produce callbacks" }, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return n == len(values)
	})
	return errs
}

func committedValues(t *testing.T, topic string) []string {
	var out []string
	for _, r := range kafkatest.ReadAll(t, topic, 1, true) {
		out = append(out, string(r.Value))
	}
	return out
}

// TestTxnCommitAndAbort: a read_committed reader sees the records of
// committed transactions and none of an aborted one.
func TestTxnCommitAndAbort(t *testing.T) {
	topic := kafkatest.Topic(t, 1)
	p := newProducer(t, txnConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	produceAll(t, p, topic, "a", "b")
	if err := p.CommitTxn(ctx, nil, transport.GroupMetadata{}); err != nil {
		t.Fatalf("CommitTxn: %v", err)
	}
	produceAll(t, p, topic, "x", "y")
	if err := p.AbortTxn(ctx); err != nil {
		t.Fatalf("AbortTxn: %v", err)
	}
	produceAll(t, p, topic, "c")
	if err := p.CommitTxn(ctx, nil, transport.GroupMetadata{}); err != nil {
		t.Fatalf("CommitTxn: %v", err)
	}
	if got, want := committedValues(t, topic), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("read_committed: got %q, want %q", got, want)
	}
	if got := len(kafkatest.ReadAll(t, topic, 1, false)); got != 5 {
		t.Errorf("read_uncommitted: got %d records, want 5 (the aborted ones too)", got)
	}
}

// TestTxnFencedThenReset: a second producer with the same transactional id
// fences the first, whose commit fails with ErrTxnFatal and whose records
// are never visible; ResetTxn makes it usable again (fencing the second).
func TestTxnFencedThenReset(t *testing.T) {
	topic := kafkatest.Topic(t, 1)
	cfg := txnConfig(t)
	p1 := newProducer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	produceAll(t, p1, topic, "zombie")
	p2 := newProducer(t, cfg) // fences p1 and aborts its open transaction
	produceAll(t, p2, topic, "two")
	if err := p2.CommitTxn(ctx, nil, transport.GroupMetadata{}); err != nil {
		t.Fatalf("p2 CommitTxn: %v", err)
	}
	err := p1.CommitTxn(ctx, nil, transport.GroupMetadata{})
	if !errors.Is(err, transport.ErrTxnFatal) {
		t.Fatalf("fenced p1 CommitTxn: got %v, want ErrTxnFatal", err)
	}
	if errs := produceAll(t, p1, topic, "refused"); !errors.Is(errs[0], transport.ErrTxnFatal) {
		t.Errorf("produce on the fenced p1: got %v, want ErrTxnFatal", errs[0])
	}
	if err := p1.ResetTxn(ctx); err != nil {
		t.Fatalf("ResetTxn: %v", err)
	}
	if errs := produceAll(t, p1, topic, "one"); errs[0] != nil {
		t.Fatalf("produce after ResetTxn: %v", errs[0])
	}
	if err := p1.CommitTxn(ctx, nil, transport.GroupMetadata{}); err != nil {
		t.Fatalf("CommitTxn after ResetTxn: %v", err)
	}
	if got, want := committedValues(t, topic), []string{"two", "one"}; !slices.Equal(got, want) {
		t.Errorf("read_committed: got %q, want %q", got, want)
	}
}

// consumedInput writes n records to a new one-partition topic and returns
// it with a read_committed consumer in a group of its own that consumed
// them (a member owning the partition), and the consumer's config.
func consumedInput(t *testing.T, n int) (string, transport.Config, *transport.Consumer) {
	t.Helper()
	in := kafkatest.Topic(t, 1)
	produceN(t, testConfig(t), in, n)
	ccfg := testConfig(t)
	ccfg.GroupID = kafkatest.Group(t)
	ccfg.IsolationLevel = transport.ReadCommitted
	rec := newRecorder()
	c, err := transport.NewConsumer(ccfg, []string{in}, rec, transport.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	runConsumer(t, c)
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("%d records consumed", n) }, func() bool { return rec.messages() == n })
	return in, ccfg, c
}

// TestTxnOffsetsCommitWithRecords: the offsets sent with a transaction are
// the group's committed offsets once it commits, and not before.
func TestTxnOffsetsCommitWithRecords(t *testing.T) {
	out := kafkatest.Topic(t, 1)
	in, ccfg, c := consumedInput(t, 3)
	p := newProducer(t, txnConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	produceAll(t, p, out, "result")
	gm, err := c.GroupMetadata()
	if err != nil {
		t.Fatalf("GroupMetadata: %v", err)
	}
	if err := p.CommitTxn(ctx, []transport.PartitionOffset{{Topic: in, Partition: 0, Offset: 3}}, gm); err != nil {
		t.Fatalf("CommitTxn: %v", err)
	}
	if got := kafkatest.CommittedOffsets(t, ccfg.GroupID, in, 1); fmt.Sprint(got) != "map[0:3]" {
		t.Errorf("committed offsets: got %v, want map[0:3]", got)
	}
	if got := committedValues(t, out); !slices.Equal(got, []string{"result"}) {
		t.Errorf("output: got %q, want [result]", got)
	}
}

// TestUnfencedOffsetsAccepted is why Consumer.GroupMetadata refuses to
// hand out metadata without a generation or member id (ErrNotMember): the
// group coordinator takes transactional offsets sent with such metadata
// without any check, even for a partition a current member of the group
// owns. A worker whose consumer lost its assignment (and so its member id)
// would commit offsets, and its outputs, for partitions another worker
// already processes: duplicates, and committed offsets moved under the
// owner's feet.
func TestUnfencedOffsetsAccepted(t *testing.T) {
	in, ccfg, c := consumedInput(t, 5)
	gm, err := c.GroupMetadata()
	if err != nil {
		t.Fatalf("GroupMetadata of a member: %v", err)
	}
	if gen, member, known := gm.Member(); !known || gen < 1 || member == "" {
		t.Errorf("a member's metadata: generation %d, member id %q, known %v; want a generation and a member id", gen, member, known)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	p := newProducer(t, txnConfig(t))
	if err := p.CommitTxn(ctx, []transport.PartitionOffset{{Topic: in, Partition: 0, Offset: 5}}, gm); err != nil {
		t.Fatalf("CommitTxn as the member: %v", err)
	}
	unfenced, err := transport.UnfencedGroupMetadata(ccfg.GroupID)
	if err != nil {
		t.Fatal(err)
	}
	// Another producer, not a member, moves the member's committed offset
	// back: accepted.
	q := newProducer(t, txnConfig(t))
	if err := q.CommitTxn(ctx, []transport.PartitionOffset{{Topic: in, Partition: 0, Offset: 2}}, unfenced); err != nil {
		t.Fatalf("CommitTxn without membership: %v (the broker refused it: then the guard is not needed)", err)
	}
	if got := kafkatest.CommittedOffsets(t, ccfg.GroupID, in, 1); fmt.Sprint(got) != "map[0:2]" {
		t.Errorf("committed offsets after the unfenced commit: got %v, want map[0:2] (the broker took it)", got)
	}
}

// TestTxnLocalRefusalAborts: a record librdkafka refuses at produce time
// (larger than message.max.bytes) never joins the transaction, so the
// transaction must not commit without it: CommitTxn aborts, and the
// records produced with it are not visible.
func TestTxnLocalRefusalAborts(t *testing.T) {
	topic := kafkatest.Topic(t, 1)
	p := newProducer(t, txnConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	produceAll(t, p, topic, "with-the-big-one")
	var mu sync.Mutex
	var bigErr error
	done := make(chan struct{})
	p.Produce(transport.Record{Topic: topic, Partition: 0, Value: make([]byte, transport.MaxMessageBytes+1)}, func(err error) {
		mu.Lock()
		bigErr = err
		mu.Unlock()
		close(done)
	})
	<-done
	if bigErr == nil {
		t.Fatal("a record above message.max.bytes was accepted")
	}
	err := p.CommitTxn(ctx, nil, transport.GroupMetadata{})
	if !errors.Is(err, transport.ErrTxnAborted) {
		t.Fatalf("CommitTxn after a refused record: got %v, want ErrTxnAborted", err)
	}
	produceAll(t, p, topic, "next")
	if err := p.CommitTxn(ctx, nil, transport.GroupMetadata{}); err != nil {
		t.Fatalf("CommitTxn of the next transaction: %v", err)
	}
	if got := committedValues(t, topic); !slices.Equal(got, []string{"next"}) {
		t.Errorf("read_committed: got %q, want [next]", got)
	}
}

// TestChangelogEndWaitsForAnOpenTransaction: at read_committed a
// partition's end is its last stable offset, which an open transaction
// holds back while other writers' transactions commit after it (a killed
// worker's, with another transactional id than its successor's, stays open
// until the broker aborts it). A restore to that end missed the committed
// records after it, and a table went backwards (the fault suite's
// scenario 7 under exactly_once). Watermarks waits for the open
// transaction to end.
func TestChangelogEndWaitsForAnOpenTransaction(t *testing.T) {
	topic := kafkatest.Topic(t, 1)
	open := newProducer(t, txnConfig(t))
	if errs := produceAll(t, open, topic, "open"); errs[0] != nil {
		t.Fatal(errs[0])
	}
	later := newProducer(t, txnConfig(t))
	if errs := produceAll(t, later, topic, "c1", "c2"); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := later.CommitTxn(ctx, nil, transport.GroupMetadata{}); err != nil {
		t.Fatal(err)
	}
	rcfg := testConfig(t)
	rcfg.IsolationLevel = transport.ReadCommitted
	r := newReader(t, rcfg)
	type end struct {
		high int64
		err  error
		at   time.Time
	}
	got := make(chan end, 1)
	go func() {
		_, high, err := r.Watermarks(ctx, topic, 0)
		got <- end{high, err, time.Now()}
	}()
	select {
	case e := <-got:
		t.Fatalf("Watermarks returned %d (%v) while a transaction was open before committed records", e.high, e.err)
	case <-time.After(2 * time.Second):
	}
	aborted := time.Now()
	if err := open.AbortTxn(ctx); err != nil {
		t.Fatal(err)
	}
	e := <-got
	if e.err != nil {
		t.Fatal(e.err)
	}
	// open@0 (aborted), c1@1, c2@2, the later transaction's marker @3,
	// the abort marker @4.
	if e.high < 3 || e.at.Before(aborted) {
		t.Errorf("end %d at %s (abort at %s), want past the committed records (>= 3), after the abort", e.high, e.at, aborted)
	}
}
