package transport_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/worker/transport"
)

// groupMembers describes group with a client that is not the code under
// test and returns its members' group.instance.ids ("" for dynamic ones).
func groupMembers(t testing.TB, group string) []string {
	t.Helper()
	a, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(t)})
	if err != nil {
		t.Fatalf("verifier admin: %v", err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := a.DescribeConsumerGroups(ctx, []string{group})
	if err != nil {
		t.Fatalf("DescribeConsumerGroups: %v", err)
	}
	var out []string
	for _, g := range res.ConsumerGroupDescriptions {
		if g.Error.Code() != kafka.ErrNoError {
			t.Fatalf("DescribeConsumerGroups(%s): %v", group, g.Error)
		}
		for _, m := range g.Members {
			out = append(out, m.GroupInstanceID)
		}
	}
	return out
}

// TestDynamicMemberLeaves: a dynamic member leaves the group on shutdown,
// so its partitions move on at once instead of after the session timeout.
func TestDynamicMemberLeaves(t *testing.T) {
	topic := kafkatest.Topic(t, 2)
	cfg := testConfig(t)
	cfg.GroupID = kafkatest.Group(t)
	c := newConsumer(t, cfg, topic, newRecorder())
	stop := runConsumer(t, c)
	waitFor(t, waitTimeout, func() string { return "assignment" }, func() bool { return len(c.Assignment()) == 2 })
	if got := groupMembers(t, cfg.GroupID); len(got) != 1 {
		t.Fatalf("members while running = %q, want one", got)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := groupMembers(t, cfg.GroupID); len(got) != 0 {
		t.Errorf("members after shutdown = %q, want none (LeaveGroup)", got)
	}
}

// TestStaticMembership: a static member does not leave the group on
// shutdown, and its successor with the same group.instance.id takes its
// place and partitions.
func TestStaticMembership(t *testing.T) {
	topic := kafkatest.Topic(t, 2)
	cfg := testConfig(t)
	cfg.GroupID = kafkatest.Group(t)
	cfg.GroupInstanceID = "worker-1"
	produceN(t, cfg, topic, 20)

	rec1 := newRecorder()
	c1 := newConsumer(t, cfg, topic, rec1)
	var commitErr error
	rec1.onRevoked = func(parts []transport.TopicPartition) {
		var offs []transport.PartitionOffset
		for _, p := range parts {
			offs = append(offs, transport.PartitionOffset{Topic: p.Topic, Partition: p.Partition, Offset: 5})
		}
		commitErr = c1.Commit(offs)
	}
	stop1 := runConsumer(t, c1)
	waitFor(t, waitTimeout, func() string { return "20 records" }, func() bool { return rec1.messages() == 20 })
	if err := stop1(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if commitErr != nil {
		t.Errorf("Commit in Revoked at shutdown: %v", commitErr)
	}
	if got := groupMembers(t, cfg.GroupID); !slices.Equal(got, []string{"worker-1"}) {
		t.Errorf("members after a static member's shutdown = %q, want [worker-1] (no LeaveGroup)", got)
	}

	rec2 := newRecorder()
	c2 := newConsumer(t, cfg, topic, rec2)
	runConsumer(t, c2)
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("restart: %d of 10 records", rec2.messages()) },
		func() bool { return rec2.messages() == 10 })
	rec2.mu.Lock()
	defer rec2.mu.Unlock()
	for p, offs := range rec2.msgs {
		if offs[0] != 5 {
			t.Errorf("partition %d: restarted member began at offset %d, want 5 (committed in Revoked)", p, offs[0])
		}
	}
}

// TestMaxPollExceeded stalls the poll loop past max.poll.interval.ms: the
// error is recorded, the handler is told the partitions were Lost (not
// Revoked), and the consumer rejoins and gets them back.
func TestMaxPollExceeded(t *testing.T) {
	topic := kafkatest.Topic(t, 1)
	cfg := testConfig(t)
	cfg.GroupID = kafkatest.Group(t)
	cfg.MaxPollInterval = cfg.SessionTimeout
	produceN(t, cfg, topic, 1)

	rec := newRecorder()
	stall := make(chan struct{})
	stalled := false
	logs := &captureHandler{next: testLogger(t).Handler()}
	c, err := transport.NewConsumer(cfg, []string{topic}, rec, transport.WithLogger(slog.New(logs)))
	if err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	rec.onAssigned = func([]transport.TopicPartition) {
		// Block the poll goroutine once, like a handler that breaks the
		// must-not-block rule.
		if !stalled {
			stalled = true
			<-stall
		}
	}
	rec.mu.Unlock()
	runConsumer(t, c)
	waitFor(t, waitTimeout, func() string { return "assignment" }, func() bool { return len(c.Assignment()) == 1 })
	// librdkafka's main thread notices the stall and says so (tag MAXPOLL).
	waitFor(t, waitTimeout, func() string { return "librdkafka's MAXPOLL log line" },
		func() bool { return logs.has("tag", "MAXPOLL") })
	close(stall)

	waitFor(t, waitTimeout, func() string {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return fmt.Sprintf("Lost, then assigned again (lost %v, assigned %v)", rec.lost, rec.assigned)
	}, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.lost) == 1 && len(rec.assigned) == 2 && len(c.Assignment()) == 1
	})
	rec.mu.Lock()
	if len(rec.revoked) != 0 {
		t.Errorf("Revoked %v, want only Lost", rec.revoked)
	}
	rec.mu.Unlock()
	found := false
	for _, e := range c.Errors().Recent() {
		if e.Code == kafka.ErrMaxPollExceeded {
			found = true
		}
	}
	if !found {
		t.Errorf("ErrorLog %+v has no MAX_POLL_EXCEEDED error", c.Errors().Recent())
	}
	// The partition is assigned again, in the new generation: commits work.
	if err := c.Commit([]transport.PartitionOffset{{Topic: topic, Partition: 0, Offset: 1}}); err != nil {
		t.Errorf("Commit after rejoin: %v", err)
	}
}

