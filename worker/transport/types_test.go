package transport

import (
	"errors"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TestSetMessageAllocations guards the hot path: filling the reused
// Message allocates nothing for a record without headers and one slice for
// a record with headers; Key and Value are passed through.
func TestSetMessageAllocations(t *testing.T) {
	topic := "in"
	km := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 3, Offset: 42},
		Key:            []byte("k"),
		Value:          []byte("v"),
		Timestamp:      time.Unix(1700000000, 0),
	}
	var m Message
	if n := testing.AllocsPerRun(100, func() { setMessage(&m, km) }); n != 0 {
		t.Errorf("setMessage without headers: got %v allocations, want 0", n)
	}
	if m.Topic != "in" || m.Partition != 3 || m.Offset != 42 || &m.Key[0] != &km.Key[0] || &m.Value[0] != &km.Value[0] ||
		m.Headers != nil || !m.Timestamp.Equal(km.Timestamp) {
		t.Errorf("got %+v, want in[3]@42 sharing the record's key and value, no headers", m)
	}
	km.Headers = []kafka.Header{{Key: "a", Value: []byte("1")}, {Key: "b"}}
	if n := testing.AllocsPerRun(100, func() { setMessage(&m, km) }); n != 1 {
		t.Errorf("setMessage with headers: got %v allocations, want 1", n)
	}
	if len(m.Headers) != 2 || m.Headers[0].Key != "a" || string(m.Headers[0].Value) != "1" || m.Headers[1].Key != "b" || m.Headers[1].Value != nil {
		t.Errorf("got headers %q, want [a=1 b]", m.Headers)
	}
}

// TestGroupMetadataWithoutMembership: metadata with no generation and no
// member id (what a consumer carries once its assignment was lost, and
// what librdkafka builds for a producer outside group management) reads
// as such and is refused as not a member: the group coordinator would
// take offsets sent with it unchecked (TestUnfencedOffsetsAccepted).
func TestGroupMetadataWithoutMembership(t *testing.T) {
	m, err := kafka.NewTestConsumerGroupMetadata("g")
	if err != nil {
		t.Fatal(err)
	}
	gm := GroupMetadata{m: m}
	gen, member, known := gm.Member()
	if !known || gen != -1 || member != "" {
		t.Fatalf("Member() = %d, %q, %v; want -1, \"\", true", gen, member, known)
	}
	if err := gm.membership(); !errors.Is(err, ErrNotMember) {
		t.Errorf("membership() = %v, want ErrNotMember", err)
	}
	if _, _, known := (GroupMetadata{}).Member(); known {
		t.Errorf("empty GroupMetadata reads as known")
	}
}
