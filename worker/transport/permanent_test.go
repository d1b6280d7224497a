package transport_test

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/worker/transport"
)

func TestIsPermanent(t *testing.T) {
	wrap := func(code kafka.ErrorCode) error {
		return fmt.Errorf("transport: produce to t[0]: %w", kafka.NewError(code, code.String(), false))
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain error", errors.New("Broker: Message size too large"), false}, // never by text
		{"too large", wrap(kafka.ErrMsgSizeTooLarge), true},
		{"batch too large", wrap(kafka.ErrRecordListTooLarge), true},
		{"not authorised", wrap(kafka.ErrTopicAuthorizationFailed), true},
		{"unknown topic or partition", wrap(kafka.ErrUnknownTopicOrPart), true},
		{"unknown topic (local)", wrap(kafka.ErrUnknownTopic), true},
		{"unknown partition (local)", wrap(kafka.ErrUnknownPartition), true},
		{"invalid topic", wrap(kafka.ErrTopicException), true},
		{"message timed out", wrap(kafka.ErrMsgTimedOut), false},
		{"all brokers down", wrap(kafka.ErrAllBrokersDown), false},
		{"not enough replicas", wrap(kafka.ErrNotEnoughReplicas), false},
		{"fatal", fmt.Errorf("transport: producer failed: %w", kafka.NewError(kafka.ErrMsgSizeTooLarge, "x", true)), false},
		{"closing", fmt.Errorf("%w: %w", transport.ErrClosed, wrap(kafka.ErrUnknownTopic)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := transport.IsPermanent(tt.err); got != tt.want {
				t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// The producer writes records over librdkafka's 1,000,000-byte default
// (up to MaxMessageBytes) to a topic that allows them; a record the topic
// does not allow, or one over MaxMessageBytes, fails with a permanent
// error.
func TestProduceLargeRecords(t *testing.T) {
	cfg := testConfig(t)
	ad := newAdmin(t, cfg)
	big := "large-" + kafkatest.Group(t)
	if err := ad.EnsureTopics(t.Context(), []transport.TopicSpec{{Name: big, Partitions: 1,
		Config: map[string]string{"max.message.bytes": strconv.Itoa(8 << 20)}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ad.DeleteTopics(t.Context(), []string{big}) })
	small := kafkatest.Topic(t, 1) // broker defaults: about 1 MB
	p := newProducer(t, cfg)
	tests := []struct {
		name      string
		topic     string
		size      int
		permanent bool
	}{
		{"3.5 MiB to a topic allowing 8 MB", big, 7 << 19, false},
		{"3.5 MiB to a topic with broker defaults", small, 7 << 19, true},
		{"over MaxMessageBytes", big, transport.MaxMessageBytes + 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan error, 1)
			p.Produce(transport.Record{Topic: tt.topic, Partition: 0, Value: bytes.Repeat([]byte("x"), tt.size)},
				func(err error) { done <- err })
			var err error
			select {
			case err = <-done:
			case <-time.After(waitTimeout):
				t.Fatal("no callback")
			}
			switch {
			case tt.permanent && !transport.IsPermanent(err):
				t.Errorf("got %v, want a permanent error", err)
			case !tt.permanent && err != nil:
				t.Errorf("got %v, want nil", err)
			}
		})
	}
}
