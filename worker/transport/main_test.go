package transport_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/internal/testutil"
	"github.com/eddy-streams/eddy/worker/transport"
)

// TestMain runs the package's tests against one real Apache Kafka broker.
func TestMain(m *testing.M) { kafkatest.Main(m) }

// waitTimeout is how long tests wait for Kafka to do something (rebalances
// take a few heartbeats); raceFactor stretches it under -race.
var waitTimeout = 60 * time.Second * raceFactor

// The helpers these tests share with other packages (internal/testutil).
const raceFactor = testutil.RaceFactor

var (
	waitFor    = testutil.WaitFor[func() string]
	testLogger = testutil.Logger
)

// testConfig is a Config for the test broker. The session timeout is the
// broker's minimum, so rebalances after a member joins are quick.
func testConfig(t testing.TB) transport.Config {
	cfg := transport.DefaultConfig()
	cfg.Brokers = kafkatest.Bootstrap(t)
	cfg.ClientID = "eddy-test-" + t.Name()
	cfg.SessionTimeout = 6 * time.Second
	return cfg
}

func newAdmin(t testing.TB, cfg transport.Config) *transport.Admin {
	t.Helper()
	a, err := transport.NewAdmin(cfg, transport.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("NewAdmin: %v", err)
	}
	t.Cleanup(a.Close)
	return a
}

func newProducer(t testing.TB, cfg transport.Config) *transport.Producer {
	t.Helper()
	p, err := transport.NewProducer(cfg, transport.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("Producer.Close: %v", err)
		}
	})
	return p
}

// produceN produces n records to topic (keys "k<i>", values "v<i>") through
// a transport.Producer, waits for every callback and fails the test unless
// each fired exactly once with nil.
func produceN(t testing.TB, cfg transport.Config, topic string, n int) {
	t.Helper()
	p := newProducer(t, cfg)
	calls := make([]int, n)
	errs := make([]error, n)
	var mu sync.Mutex
	done := 0
	for i := range n {
		p.Produce(transport.Record{
			Topic:     topic,
			Partition: transport.AnyPartition,
			Key:       fmt.Appendf(nil, "k%d", i),
			Value:     fmt.Appendf(nil, "v%d", i),
		}, func(err error) {
			mu.Lock()
			defer mu.Unlock()
			calls[i]++
			if calls[i] == 1 {
				done++
			}
			errs[i] = err
		})
	}
	waitFor(t, waitTimeout, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("%d of %d produce callbacks", done, n)
	}, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return done == n
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Producer.Close: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		if calls[i] != 1 || errs[i] != nil {
			t.Fatalf("record %d: callback called %d times, last error %v; want once with nil", i, calls[i], errs[i])
		}
	}
}

// recorder is a transport.Handler that records what it is told.
type recorder struct {
	mu       sync.Mutex
	assigned [][]transport.TopicPartition
	revoked  [][]transport.TopicPartition
	lost     [][]transport.TopicPartition
	msgs     map[int32][]int64 // partition -> offsets, in delivery order
	count    int

	// onAssigned, onRevoked, if set, run inside the callbacks (on the poll
	// goroutine).
	onAssigned func([]transport.TopicPartition)
	onRevoked  func([]transport.TopicPartition)
}

func newRecorder() *recorder { return &recorder{msgs: map[int32][]int64{}} }

func (r *recorder) Assigned(parts []transport.TopicPartition) {
	r.mu.Lock()
	r.assigned = append(r.assigned, parts)
	f := r.onAssigned
	r.mu.Unlock()
	if f != nil {
		f(parts)
	}
}

func (r *recorder) Revoked(parts []transport.TopicPartition) {
	r.mu.Lock()
	r.revoked = append(r.revoked, parts)
	f := r.onRevoked
	r.mu.Unlock()
	if f != nil {
		f(parts)
	}
}

func (r *recorder) Lost(parts []transport.TopicPartition) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lost = append(r.lost, parts)
}

func (r *recorder) Message(m *transport.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := m.Partition
	r.msgs[p] = append(r.msgs[p], int64(m.Offset))
	r.count++
}

func (r *recorder) messages() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// partitionsOf flattens a list of callback arguments to partition numbers.
func partitionsOf(calls [][]transport.TopicPartition) []int32 {
	var out []int32
	for _, c := range calls {
		for _, tp := range c {
			out = append(out, tp.Partition)
		}
	}
	return out
}

// runConsumer starts c.Run in a goroutine and returns a stop function that
// cancels it and returns Run's error (also called on cleanup).
func runConsumer(t testing.TB, c *transport.Consumer) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(waitTimeout):
				err = fmt.Errorf("Run did not return within %s of cancel", waitTimeout)
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Consumer.Run: %v", err)
		}
	})
	return stop
}
