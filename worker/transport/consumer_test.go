package transport_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/worker/transport"
)

func newConsumer(t testing.TB, cfg transport.Config, topic string, h transport.Handler) *transport.Consumer {
	t.Helper()
	c, err := transport.NewConsumer(cfg, []string{topic}, h, transport.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	return c
}

// committed reads the group's committed offsets for topic with a client
// that is not the code under test.
func committed(t testing.TB, group, topic string, partitions int) []int64 {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(t),
		"group.id":          group,
	})
	if err != nil {
		t.Fatalf("verifier consumer: %v", err)
	}
	defer c.Close()
	var tps []kafka.TopicPartition
	for p := range partitions {
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: int32(p)})
	}
	res, err := c.Committed(tps, 10000)
	if err != nil {
		t.Fatalf("Committed: %v", err)
	}
	out := make([]int64, partitions)
	for _, r := range res {
		out[r.Partition] = int64(r.Offset)
	}
	return out
}

func TestConsumeCommitResume(t *testing.T) {
	const n, parts, resumeAt = 1000, 3, 100
	topic := kafkatest.Topic(t, parts)
	group := kafkatest.Group(t)
	cfg := testConfig(t)
	cfg.GroupID = group
	produceN(t, cfg, topic, n)

	// First member: gets everything, from offset 0.
	rec1 := newRecorder()
	c1 := newConsumer(t, cfg, topic, rec1)
	if err := c1.Commit([]transport.PartitionOffset{{Topic: topic, Partition: 0, Offset: 1}}); !errors.Is(err, transport.ErrNotRunning) {
		t.Errorf("Commit before Run = %v, want ErrNotRunning", err)
	}
	stop1 := runConsumer(t, c1)
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("%d of %d records", rec1.messages(), n) },
		func() bool { return rec1.messages() == n })
	rec1.mu.Lock()
	if got := partitionsOf(rec1.assigned); len(got) != parts {
		t.Errorf("Assigned partitions %v, want all %d", got, parts)
	}
	for p, offs := range rec1.msgs {
		if !slices.IsSorted(offs) || offs[0] != 0 || offs[len(offs)-1] != int64(len(offs)-1) {
			t.Errorf("partition %d: offsets not 0..%d in order", p, len(offs)-1)
		}
	}
	rec1.mu.Unlock()
	if got := c1.Assignment(); len(got) != parts {
		t.Errorf("Assignment() = %v, want %d partitions", got, parts)
	}

	// Commit offset resumeAt on every partition: the next member of the
	// group must start there.
	var offsets []transport.PartitionOffset
	for p := range parts {
		offsets = append(offsets, transport.PartitionOffset{Topic: topic, Partition: int32(p), Offset: resumeAt})
	}
	if err := c1.Commit(offsets); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if got := committed(t, group, topic, parts); !slices.Equal(got, []int64{resumeAt, resumeAt, resumeAt}) {
		t.Fatalf("committed offsets = %v, want %d each", got, resumeAt)
	}
	if err := stop1(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	rec1.mu.Lock()
	if got := partitionsOf(rec1.revoked); len(got) != parts {
		t.Errorf("after Run returned, Revoked partitions %v, want all %d", got, parts)
	}
	rec1.mu.Unlock()
	if got := c1.Assignment(); len(got) != 0 {
		t.Errorf("Assignment() after Run = %v, want empty", got)
	}
	if err := c1.Commit(offsets); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Commit after Run = %v, want ErrClosed", err)
	}
	if err := c1.Run(context.Background()); !errors.Is(err, transport.ErrAlreadyRunning) {
		t.Errorf("second Run = %v, want ErrAlreadyRunning", err)
	}

	// Second member, same group: resumes at resumeAt.
	rec2 := newRecorder()
	c2 := newConsumer(t, cfg, topic, rec2)
	runConsumer(t, c2)
	want := 0
	rec1.mu.Lock()
	for _, offs := range rec1.msgs {
		want += max(len(offs)-resumeAt, 0)
	}
	rec1.mu.Unlock()
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("%d of %d records", rec2.messages(), want) },
		func() bool { return rec2.messages() >= want })
	rec2.mu.Lock()
	defer rec2.mu.Unlock()
	if rec2.count != want {
		t.Errorf("second member got %d records, want %d", rec2.count, want)
	}
	for p, offs := range rec2.msgs {
		if offs[0] != resumeAt {
			t.Errorf("partition %d: second member started at offset %d, want %d", p, offs[0], resumeAt)
		}
	}
}

