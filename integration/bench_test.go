package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// benchInput fills a fresh 8-partition topic with n keyed 100-byte records
// (outside the timer) and returns its name.
func benchInput(b *testing.B, n int) string {
	b.Helper()
	topic := kafkatest.Topic(b, 8)
	fillInput(b, topic, n)
	return topic
}

func fillInput(b *testing.B, topic string, n int) {
	b.Helper()
	keys := make([]string, n)
	values := make([]string, n)
	pad := fmt.Sprintf("%090d", 0)
	for i := range n {
		keys[i] = fmt.Sprintf("k%d", i%10000)
		values[i] = fmt.Sprintf("%09d%s", i, pad)
	}
	produce(b, topic, keys, values)
}

// BenchmarkRawConsume is the limit: a plain confluent-kafka-go consumer
// reading b.N records of an 8-partition topic.
func BenchmarkRawConsume(b *testing.B) {
	topic := benchInput(b, b.N)
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(b), "group.id": kafkatest.Group(b),
		"auto.offset.reset": "earliest", "enable.auto.commit": false,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var parts []kafka.TopicPartition
	for p := range 8 {
		parts = append(parts, kafka.TopicPartition{Topic: &topic, Partition: int32(p), Offset: kafka.OffsetBeginning})
	}
	if err := c.Assign(parts); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	deadline := time.Now().Add(5 * time.Minute)
	for n := 0; n < b.N; {
		if time.Now().After(deadline) {
			b.Fatalf("read %d of %d records in 5m", n, b.N)
		}
		if m, ok := c.Poll(100).(*kafka.Message); ok && m.TopicPartition.Error == nil {
			n++
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPassThrough is the worker path: one worker and one Go agent
// process copy b.N records to an output topic, at least once, committing.
// The worker starts paused with the agent connected and its partitions
// assigned; the clock runs from Resume until the committed offsets reach
// the end of the input.
func BenchmarkPassThrough(b *testing.B) { passThrough(b, "") }

// BenchmarkPassThroughNoMetrics is BenchmarkPassThrough with per-event
// metrics off: the monitor's cost is the difference.
func BenchmarkPassThroughNoMetrics(b *testing.B) { passThrough(b, "monitor: {enabled: false}\n") }

func passThrough(b *testing.B, extra string) {
	in := kafkatest.Topic(b, 8)
	out := kafkatest.Topic(b, 8)
	app := kafkatest.Group(b)
	body := fmt.Sprintf(`app: %s
brokers: %s
log: {level: warn}
topics:
  - {name: %s, partitions: 8}
  - {name: %s, partitions: 8}
agents:
  - {name: pass, topics: [%s]}
%s`, app, kafkatest.Bootstrap(b), in, out, in, extra)
	w := startWorker(b, body)
	w.waitAssigned(b, 8)
	startAgent(b, w.GRPC, "pass", out)
	w.waitInstances(b, "pass", 1, 8)
	if _, e, code := w.ctl(b, "pause"); code != 0 {
		b.Fatalf("pause: %s", e)
	}
	fillInput(b, in, b.N)
	end := endOffsets(b, in, 8)
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	b.ResetTimer()
	if _, e, code := w.ctl(b, "resume"); code != 0 {
		b.Fatalf("resume: %s", e)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for !atEnd(committedWith(b, admin, app, in, 8), end) {
		if time.Now().After(deadline) {
			b.Fatalf("committed offsets did not reach the end in 5m")
		}
		time.Sleep(50 * time.Millisecond) // polling the committed offsets
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
