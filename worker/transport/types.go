package transport

import (
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Eddy's own Kafka types. The rest of the runtime sees only these, never
// confluent-kafka-go's, so it compiles and is unit-tested with fakes and
// without librdkafka's types in its API (docs/architecture.md, "The Kafka
// boundary"). The conversions below are the only ones.

// TopicPartition names one partition of a topic. It is comparable, so it
// serves as a map key.
type TopicPartition struct {
	// Topic is the topic's name.
	Topic string
	// Partition is the partition's number (0-based).
	Partition int32
}

// Offset is a record's position in its partition. A committed offset is the
// offset of the next record to consume (the last one processed + 1).
type Offset int64

// PartitionOffset is an offset in one partition: what Consumer.Commit takes
// (the next offset to consume) and NotAssignedError reports.
type PartitionOffset struct {
	// Topic is the topic's name.
	Topic string
	// Partition is the partition's number.
	Partition int32
	// Offset is the offset to commit.
	Offset Offset
}

// Header is one record header. Headers keep their order and may repeat a
// key.
type Header struct {
	// Key is the header's name.
	Key string
	// Value is the header's value; nil for none.
	Value []byte
}

// Message is one consumed record, as Handler.Message gets it.
type Message struct {
	// Topic and Partition are where the record was read.
	Topic     string
	Partition int32
	// Offset is the record's offset; once it is done, commit Offset+1.
	Offset Offset
	// Key is the record key; nil for none.
	Key []byte
	// Value is the record value; nil for a tombstone.
	Value []byte
	// Headers are the record headers, in order; nil for none.
	Headers []Header
	// Timestamp is the record's timestamp (create or log-append time, as
	// the topic says).
	Timestamp time.Time
}

// kafka.Header and Header must stay convertible field by field: this fails
// to compile if either changes shape.
var _ = kafka.Header(Header{})

// setMessage fills m from a consumed librdkafka record. Key and Value are
// passed through, not copied (confluent-kafka-go made them for this record
// alone); headers are converted only when there are any.
func setMessage(m *Message, km *kafka.Message) {
	*m = Message{
		Topic:     topicOf(km.TopicPartition),
		Partition: km.TopicPartition.Partition,
		Offset:    Offset(km.TopicPartition.Offset),
		Key:       km.Key,
		Value:     km.Value,
		Timestamp: km.Timestamp,
	}
	if len(km.Headers) > 0 {
		m.Headers = make([]Header, len(km.Headers))
		for i, h := range km.Headers {
			m.Headers[i] = Header(h)
		}
	}
}

// kafkaHeaders converts headers for librdkafka; nil when there are none.
func kafkaHeaders(hs []Header) []kafka.Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]kafka.Header, len(hs))
	for i, h := range hs {
		out[i] = kafka.Header(h)
	}
	return out
}

// partitionsOf converts librdkafka's partitions (offsets and errors dropped).
func partitionsOf(kps []kafka.TopicPartition) []TopicPartition {
	if kps == nil {
		return nil
	}
	out := make([]TopicPartition, len(kps))
	for i, kp := range kps {
		out[i] = TopicPartition{Topic: topicOf(kp), Partition: kp.Partition}
	}
	return out
}

// kafkaPartitions converts partitions for librdkafka.
func kafkaPartitions(ps []TopicPartition) []kafka.TopicPartition {
	out := make([]kafka.TopicPartition, len(ps))
	for i, p := range ps {
		topic := p.Topic
		out[i] = kafka.TopicPartition{Topic: &topic, Partition: p.Partition}
	}
	return out
}