// captureHandler is a slog.Handler that remembers the string attributes of
// every record and passes records on to next.
type captureHandler struct {
	next  slog.Handler
	mu    sync.Mutex
	attrs []slog.Attr
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *captureHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	r.Attrs(func(a slog.Attr) bool {
		h.attrs = append(h.attrs, a)
		return true
	})
	h.mu.Unlock()
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

// has reports whether some record carried the attribute key=value.
func (h *captureHandler) has(key, value string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.attrs {
		if a.Key == key && a.Value.String() == value {
			return true
		}
	}
	return false
}

// TestStaticMemberFenced: a second member with the same group.instance.id
// fences the first, whose Run returns the fatal error.
func TestStaticMemberFenced(t *testing.T) {
	topic := kafkatest.Topic(t, 1)
	cfg := testConfig(t)
	cfg.GroupID = kafkatest.Group(t)
	cfg.GroupInstanceID = "twin"

	rec1 := newRecorder()
	c1 := newConsumer(t, cfg, topic, rec1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done1 := make(chan error, 1)
	go func() { done1 <- c1.Run(ctx) }()
	waitFor(t, waitTimeout, func() string { return "first twin assigned" }, func() bool { return len(c1.Assignment()) == 1 })

	c2 := newConsumer(t, cfg, topic, newRecorder())
	runConsumer(t, c2)
	select {
	case err := <-done1:
		var kerr kafka.Error
		if !errors.As(err, &kerr) || !kerr.IsFatal() {
			t.Fatalf("fenced member's Run = %v, want a fatal kafka.Error", err)
		}
		t.Logf("fenced member's Run: %v", err)
		rec1.mu.Lock()
		if got := partitionsOf(rec1.lost); len(got) != 1 || len(rec1.revoked) != 0 {
			t.Errorf("fenced member: Lost %v, Revoked %v; want Lost [0] only", got, partitionsOf(rec1.revoked))
		}
		rec1.mu.Unlock()
	case <-time.After(waitTimeout):
		t.Fatal("fenced member's Run did not return")
	}
}
