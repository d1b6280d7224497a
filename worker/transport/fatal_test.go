package transport

import (
	"errors"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TestProducerFatalError injects a fatal error into librdkafka (no broker
// needed) and checks that the Producer surfaces it and fails later records.
func TestProducerFatalError(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Brokers = "127.0.0.1:1"
	p, err := NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())

	if code := p.p.TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "injected by test"); code != kafka.ErrNoError {
		t.Fatalf("TestFatalError = %v", code)
	}
	select {
	case <-p.Fatal():
	case <-time.After(30 * time.Second):
		t.Fatal("Fatal() not closed after a fatal error")
	}
	var kerr kafka.Error
	if !errors.As(p.Err(), &kerr) || !kerr.IsFatal() {
		t.Fatalf("Err() = %v, want a fatal kafka.Error", p.Err())
	}
	fatalLogged := false
	for _, e := range p.Errors().Recent() {
		fatalLogged = fatalLogged || e.Fatal
	}
	if !fatalLogged {
		t.Errorf("ErrorLog %+v has no fatal entry", p.Errors().Recent())
	}
	done := make(chan error, 1)
	p.Produce(Record{Topic: "t", Partition: AnyPartition}, func(err error) { done <- err })
	if err := <-done; !errors.As(err, &kerr) || !kerr.IsFatal() {
		t.Errorf("Produce after a fatal error: callback got %v, want the fatal error", err)
	}
}
