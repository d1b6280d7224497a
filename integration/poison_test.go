package integration

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// createTopic creates a topic with topic configs (e.g. max.message.bytes),
// waits until it has a leader for every partition, and deletes it when the
// test ends.
func createTopic(t *testing.T, name string, partitions int, configs map[string]string) {
	t.Helper()
	a, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := a.CreateTopics(ctx, []kafka.TopicSpecification{{
		Topic: name, NumPartitions: partitions, ReplicationFactor: 1, Config: configs,
	}})
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	if c := res[0].Error.Code(); c != kafka.ErrNoError {
		t.Fatalf("create topic %s: %v", name, res[0].Error)
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		_, _ = a.DeleteTopics(dctx, []string{name})
	})
	waitFor(t, 30*time.Second, "topic "+name+" led", func() bool {
		md, err := a.GetMetadata(&name, false, 5000)
		if err != nil {
			return false
		}
		tm, ok := md.Topics[name]
		if !ok || tm.Error.Code() != kafka.ErrNoError || len(tm.Partitions) != partitions {
			return false
		}
		for _, p := range tm.Partitions {
			if p.Leader < 0 {
				return false
			}
		}
		return true
	})
}

// produceTo writes one record per value to the given partition, with a
// producer that allows records up to 8 MB, and waits for each.
func produceTo(t *testing.T, topic string, partition int32, values ...[]byte) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(t), "acks": "all", "message.max.bytes": 8 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i, v := range values {
		dr := make(chan kafka.Event, 1)
		err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: partition},
			Key: []byte("k" + strconv.Itoa(i)), Value: v}, dr)
		if err != nil {
			t.Fatalf("produce %d bytes: %v", len(v), err)
		}
		select {
		case ev := <-dr:
			if m := ev.(*kafka.Message); m.TopicPartition.Error != nil {
				t.Fatalf("produce %d bytes: %v", len(v), m.TopicPartition.Error)
			}
		case <-time.After(time.Minute):
			t.Fatalf("produce %d bytes: no acknowledgement within 1m", len(v))
		}
	}
}

// TestPoisonRecordTooLargeIsDeadLettered: a 3.5 MiB record on a topic that
// allows 8 MB is over the agent stream's limit, so it goes to the dead
// letter. The dead-letter topic must take it (the worker creates it with a
// max.message.bytes that covers it, and its producer allows it), the
// partition is committed past it, and the other partitions never notice.
func TestPoisonRecordTooLargeIsDeadLettered(t *testing.T) {
	d := runPoison(t, false)
	if len(d.Value) != 7<<19 {
		t.Errorf("dead letter value has %d bytes, want %d", len(d.Value), 7<<19)
	}
}

// TestPoisonRecordTooLargeForItsDeadLetterTopic: a dead-letter topic that
// exists with the broker's default max.message.bytes (created before the
// worker, which does not alter existing topics) refuses the 3.5 MiB dead
// letter; it is written without its value, with headers saying why and
// where the original is, and the partition moves on.
func TestPoisonRecordTooLargeForItsDeadLetterTopic(t *testing.T) {
	d := runPoison(t, true)
	if len(d.Value) != 0 || d.Headers["eddy.value.bytes"] != strconv.Itoa(7<<19) ||
		!strings.Contains(d.Headers["eddy.value.dropped"], "too large") {
		t.Errorf("dead letter: %d bytes, headers %v; want no value, eddy.value.bytes %d and eddy.value.dropped naming the size",
			len(d.Value), d.Headers, 7<<19)
	}
}

// runPoison runs a worker and the pass agent over a 2-partition topic
// allowing 8 MB, with a 3.5 MiB record between two small ones on
// partition 0 and two small records on partition 1. It waits for the dead
// letter, the four outputs and the commits past everything, and returns
// the dead letter. With smallDLQ the dead-letter topic is created first
// with broker defaults.
func runPoison(t *testing.T, smallDLQ bool) record {
	t.Helper()
	app, in, out := uniq(t, "app"), uniq(t, "in"), uniq(t, "out")
	dlq := app + "-pass-dlq"
	createTopic(t, in, 2, map[string]string{"max.message.bytes": strconv.Itoa(8 << 20)})
	if smallDLQ {
		createTopic(t, dlq, 1, nil)
	}
	body := fmt.Sprintf(`app: %s
brokers: %s
shutdown_timeout: 30s
kafka: {reach_timeout: 10s, session_timeout: 6s}
commit: {interval: 200ms}
topics:
  - {name: %s, partitions: 2}
  - {name: %s, partitions: 2}
agents:
  - {name: pass, topics: [%s]}
`, app, kafkatest.Bootstrap(t), in, out, in)
	w := startWorker(t, body)
	w.waitAssigned(t, 2)
	startAgent(t, w.GRPC, "pass", out)
	w.waitInstances(t, "pass", 1, 2)

	poison := bytes.Repeat([]byte("p"), 7<<19) // 3.5 MiB
	produceTo(t, in, 0, []byte("before"), poison, []byte("after"))
	produceTo(t, in, 1, []byte("other-0"), []byte("other-1"))

	c := newConsumerMax(t, dlq, out)
	got := c.readUntil(90*time.Second, "the dead letter and 4 outputs", func(got map[string][]record) bool {
		return len(got[dlq]) >= 1 && len(got[out]) >= 4
	})
	d := got[dlq][0]
	if d.Headers["eddy.offset"] != "1" || d.Headers["eddy.partition"] != "0" || d.Headers["eddy.topic"] != in ||
		!strings.Contains(d.Headers["eddy.error"], "too large") {
		t.Errorf("dead letter headers %v; want %s[0]@1 with an eddy.error saying too large", d.Headers, in)
	}
	waitFor(t, 60*time.Second, "offsets committed past the poison record", func() bool {
		off := committed(t, app, in, 2)
		return off[0] == 3 && off[1] == 2
	})
	return d
}

// newConsumerMax is newConsumer for records of several MiB.
func newConsumerMax(t *testing.T, topics ...string) *consumer {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(t), "group.id": uniq(t, "verify"),
		"auto.offset.reset": "earliest", "enable.auto.commit": false,
		"fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 16 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SubscribeTopics(topics, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &consumer{t: t, c: c}
}
