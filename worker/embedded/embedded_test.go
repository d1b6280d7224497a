package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/testutil"
	"github.com/eddy-streams/eddy/worker/embedded"
	"github.com/eddy-streams/eddy/worker/transport"
)

const waitTimeout = 60 * time.Second

// The helpers these tests share with other packages (internal/testutil).
var (
	waitFor    = testutil.WaitFor[func() string]
	testLogger = testutil.Logger
)

// handler records what a transport.Consumer tells it.
type handler struct {
	mu       sync.Mutex
	assigned []int32
	revoked  []int32
	next     map[int32]int64 // partition -> offset after the last record seen
	values   map[string]bool
}

func newHandler() *handler { return &handler{next: map[int32]int64{}, values: map[string]bool{}} }

func (h *handler) Assigned(parts []transport.TopicPartition) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range parts {
		h.assigned = append(h.assigned, p.Partition)
	}
}

func (h *handler) Revoked(parts []transport.TopicPartition) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range parts {
		h.revoked = append(h.revoked, p.Partition)
	}
}

func (h *handler) Lost(parts []transport.TopicPartition) { h.Revoked(parts) }

func (h *handler) Message(m *transport.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next[m.Partition] = int64(m.Offset) + 1
	h.values[string(m.Value)] = true
}

func (h *handler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.values)
}

func run(t *testing.T, c *transport.Consumer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Consumer.Run: %v", err)
				}
			case <-time.After(waitTimeout):
				t.Errorf("Consumer.Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestTransportAgainstKfake runs the worker's librdkafka clients against
// the embedded broker: topic creation, idempotent produce, a
// cooperative-sticky consumer group, commits, and a restart resuming from
// the committed offsets.
func TestTransportAgainstKfake(t *testing.T) {
	ctx := context.Background()
	b, err := embedded.Start(ctx, testLogger(t), embedded.Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(b.Close)

	cfg := transport.DefaultConfig()
	cfg.Brokers = b.Addr()
	cfg.GroupID = "embedded-test"
	cfg.SessionTimeout = 6 * time.Second
	logOpt := transport.WithLogger(testLogger(t))

	admin, err := transport.NewAdmin(cfg, logOpt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	if err := admin.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	const topic, parts = "lines", 3
	if err := admin.EnsureTopics(ctx, []transport.TopicSpec{{Name: topic, Partitions: parts}}); err != nil {
		t.Fatalf("EnsureTopics: %v", err)
	}
	if err := admin.EnsureTopics(ctx, []transport.TopicSpec{{Name: topic, Partitions: parts}}); err != nil {
		t.Fatalf("EnsureTopics (again): %v", err)
	}

	// Produce n records; each callback must fire once with nil.
	const n = 300
	p, err := transport.NewProducer(cfg, logOpt)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked, failed := 0, []error{}
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			p.Produce(transport.Record{Topic: topic, Partition: transport.AnyPartition,
				Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)}, func(err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed = append(failed, err)
				}
				acked++
			})
		}
	}
	produce(0, n)
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("%d of %d acks", acked, n) }, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return acked == n
	})
	if len(failed) > 0 {
		t.Fatalf("%d produce callbacks failed, first: %v", len(failed), failed[0])
	}

	// Consume everything in a group, commit what was seen, leave.
	h1 := newHandler()
	c1, err := transport.NewConsumer(cfg, []string{topic}, h1, logOpt)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := run(t, c1)
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("%d of %d records", h1.count(), n) },
		func() bool { return h1.count() == n })
	h1.mu.Lock()
	var offsets []transport.PartitionOffset
	for part, next := range h1.next {
		offsets = append(offsets, transport.PartitionOffset{Topic: topic, Partition: part, Offset: transport.Offset(next)})
	}
	assigned := slices.Sorted(slices.Values(h1.assigned))
	h1.mu.Unlock()
	if !slices.Equal(assigned, []int32{0, 1, 2}) {
		t.Errorf("Assigned %v, want [0 1 2]", assigned)
	}
	if err := c1.Commit(offsets); err != nil {
		t.Fatalf("Commit: %v", err)
	}

	// A second member joins: cooperative-sticky splits the partitions.
	h2 := newHandler()
	c2, err := transport.NewConsumer(cfg, []string{topic}, h2, logOpt)
	if err != nil {
		t.Fatal(err)
	}
	stop2 := run(t, c2)
	waitFor(t, waitTimeout, func() string {
		return fmt.Sprintf("a split: %v / %v", c1.Assignment(), c2.Assignment())
	}, func() bool {
		n1, n2 := len(c1.Assignment()), len(c2.Assignment())
		// The handler hears of an assignment just after Assignment
		// shows it.
		h2.mu.Lock()
		told := len(h2.assigned) == n2
		h2.mu.Unlock()
		return n1 > 0 && n2 > 0 && n1+n2 == parts && told
	})
	h1.mu.Lock()
	revoked1 := slices.Sorted(slices.Values(h1.revoked))
	h1.mu.Unlock()
	h2.mu.Lock()
	assigned2 := slices.Sorted(slices.Values(h2.assigned))
	h2.mu.Unlock()
	if !slices.Equal(revoked1, assigned2) {
		t.Errorf("first member had %v revoked, second was assigned %v; want the same (incremental)", revoked1, assigned2)
	}

	// New records reach the group (either member), and nothing before the
	// committed offsets is redelivered to the newcomer.
	produce(n, n+30)
	waitFor(t, waitTimeout, func() string { return "30 new records" }, func() bool { return h1.count()+h2.count() == n+30 })

	stop2()
	stop1()
	ctx2, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.Close(ctx2); err != nil {
		t.Fatalf("Producer.Close: %v", err)
	}
}

func TestStartOptions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := embedded.Start(ctx, nil, embedded.Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a cancelled context = %v, want context.Canceled", err)
	}
	if _, err := embedded.Start(context.Background(), nil, embedded.Options{Port: 70000}); err == nil {
		t.Error("Start with port 70000 = nil error, want one")
	}
	b, err := embedded.Start(context.Background(), nil, embedded.Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	host, port, err := net.SplitHostPort(b.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Errorf("Addr() = %q, want 127.0.0.1:<free port>", b.Addr())
	}
	b.Close()
	b.Close() // idempotent
	if conn, err := net.Dial("tcp", b.Addr()); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Close", b.Addr())
	}
}
