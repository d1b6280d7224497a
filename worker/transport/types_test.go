package transport

import (
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