func TestCommitRefusesUnassigned(t *testing.T) {
	topic := kafkatest.Topic(t, 1)
	cfg := testConfig(t)
	cfg.GroupID = kafkatest.Group(t)
	rec := newRecorder()
	c := newConsumer(t, cfg, topic, rec)
	runConsumer(t, c)
	waitFor(t, waitTimeout, func() string { return "assignment" }, func() bool { return len(c.Assignment()) == 1 })

	other := "not-mine"
	err := c.Commit([]transport.PartitionOffset{
		{Topic: topic, Partition: 0, Offset: 0},
		{Topic: other, Partition: 3, Offset: 7},
	})
	if !errors.Is(err, transport.ErrNotAssigned) {
		t.Fatalf("Commit with an unassigned partition = %v, want ErrNotAssigned", err)
	}
	var na *transport.NotAssignedError
	if !errors.As(err, &na) || len(na.Offsets) != 1 || na.Offsets[0].Topic != other {
		t.Errorf("NotAssignedError = %+v, want exactly %s[3]", na, other)
	}
}

// TestCommitInRevoked commits from inside Handler.Revoked at shutdown: the
// partitions are still assigned then, so the commit must succeed.
func TestCommitInRevoked(t *testing.T) {
	topic := kafkatest.Topic(t, 2)
	group := kafkatest.Group(t)
	cfg := testConfig(t)
	cfg.GroupID = group
	produceN(t, cfg, topic, 10)

	rec := newRecorder()
	c := newConsumer(t, cfg, topic, rec)
	var commitErr error
	rec.onRevoked = func(parts []transport.TopicPartition) {
		var offs []transport.PartitionOffset
		for _, p := range parts {
			offs = append(offs, transport.PartitionOffset{Topic: p.Topic, Partition: p.Partition, Offset: 1})
		}
		commitErr = errors.Join(commitErr, c.Commit(offs))
	}
	stop := runConsumer(t, c)
	waitFor(t, waitTimeout, func() string { return "10 records" }, func() bool { return rec.messages() == 10 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if commitErr != nil {
		t.Fatalf("Commit inside Revoked: %v", commitErr)
	}
	if got := committed(t, group, topic, 2); !slices.Equal(got, []int64{1, 1}) {
		t.Errorf("committed offsets = %v, want [1 1]", got)
	}
}

func TestPauseResume(t *testing.T) {
	topic := kafkatest.Topic(t, 2)
	cfg := testConfig(t)
	cfg.GroupID = kafkatest.Group(t)

	rec := newRecorder()
	c := newConsumer(t, cfg, topic, rec)
	p0 := []transport.TopicPartition{{Topic: topic, Partition: 0}}
	// Hold partition 0 back from the start, as the owner does while a
	// partition's table state recovers.
	paused := make(chan error, 1)
	rec.onAssigned = func(parts []transport.TopicPartition) {
		for _, p := range parts {
			if p.Partition == 0 {
				paused <- c.Pause(p0)
			}
		}
	}
	runConsumer(t, c)
	select {
	case err := <-paused:
		if err != nil {
			t.Fatalf("Pause inside Assigned: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("partition 0 was never assigned")
	}
	waitFor(t, waitTimeout, func() string { return "assignment" }, func() bool { return len(c.Assignment()) == 2 })

	p := newProducer(t, cfg)
	for i := range 20 {
		p.Produce(transport.Record{Topic: topic, Partition: int32(i % 2), Value: []byte("x")}, nil)
	}
	// Partition 1's records arrive; partition 0's do not.
	waitFor(t, waitTimeout, func() string { return "partition 1 records" }, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.msgs[1]) == 10
	})
	rec.mu.Lock()
	if got := len(rec.msgs[0]); got != 0 {
		t.Errorf("paused partition 0 delivered %d records", got)
	}
	rec.mu.Unlock()

	if err := c.Resume(p0); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	waitFor(t, waitTimeout, func() string { return "partition 0 records after Resume" }, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.msgs[0]) == 10
	})
}

