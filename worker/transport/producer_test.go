package transport_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/worker/transport"
)

// highWatermarks sums the high watermarks of topic's partitions, read by a
// client that is not the code under test.
func highWatermarks(t testing.TB, topic string, partitions int) int64 {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(t),
		"group.id":          kafkatest.Group(t),
	})
	if err != nil {
		t.Fatalf("verifier consumer: %v", err)
	}
	defer c.Close()
	var sum int64
	for p := range partitions {
		_, high, err := c.QueryWatermarkOffsets(topic, int32(p), 10000)
		if err != nil {
			t.Fatalf("QueryWatermarkOffsets(%s, %d): %v", topic, p, err)
		}
		sum += high
	}
	return sum
}

func TestProduceCallbacks(t *testing.T) {
	const n = 1000
	topic := kafkatest.Topic(t, 3)
	produceN(t, testConfig(t), topic, n) // checks every callback fired once with nil
	if got := highWatermarks(t, topic, 3); got != n {
		t.Errorf("topic holds %d records, want %d", got, n)
	}
}

func TestProduceExplicitPartitionAndHeaders(t *testing.T) {
	topic := kafkatest.Topic(t, 3)
	p := newProducer(t, testConfig(t))
	// An hour ago: within the broker's retention (a timestamp older than
	// log.retention.hours gets the record deleted by the next retention
	// check, 30s after the broker starts).
	ts := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	done := make(chan error, 1)
	p.Produce(transport.Record{
		Topic: topic, Partition: 2, Key: []byte("k"), Value: []byte("v"),
		Headers:   []transport.Header{{Key: "h", Value: []byte("1")}},
		Timestamp: ts,
	}, func(err error) { done <- err })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("callback error: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no callback")
	}

	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(t),
		"group.id":          kafkatest.Group(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 2, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	m, err := c.ReadMessage(waitTimeout)
	if err != nil {
		t.Fatalf("ReadMessage: %v", err)
	}
	if string(m.Key) != "k" || string(m.Value) != "v" || len(m.Headers) != 1 || m.Headers[0].Key != "h" ||
		!m.Timestamp.Equal(ts) {
		t.Errorf("read %v key=%q value=%q headers=%v ts=%v; want k, v, [h=1], %v", m.TopicPartition, m.Key, m.Value, m.Headers, m.Timestamp, ts)
	}
}

// TestProducerCloseFailsOutstanding produces to a broker that does not
// exist: nothing is ever acknowledged, so Close must fail every callback.
func TestProducerCloseFailsOutstanding(t *testing.T) {
	cfg := transport.DefaultConfig()
	cfg.Brokers = "127.0.0.1:1"
	p, err := transport.NewProducer(cfg, transport.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	var mu sync.Mutex
	calls := map[int]int{}
	var errs []error
	for i := range n {
		p.Produce(transport.Record{Topic: "nowhere", Partition: transport.AnyPartition, Value: []byte("x")}, func(err error) {
			mu.Lock()
			defer mu.Unlock()
			calls[i]++
			errs = append(errs, err)
		})
	}
	if got := p.Pending(); got != n {
		t.Errorf("Pending() = %d, want %d", got, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = p.Close(ctx)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %s with a 500ms context", took)
	}
	if !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Close = %v, want an error wrapping ErrClosed", err)
	}
	// Every callback ran before Close returned, exactly once, with an error.
	mu.Lock()
	for i := range n {
		if calls[i] != 1 {
			t.Errorf("record %d: callback called %d times, want 1", i, calls[i])
		}
	}
	for _, e := range errs {
		if !errors.Is(e, transport.ErrClosed) {
			t.Errorf("callback error %v does not wrap ErrClosed", e)
		}
	}
	mu.Unlock()

	// After Close, Produce fails at once, asynchronously.
	late := make(chan error, 1)
	p.Produce(transport.Record{Topic: "nowhere"}, func(err error) { late <- err })
	if err := <-late; !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Produce after Close: callback error %v, want ErrClosed", err)
	}
	if err2 := p.Close(context.Background()); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("second Close = %v, want the first result %v", err2, err)
	}
}

