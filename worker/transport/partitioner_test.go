package transport_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/worker/transport"
)

// The vectors of Apache Kafka's UtilsTest.testMurmur2.
func TestMurmur2JavaVectors(t *testing.T) {
	tests := []struct {
		in   string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	}
	for _, tt := range tests {
		if got := transport.Murmur2([]byte(tt.in)); got != tt.want {
			t.Errorf("Murmur2(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
	if got, ok := transport.Murmur2Random.KeyPartition([]byte("foobar"), 50); got != 16 || !ok {
		t.Errorf("Murmur2Random.KeyPartition(foobar, 50) = %d, %v, want 16, true", got, ok)
	}
}

func TestParsePartitioner(t *testing.T) {
	for _, p := range transport.Partitioners {
		got, err := transport.ParsePartitioner(p.String())
		if err != nil || got != p {
			t.Errorf("ParsePartitioner(%q) = %v, %v, want %v", p.String(), got, err, p)
		}
	}
	if got, err := transport.ParsePartitioner(""); err != nil || got != transport.Murmur2Random {
		t.Errorf(`ParsePartitioner("") = %v, %v, want murmur2_random`, got, err)
	}
	_, err := transport.ParsePartitioner("murmur2")
	if err == nil || err.Error() != `unknown partitioner "murmur2" (known: murmur2_random, consistent_random, fnv1a_random)` {
		t.Errorf("ParsePartitioner(murmur2) error %v, want one naming it and the known ones", err)
	}
}

// partitionKeys are keys of every length up to 40, binary ones included.
func partitionKeys() [][]byte {
	var keys [][]byte
	for i := range 200 {
		k := fmt.Appendf(nil, "key-%d-%s", i, string(rune('a'+i%26)))
		keys = append(keys, k[:1+i%len(k)])
	}
	keys = append(keys, []byte{0}, []byte{0xff, 0xfe, 0x80, 0x7f}, []byte("apple"), []byte("a-little-bit-longer-string-than-forty-bytes-long"))
	return keys
}

// Each partitioner places every key where librdkafka's partitioner of the
// same name does (a real librdkafka producer, the one confluent-kafka-go
// bundles, writing to a real broker), an empty key included; records
// without a key, and empty keys where the partitioner says so, are spread
// at random (here: over more than one partition).
func TestPartitionersMatchLibrdkafka(t *testing.T) {
	const n = 7
	keys := partitionKeys()
	for _, p := range transport.Partitioners {
		t.Run(p.String(), func(t *testing.T) {
			topic := kafkatest.Topic(t, n)
			prod, err := kafka.NewProducer(&kafka.ConfigMap{
				"bootstrap.servers": kafkatest.Bootstrap(t), "partitioner": p.String(), "linger.ms": 0,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close()
			produce := func(key []byte) int32 {
				t.Helper()
				ch := make(chan kafka.Event, 1)
				tp := kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}
				if err := prod.Produce(&kafka.Message{TopicPartition: tp, Key: key, Value: []byte("v")}, ch); err != nil {
					t.Fatalf("produce: %v", err)
				}
				select {
				case e := <-ch:
					m := e.(*kafka.Message)
					if m.TopicPartition.Error != nil {
						t.Fatalf("delivery: %v", m.TopicPartition.Error)
					}
					return m.TopicPartition.Partition
				case <-time.After(30 * time.Second):
					t.Fatal("no delivery report within 30s")
				}
				return -1
			}
			for _, k := range keys {
				want, ok := p.KeyPartition(k, n)
				if !ok {
					t.Fatalf("KeyPartition(%q) says random, want a hash", k)
				}
				if got := produce(k); got != want {
					t.Errorf("librdkafka %s put key %q on partition %d, KeyPartition says %d", p, k, got, want)
				}
			}
			spread := func(key []byte) map[int32]bool {
				seen := map[int32]bool{}
				for range 40 {
					seen[produce(key)] = true
				}
				return seen
			}
			if seen := spread(nil); len(seen) < 2 {
				t.Errorf("40 records without key all went to partition %v, want them spread at random", seen)
			}
			empty := []byte{}
			if want, ok := p.KeyPartition(empty, n); ok {
				if seen := spread(empty); len(seen) != 1 || !seen[want] {
					t.Errorf("records with an empty key went to partitions %v, KeyPartition says %d", seen, want)
				}
			} else if seen := spread(empty); len(seen) < 2 {
				t.Errorf("40 records with an empty key all went to partition %v, KeyPartition says random", seen)
			}
		})
	}
}

// Murmur2Random places every key, an empty one included, where franz-go's
// default partitioner (the Java client's) does.
func TestMurmur2RandomMatchesFranzGo(t *testing.T) {
	const n = 7
	topic := kafkatest.Topic(t, n)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkatest.Bootstrap(t)), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, k := range append(partitionKeys(), []byte{}) {
		r, err := cl.ProduceSync(ctx, &kgo.Record{Key: k, Value: []byte("v")}).First()
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
		if want, _ := transport.Murmur2Random.KeyPartition(k, n); r.Partition != want {
			t.Errorf("franz-go put key %q on partition %d, Murmur2Random says %d", k, r.Partition, want)
		}
	}
}

func TestTopicPartitioners(t *testing.T) {
	ps := transport.TopicPartitioners{"crc": {Partitioner: transport.ConsistentRandom, Partitions: 5}}
	want, _ := transport.ConsistentRandom.KeyPartition([]byte("apple"), 5)
	if got := ps.Partition("crc", []byte("apple")); got != want {
		t.Errorf("Partition(crc, apple) = %d, want %d", got, want)
	}
	if got := ps.Partition("other", []byte("apple")); got != transport.AnyPartition {
		t.Errorf("Partition(other, apple) = %d, want AnyPartition", got)
	}
	if got := transport.TopicPartitioners(nil).Partition("crc", []byte("apple")); got != transport.AnyPartition {
		t.Errorf("nil map: Partition = %d, want AnyPartition", got)
	}
	for range 100 {
		if got := ps.Partition("crc", nil); got < 0 || got >= 5 {
			t.Fatalf("Partition(crc, nil) = %d, want 0..4", got)
		}
	}
}