// TestPauseDoesNotSurviveRevocation: a partition paused while it was
// revoked (as the worker pauses a leaving partition while it drains), and
// paused again once it was gone (a late pause of a leaving partition), is
// fetched when it is assigned again. librdkafka keeps an application pause
// on its partition object across unassign and assign, so without a resume
// at assignment the partition came back paused and fetched nothing, with
// nothing left to resume it (the exactly-once stall under churn).
func TestPauseDoesNotSurviveRevocation(t *testing.T) {
	const parts = 2
	topic := kafkatest.Topic(t, parts)
	cfg := testConfig(t)
	cfg.GroupID = kafkatest.Group(t)

	recA := newRecorder()
	a := newConsumer(t, cfg, topic, recA)
	revokedA := make(chan []transport.TopicPartition, 1)
	recA.onRevoked = func(ps []transport.TopicPartition) {
		if err := a.Pause(ps); err != nil {
			t.Errorf("Pause inside Revoked: %v", err)
		}
		revokedA <- ps
	}
	runConsumer(t, a)
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("A assigned all, has %v", a.Assignment()) },
		func() bool { return len(a.Assignment()) == parts })

	cfgB := cfg
	cfgB.ClientID += "-b"
	b := newConsumer(t, cfgB, topic, newRecorder())
	stopB := runConsumer(t, b)
	var moved []transport.TopicPartition
	select {
	case moved = <-revokedA:
	case <-time.After(waitTimeout):
		t.Fatal("B joined and A had nothing revoked")
	}
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("B has %v", b.Assignment()) },
		func() bool { return len(b.Assignment()) == len(moved) })
	if err := a.Pause(moved); err != nil { // gone from A: a late pause
		t.Fatalf("Pause after revocation: %v", err)
	}
	if err := stopB(); err != nil {
		t.Fatalf("B Run: %v", err)
	}
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("A takes all back, has %v", a.Assignment()) },
		func() bool { return len(a.Assignment()) == parts })

	p := newProducer(t, cfg)
	for i := range 20 {
		p.Produce(transport.Record{Topic: topic, Partition: int32(i % parts), Value: []byte("x")}, nil)
	}
	for _, tp := range moved {
		waitFor(t, waitTimeout, func() string {
			return fmt.Sprintf("records of partition %d, assigned to A again, without a Resume", tp.Partition)
		}, func() bool {
			recA.mu.Lock()
			defer recA.mu.Unlock()
			return len(recA.msgs[tp.Partition]) == 20/parts
		})
	}
}