func TestProduceUnknownTopicFails(t *testing.T) {
	cfg := testConfig(t)
	cfg.Overrides = map[string]string{"message.timeout.ms": "3000"}
	p := newProducer(t, cfg)
	done := make(chan error, 1)
	p.Produce(transport.Record{Topic: "does-not-exist-" + kafkatest.Group(t), Partition: transport.AnyPartition}, func(err error) { done <- err })
	select {
	case err := <-done:
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) {
			t.Fatalf("callback error = %v, want a kafka.Error", err)
		}
		t.Logf("callback error: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("no callback for a record to a missing topic")
	}
}

// TestProduceOffset checks that ProduceOffset reports each record's offset
// in its partition, and that an independent consumer finds each record at
// the offset reported.
func TestProduceOffset(t *testing.T) {
	const n = 200
	topic := kafkatest.Topic(t, 2)
	p := newProducer(t, testConfig(t))
	type got struct {
		off int64
		err error
	}
	done := make(chan got, n)
	for i := range n {
		p.ProduceOffset(transport.Record{
			Topic: topic, Partition: int32(i % 2), Key: []byte{byte(i)}, Value: []byte(strconv.Itoa(i)),
		}, func(off int64, err error) { done <- got{off, err} })
	}
	offsets := make([]int64, 0, n)
	for range n {
		select {
		case g := <-done:
			if g.err != nil {
				t.Fatalf("callback error: %v", g.err)
			}
			offsets = append(offsets, g.off)
		case <-time.After(waitTimeout):
			t.Fatal("missing callbacks")
		}
	}
	// Each partition got n/2 records: offsets 0..n/2-1, each reported once
	// per partition, so the multiset of offsets is {0..n/2-1} twice.
	count := map[int64]int{}
	for _, o := range offsets {
		count[o]++
	}
	for o := int64(0); o < n/2; o++ {
		if count[o] != 2 {
			t.Errorf("offset %d reported %d times, want 2 (once per partition)", o, count[o])
		}
	}
	if len(count) != n/2 {
		t.Errorf("%d distinct offsets reported, want %d", len(count), n/2)
	}

	// The reported offset is where the record is: produce one more and
	// read it back at that offset.
	one := make(chan got, 1)
	p.ProduceOffset(transport.Record{Topic: topic, Partition: 1, Key: []byte("last"), Value: []byte("v")},
		func(off int64, err error) { one <- got{off, err} })
	g := <-one
	if g.err != nil || g.off != n/2 {
		t.Fatalf("ProduceOffset = %d, %v; want %d, nil", g.off, g.err, n/2)
	}
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(t),
		"group.id":          kafkatest.Group(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 1, Offset: kafka.Offset(g.off)}}); err != nil {
		t.Fatal(err)
	}
	m, err := c.ReadMessage(waitTimeout)
	if err != nil {
		t.Fatalf("ReadMessage: %v", err)
	}
	if string(m.Key) != "last" || int64(m.TopicPartition.Offset) != g.off {
		t.Errorf("read key %q at offset %d; want \"last\" at %d", m.Key, m.TopicPartition.Offset, g.off)
	}
}

func TestProduceOffsetFailure(t *testing.T) {
	cfg := transport.DefaultConfig()
	cfg.Brokers = "127.0.0.1:1"
	p, err := transport.NewProducer(cfg, transport.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan int64, 1)
	p.ProduceOffset(transport.Record{Topic: "nowhere", Partition: 0, Value: []byte("x")}, func(off int64, err error) {
		if err == nil {
			t.Error("callback without error for an unreachable broker")
		}
		done <- off
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = p.Close(ctx)
	if off := <-done; off != -1 {
		t.Errorf("failed record reported offset %d, want -1", off)
	}
}
