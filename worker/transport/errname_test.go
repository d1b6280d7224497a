package transport_test

import (
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/worker/transport"
)

func TestCodeName(t *testing.T) {
	for code, want := range map[kafka.ErrorCode]string{
		kafka.ErrAllBrokersDown:     "_ALL_BROKERS_DOWN",
		kafka.ErrTransport:          "_TRANSPORT",
		kafka.ErrUnknownTopicOrPart: "UNKNOWN_TOPIC_OR_PART",
		kafka.ErrUnknown:            "UNKNOWN",
	} {
		if got := transport.CodeName(code); got != want {
			t.Errorf("CodeName(%d) = %q, want %q", code, got, want)
		}
	}
}