// TestTwoConsumersSplit checks cooperative rebalancing: a second member
// takes over some partitions, the first keeps the rest without having them
// revoked, and when the second leaves the first gets them back.
func TestTwoConsumersSplit(t *testing.T) {
	const parts = 4
	topic := kafkatest.Topic(t, parts)
	cfg := testConfig(t)
	cfg.GroupID = kafkatest.Group(t)

	recA := newRecorder()
	a := newConsumer(t, cfg, topic, recA)
	runConsumer(t, a)
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("A assigned all, has %v", a.Assignment()) },
		func() bool { return len(a.Assignment()) == parts })

	cfgB := cfg
	cfgB.ClientID += "-b"
	recB := newRecorder()
	b := newConsumer(t, cfgB, topic, recB)
	stopB := runConsumer(t, b)
	waitFor(t, waitTimeout, func() string {
		return fmt.Sprintf("a split; A has %v, B has %v", a.Assignment(), b.Assignment())
	}, func() bool {
		na, nb := len(a.Assignment()), len(b.Assignment())
		// The handler hears of an assignment just after Assignment
		// shows it.
		recB.mu.Lock()
		told := len(partitionsOf(recB.assigned)) == nb
		recB.mu.Unlock()
		return na > 0 && nb > 0 && na+nb == parts && told
	})

	seen := map[int32]bool{}
	for _, tp := range append(a.Assignment(), b.Assignment()...) {
		if seen[tp.Partition] {
			t.Errorf("partition %d assigned to both members", tp.Partition)
		}
		seen[tp.Partition] = true
	}
	recA.mu.Lock()
	revokedA := partitionsOf(recA.revoked)
	recA.mu.Unlock()
	recB.mu.Lock()
	assignedB := partitionsOf(recB.assigned)
	recB.mu.Unlock()
	slices.Sort(revokedA)
	slices.Sort(assignedB)
	if !slices.Equal(revokedA, assignedB) {
		t.Errorf("A had %v revoked, B was assigned %v; want the same (cooperative: only moved partitions are revoked)", revokedA, assignedB)
	}
	for _, tp := range a.Assignment() {
		if slices.Contains(revokedA, tp.Partition) {
			t.Errorf("A kept partition %d but had it revoked", tp.Partition)
		}
	}

	// B leaves: A gets everything back, B's Revoked covers what it had.
	if err := stopB(); err != nil {
		t.Fatalf("B Run: %v", err)
	}
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("A takes all back, has %v", a.Assignment()) },
		func() bool { return len(a.Assignment()) == parts })
	recB.mu.Lock()
	revokedB := partitionsOf(recB.revoked)
	recB.mu.Unlock()
	slices.Sort(revokedB)
	if !slices.Equal(revokedB, assignedB) {
		t.Errorf("B had %v revoked at shutdown, want %v", revokedB, assignedB)
	}
	recA.mu.Lock()
	if len(recA.lost) != 0 || len(recB.lost) != 0 {
		t.Errorf("Lost called (A %v, B %v), want never", recA.lost, recB.lost)
	}
	recA.mu.Unlock()
}

// keeper is a transport.Handler that keeps a copy of every record.
type keeper struct {
	mu   sync.Mutex
	msgs []transport.Message
}

func (k *keeper) Assigned([]transport.TopicPartition) {}
func (k *keeper) Revoked([]transport.TopicPartition)  {}
func (k *keeper) Lost([]transport.TopicPartition)     {}
func (k *keeper) Message(m *transport.Message) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.msgs = append(k.msgs, *m) // m itself is reused: keep a copy
}

func (k *keeper) kept() []transport.Message {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.msgs)
}

// TestMessageFields checks what Handler.Message gets: every field of the
// record, headers in order (nil without any), and Key, Value and Headers
// that stay the handler's after later records arrived.
func TestMessageFields(t *testing.T) {
	topic := kafkatest.Topic(t, 2)
	cfg := testConfig(t)
	cfg.GroupID = kafkatest.Group(t)
	ts := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	p := newProducer(t, cfg)
	recs := []transport.Record{
		{Topic: topic, Partition: 1, Key: []byte("k0"), Value: []byte("v0"), Timestamp: ts,
			Headers: []transport.Header{{Key: "a", Value: []byte("1")}, {Key: "b"}, {Key: "a", Value: []byte("2")}}},
		{Topic: topic, Partition: 1, Value: []byte("v1"), Timestamp: ts.Add(time.Millisecond)},
		{Topic: topic, Partition: 1, Key: []byte("k2"), Value: []byte("v2"), Timestamp: ts.Add(2 * time.Millisecond)},
	}
	for _, r := range recs {
		done := make(chan error, 1)
		p.Produce(r, func(err error) { done <- err })
		if err := <-done; err != nil {
			t.Fatalf("produce: %v", err)
		}
	}

	k := &keeper{}
	runConsumer(t, newConsumer(t, cfg, topic, k))
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("%d of 3 records", len(k.kept())) },
		func() bool { return len(k.kept()) == 3 })
	for i, m := range k.kept() {
		r := recs[i]
		if m.Topic != topic || m.Partition != 1 || m.Offset != transport.Offset(i) || string(m.Key) != string(r.Key) ||
			(m.Key == nil) != (r.Key == nil) || string(m.Value) != string(r.Value) || !m.Timestamp.Equal(r.Timestamp) {
			t.Errorf("record %d: got %s[%d]@%d key=%q value=%q ts=%v, want %s[1]@%d key=%q value=%q ts=%v", i,
				m.Topic, m.Partition, m.Offset, m.Key, m.Value, m.Timestamp, topic, i, r.Key, r.Value, r.Timestamp)
		}
		if got, want := fmt.Sprintf("%q", m.Headers), fmt.Sprintf("%q", r.Headers); got != want || (m.Headers == nil) != (r.Headers == nil) {
			t.Errorf("record %d: got headers %s, want %s", i, got, want)
		}
	}
}

