package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// produce writes values to topic keyed by keys[i], and waits for every
// acknowledgement. It returns the (partition, offset) of each record.
func produce(t testing.TB, topic string, keys, values []string) []kafka.TopicPartition {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(t), "acks": "all", "linger.ms": 5,
		"partitioner": "murmur2_random", "go.delivery.report.fields": "none",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out := make([]kafka.TopicPartition, len(values))
	done := make(chan error, 1)
	go func() {
		n := 0
		for ev := range p.Events() {
			m, ok := ev.(*kafka.Message)
			if !ok {
				continue
			}
			if m.TopicPartition.Error != nil {
				done <- m.TopicPartition.Error
				return
			}
			out[m.Opaque.(int)] = m.TopicPartition
			if n++; n == len(values) {
				done <- nil
				return
			}
		}
	}()
	for i, v := range values {
		var key []byte // "": no key (null), spread over the partitions at random
		if keys[i] != "" {
			key = []byte(keys[i])
		}
		msg := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Key: key, Value: []byte(v), Opaque: i}
		for {
			err := p.Produce(msg, nil)
			if err == nil {
				break
			}
			if kerr, ok := err.(kafka.Error); ok && kerr.Code() == kafka.ErrQueueFull {
				p.Flush(100)
				continue
			}
			t.Fatalf("produce: %v", err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("produce: no acknowledgement within 2m")
	}
	return out
}

// keyedValues makes n values "k<key>:<seq>" over nkeys keys; seq counts per
// key from 0, so per-key order can be checked in the output.
func keyedValues(n, nkeys int) (keys, values []string) {
	seq := make([]int, nkeys)
	for i := 0; i < n; i++ {
		k := i % nkeys
		keys = append(keys, "k"+strconv.Itoa(k))
		values = append(values, fmt.Sprintf("k%d:%d", k, seq[k]))
		seq[k]++
	}
	return keys, values
}

// record is one consumed record.
type record struct {
	Partition int32
	Offset    int64
	Key       string
	Value     string
	Headers   map[string]string
}

// consumer is an independent reader of topics from the beginning, in its
// own group, that never commits.
type consumer struct {
	t testing.TB
	c *kafka.Consumer
}

func newConsumer(t testing.TB, topics ...string) *consumer {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(t), "group.id": fmt.Sprintf("verify-%d", rand.Int64()),
		"auto.offset.reset": "earliest", "enable.auto.commit": false,
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

// readUntil reads until stop says so or the timeout passes, and returns
// everything read, by topic.
func (c *consumer) readUntil(timeout time.Duration, what string, stop func(got map[string][]record) bool) map[string][]record {
	c.t.Helper()
	got := map[string][]record{}
	deadline := time.Now().Add(timeout)
	for !stop(got) {
		if time.Now().After(deadline) {
			n := 0
			for _, rs := range got {
				n += len(rs)
			}
			c.t.Fatalf("timed out after %s waiting for %s (read %d records)", timeout, what, n)
		}
		ev := c.c.Poll(100)
		m, ok := ev.(*kafka.Message)
		if !ok || m.TopicPartition.Error != nil {
			continue
		}
		r := record{Partition: m.TopicPartition.Partition, Offset: int64(m.TopicPartition.Offset),
			Key: string(m.Key), Value: string(m.Value), Headers: map[string]string{}}
		for _, h := range m.Headers {
			r.Headers[h.Key] = string(h.Value)
		}
		got[*m.TopicPartition.Topic] = append(got[*m.TopicPartition.Topic], r)
	}
	return got
}

// committed returns the group's committed offsets for topic's partitions
// (-1 when none).
func committed(t testing.TB, group, topic string, partitions int) []int64 {
	t.Helper()
	a, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	return committedWith(t, a, group, topic, partitions)
}

// committedWith is committed on an existing admin client.
func committedWith(t testing.TB, a *kafka.AdminClient, group, topic string, partitions int) []int64 {
	t.Helper()
	var tps []kafka.TopicPartition
	for p := 0; p < partitions; p++ {
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: int32(p)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := a.ListConsumerGroupOffsets(ctx, []kafka.ConsumerGroupTopicPartitions{{Group: group, Partitions: tps}})
	if err != nil {
		t.Fatalf("list group offsets: %v", err)
	}
	out := make([]int64, partitions)
	for i := range out {
		out[i] = -1
	}
	for _, g := range res.ConsumerGroupsTopicPartitions {
		for _, tp := range g.Partitions {
			if tp.Offset >= 0 {
				out[tp.Partition] = int64(tp.Offset)
			}
		}
	}
	return out
}

// endOffsets returns the high watermark of each partition.
func endOffsets(t testing.TB, topic string, partitions int) []int64 {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(t), "group.id": "watermarks"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := make([]int64, partitions)
	for p := range out {
		_, high, err := c.QueryWatermarkOffsets(topic, int32(p), 10000)
		if err != nil {
			t.Fatalf("watermarks: %v", err)
		}
		out[p] = high
	}
	return out
}

// atEnd reports whether committed offsets reached the end offsets; an
// empty partition (end 0) has nothing to commit.
func atEnd(committed, end []int64) bool {
	for i := range end {
		if end[i] > 0 && committed[i] != end[i] {
			return false
		}
	}
	return true
}
