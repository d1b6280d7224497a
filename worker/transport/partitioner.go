package transport

import (
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"strings"
)

// Partitioner is one of librdkafka's key partitioners, computed in Go so
// that the worker can say where a key lives (table reads, workerctl send)
// and place its own records per topic: librdkafka's partitioner setting
// is per producer, not per topic. The zero value is Murmur2Random. See
// docs/configuration.md (topics[].partitioner).
type Partitioner uint8

// The partitioners, by librdkafka's names. Each puts a record without a
// key (Key nil) on a random partition; they differ on keys and on an empty
// key, exactly as librdkafka does (worker/transport's partitioner tests
// check it against a librdkafka producer).
const (
	// Murmur2Random is toPositive(murmur2(key)) % partitions, the Java
	// client's default partitioner (and franz-go's): an empty key is
	// hashed like any other. Eddy's default.
	Murmur2Random Partitioner = iota
	// ConsistentRandom is crc32(key) % partitions (IEEE CRC-32), the
	// default of librdkafka and kcat: an empty key goes to a random
	// partition, like no key.
	ConsistentRandom
	// FNV1aRandom is |int32(fnv1a_32(key)) % partitions| (librdkafka's
	// fnv1a_random, Sarama's default partitioner): an empty key is
	// hashed.
	FNV1aRandom
)

// Partitioners lists every Partitioner, the default first.
var Partitioners = []Partitioner{Murmur2Random, ConsistentRandom, FNV1aRandom}

var partitionerNames = [...]string{"murmur2_random", "consistent_random", "fnv1a_random"}

// String is librdkafka's name of the partitioner.
func (p Partitioner) String() string {
	if int(p) < len(partitionerNames) {
		return partitionerNames[p]
	}
	return fmt.Sprintf("Partitioner(%d)", p)
}

// PartitionerNames are the accepted names, for error messages.
func PartitionerNames() string { return strings.Join(partitionerNames[:], ", ") }

// ParsePartitioner returns the partitioner of librdkafka's name; "" is
// the default, Murmur2Random.
func ParsePartitioner(name string) (Partitioner, error) {
	if name == "" {
		return Murmur2Random, nil
	}
	for i, n := range partitionerNames {
		if n == name {
			return Partitioner(i), nil
		}
	}
	return 0, fmt.Errorf("unknown partitioner %q (known: %s)", name, PartitionerNames())
}

// KeyPartition is the partition of key among n partitions, and ok false
// when the partitioner places such a key at random (no key; an empty one
// for ConsistentRandom). n must be at least 1.
func (p Partitioner) KeyPartition(key []byte, n int32) (part int32, ok bool) {
	if key == nil || n <= 0 {
		return 0, false
	}
	switch p {
	case ConsistentRandom:
		if len(key) == 0 {
			return 0, false
		}
		return int32(crc32.ChecksumIEEE(key) % uint32(n)), true
	case FNV1aRandom:
		// librdkafka takes the hash as signed and the remainder's
		// absolute value, like Sarama.
		part := int32(fnv1a(key)) % n
		if part < 0 {
			part = -part
		}
		return part, true
	default:
		return int32(uint32(Murmur2(key))&0x7fffffff) % n, true
	}
}

// Partition is where the partitioner puts a record with key among n
// partitions: KeyPartition, or a random partition for a key it does not
// hash. n must be at least 1. Safe for concurrent use.
func (p Partitioner) Partition(key []byte, n int32) int32 {
	if part, ok := p.KeyPartition(key, n); ok {
		return part
	}
	if n <= 1 {
		return 0
	}
	return rand.Int32N(n)
}

// TopicPartitioning is how records of one topic are placed.
type TopicPartitioning struct {
	Partitioner Partitioner
	Partitions  int32
}

// TopicPartitioners maps topics to their partitioning. Read-only once
// built, so safe for concurrent use.
type TopicPartitioners map[string]TopicPartitioning

// Partition is the partition of a record for topic with key under the
// topic's partitioner, or AnyPartition (the producer's own partitioner,
// murmur2_random) for a topic the map does not have, a nil map included.
func (ps TopicPartitioners) Partition(topic string, key []byte) int32 {
	tp, ok := ps[topic]
	if !ok || tp.Partitions < 1 {
		return AnyPartition
	}
	return tp.Partitioner.Partition(key, tp.Partitions)
}

// Murmur2 is the 32-bit murmur2 hash of the Java Kafka client
// (org.apache.kafka.common.utils.Utils.murmur2), which librdkafka's
// murmur2 and murmur2_random partitioners reproduce.
func Murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(data)
	h := seed ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := n &^ 3
	switch n % 4 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// fnv1a is the 32-bit FNV-1a hash.
func fnv1a(data []byte) uint32 {
	h := uint32(0x811c9dc5)
	for _, b := range data {
		h ^= uint32(b)
		h *= 0x01000193
	}
	return h
}
