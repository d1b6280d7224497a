package kafkatest_test

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

func TestMain(m *testing.M) { kafkatest.Main(m) }

// validName matches what Kafka accepts for topic names (max 249 chars).
var validName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

func TestNames(t *testing.T) {
	t.Parallel()
	for _, sub := range []string{"plain", "with spaces/and#odd*chars", "ünïcode"} {
		t.Run(sub, func(t *testing.T) {
			a, b := kafkatest.Group(t), kafkatest.Group(t)
			if a == b {
				t.Errorf("Group returned %q twice", a)
			}
			for _, n := range []string{a, b} {
				if !validName.MatchString(n) {
					t.Errorf("Group returned invalid name %q", n)
				}
			}
		})
	}
}

// TestProduceConsume proves the broker works end to end: a fresh topic, 100
// records produced with acks=all, all 100 read back by a consumer group in
// per-partition order.
func TestProduceConsume(t *testing.T) {
	t.Parallel()
	const (
		partitions = 3
		records    = 100
	)
	bootstrap := kafkatest.Bootstrap(t)
	start := time.Now()
	topic := kafkatest.Topic(t, partitions)
	t.Logf("created topic %s in %v", topic, time.Since(start).Round(time.Millisecond))
	if !validName.MatchString(topic) {
		t.Fatalf("Topic returned invalid name %q", topic)
	}

	// Produce: record i goes to partition i%partitions, value "i".
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":  bootstrap,
		"acks":               "all",
		"enable.idempotence": true,
		"linger.ms":          5,
	})
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	defer p.Close()

	start = time.Now()
	delivered := make(chan kafka.Event, records)
	for i := range records {
		err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: int32(i % partitions)},
			Key:            []byte("k" + strconv.Itoa(i)),
			Value:          []byte(strconv.Itoa(i)),
		}, delivered)
		if err != nil {
			t.Fatalf("Produce %d: %v", i, err)
		}
	}
	deadline := time.After(60 * time.Second)
	for i := range records {
		select {
		case ev := <-delivered:
			m, ok := ev.(*kafka.Message)
			if !ok {
				t.Fatalf("delivery report %d: unexpected event %T: %v", i, ev, ev)
			}
			if m.TopicPartition.Error != nil {
				t.Fatalf("delivery of %q failed: %v", m.Value, m.TopicPartition.Error)
			}
		case <-deadline:
			t.Fatalf("only %d of %d delivery reports within 60s", i, records)
		}
	}

	t.Logf("produced %d records in %v", records, time.Since(start).Round(time.Millisecond))

	// Consume with a fresh group from the beginning.
	start = time.Now()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":  bootstrap,
		"group.id":           kafkatest.Group(t),
		"auto.offset.reset":  "earliest",
		"enable.auto.commit": false,
	})
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	defer c.Close()
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}

	got := make(map[int32][]int) // partition -> values in arrival order
	n := 0
	end := time.Now().Add(60 * time.Second)
	for n < records {
		if time.Now().After(end) {
			t.Fatalf("consumed %d of %d records within 60s: %v", n, records, got)
		}
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			v, err := strconv.Atoi(string(e.Value))
			if err != nil {
				t.Fatalf("bad value %q: %v", e.Value, err)
			}
			if part := e.TopicPartition.Partition; int(part) != v%partitions {
				t.Errorf("value %d arrived on partition %d, want %d", v, part, v%partitions)
			}
			if want := "k" + strconv.Itoa(v); string(e.Key) != want {
				t.Errorf("value %d has key %q, want %q", v, e.Key, want)
			}
			got[e.TopicPartition.Partition] = append(got[e.TopicPartition.Partition], v)
			n++
		case kafka.Error:
			// Transient errors are reported here and retried by librdkafka;
			// a fatal one means the test cannot succeed.
			if e.IsFatal() {
				t.Fatalf("consumer: %v", e)
			}
			t.Logf("consumer: %v", e)
		}
	}

	t.Logf("consumed %d records in %v", n, time.Since(start).Round(time.Millisecond))

	// Per partition, exactly the values produced there, in produce order.
	for part := range int32(partitions) {
		var want []int
		for i := int(part); i < records; i += partitions {
			want = append(want, i)
		}
		if fmt.Sprint(got[part]) != fmt.Sprint(want) {
			t.Errorf("partition %d: got %v, want %v", part, got[part], want)
		}
	}
}

// TestRestartBrokerKeepsData: after a kill -9 and a restart the broker
// answers at the same address with the records it had.
func TestRestartBrokerKeepsData(t *testing.T) {
	topic := kafkatest.Topic(t, 1)
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(t), "acks": "all"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	done := make(chan kafka.Event, 1)
	if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0}, Value: []byte("kept")}, done); err != nil {
		t.Fatal(err)
	}
	if m := (<-done).(*kafka.Message); m.TopicPartition.Error != nil {
		t.Fatal(m.TopicPartition.Error)
	}
	start := time.Now()
	kafkatest.RestartBroker(t)
	t.Logf("broker restarted in %s", time.Since(start).Round(time.Millisecond))
	rs := kafkatest.ReadAll(t, topic, 1, true)
	if len(rs) != 1 || string(rs[0].Value) != "kept" {
		t.Fatalf("after the restart: %d records %v, want the one written before", len(rs), rs)
	}
}