// positionRecorder is a recorder that also records positions, in order with
// the messages (an event list per partition: offset, or -next for a
// position).
type positionRecorder struct {
	*recorder
	events map[int32][]int64
}

func (r *positionRecorder) Message(m *transport.Message) {
	r.recorder.Message(m)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events[m.Partition] = append(r.events[m.Partition], int64(m.Offset))
}

func (r *positionRecorder) Position(tp transport.TopicPartition, next transport.Offset) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events[tp.Partition] = append(r.events[tp.Partition], -int64(next))
}

// TestPositionStepsOverCommitMarkers: a transactional topic's offsets hold
// commit markers no Message shows; the consumer's position passes them
// (after the records before them were handed over), so a committed
// position reaches the end of the partition instead of staying one short
// of it for good. A plain topic reports no position beyond its records.
func TestPositionStepsOverCommitMarkers(t *testing.T) {
	topic := kafkatest.Topic(t, 2)
	p := newProducer(t, txnConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	produceAll(t, p, topic, "a", "b", "c") // partition 0: offsets 0-2, the marker at 3
	if err := p.CommitTxn(ctx, nil, transport.GroupMetadata{}); err != nil {
		t.Fatalf("CommitTxn: %v", err)
	}
	plain := newProducer(t, testConfig(t))
	for _, err := range produceAllTo(t, plain, topic, 1, "x", "y") { // partition 1: offsets 0-1, no marker
		if err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(t)
	cfg.GroupID = kafkatest.Group(t)
	cfg.IsolationLevel = transport.ReadCommitted
	rec := &positionRecorder{recorder: newRecorder(), events: map[int32][]int64{}}
	stop := runConsumer(t, newConsumer(t, cfg, topic, rec))
	events := func(p int32) []int64 {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return slices.Clone(rec.events[p])
	}
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("records and the position past the marker: %v", events(0)) },
		func() bool { return slices.Equal(events(0), []int64{0, 1, 2, -4}) })
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("records of the plain partition: %v", events(1)) },
		func() bool { return slices.Equal(events(1), []int64{0, 1}) })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := events(1); !slices.Equal(got, []int64{0, 1}) {
		t.Errorf("plain partition: %v, want its records and no position past them", got)
	}
	if got := events(0); !slices.Equal(got, []int64{0, 1, 2, -4}) {
		t.Errorf("transactional partition: %v, want its records, then position 4 once", got)
	}

	// A member that starts at the marker (its predecessor committed the
	// last record's offset + 1) gets no record, and the position past it.
	other := kafkatest.Group(t) + "-2"
	cfg.GroupID = other
	seed := newConsumer(t, cfg, topic, newRecorder())
	stopSeed := runConsumer(t, seed)
	waitFor(t, waitTimeout, func() string { return "the second group's assignment" }, func() bool { return len(seed.Assignment()) == 2 })
	if err := seed.Commit([]transport.PartitionOffset{{Topic: topic, Partition: 0, Offset: 3}}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := stopSeed(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	next := &positionRecorder{recorder: newRecorder(), events: map[int32][]int64{}}
	stopNext := runConsumer(t, newConsumer(t, cfg, topic, next))
	nextEvents := func() []int64 {
		next.mu.Lock()
		defer next.mu.Unlock()
		return slices.Clone(next.events[0])
	}
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("the position past the marker, no record: %v", nextEvents()) },
		func() bool { return slices.Equal(nextEvents(), []int64{-4}) })
	if err := stopNext(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
