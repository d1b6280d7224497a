package transport_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/worker/transport"
)

func TestErrorLogKeepsMostRecent(t *testing.T) {
	l := transport.NewErrorLog(3)
	if got := l.Recent(); len(got) != 0 {
		t.Fatalf("Recent() on empty log = %v, want empty", got)
	}
	for i := range 5 {
		l.Add(transport.KafkaError{Client: "producer", Code: kafka.ErrorCode(i), Message: fmt.Sprint(i)})
	}
	var msgs []string
	for _, e := range l.Recent() {
		msgs = append(msgs, e.Message)
	}
	if fmt.Sprint(msgs) != "[2 3 4]" {
		t.Errorf("Recent() messages = %v, want [2 3 4] (oldest first)", msgs)
	}
	if got := l.Total(); got != 5 {
		t.Errorf("Total() = %d, want 5", got)
	}
}

func TestErrorLogFoldsRepeats(t *testing.T) {
	l := transport.NewErrorLog(3)
	down := transport.KafkaError{Client: "admin", Code: kafka.ErrAllBrokersDown, Partition: -1}
	refused := transport.KafkaError{Client: "admin", Code: kafka.ErrTransport, Partition: -1}
	for i := range 10 {
		refused.Message = fmt.Sprint("refused ", i)
		l.Add(refused)
		down.Message = fmt.Sprint("down ", i)
		l.Add(down)
	}
	got := l.Recent()
	if len(got) != 2 {
		t.Fatalf("Recent() = %+v, want 2 entries", got)
	}
	for i, want := range []struct {
		code    kafka.ErrorCode
		message string
	}{{kafka.ErrTransport, "refused 9"}, {kafka.ErrAllBrokersDown, "down 9"}} {
		e := got[i]
		if e.Code != want.code || e.Message != want.message || e.Repeats != 9 || e.Last.Before(e.Time) {
			t.Errorf("entry %d = code %v, message %q, repeats %d; want %v, %q, 9", i, e.Code, e.Message, e.Repeats, want.code, want.message)
		}
	}
	if got := l.Total(); got != 20 {
		t.Errorf("Total() = %d, want 20", got)
	}
}

func TestErrorLogConcurrent(t *testing.T) {
	l := transport.NewErrorLog(0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				l.Add(transport.KafkaError{Topic: fmt.Sprint(g), Partition: int32(i)})
				_ = l.Recent()
			}
		})
	}
	wg.Wait()
	if got := len(l.Recent()); got != transport.DefaultErrorLogSize {
		t.Errorf("len(Recent()) = %d, want %d", got, transport.DefaultErrorLogSize)
	}
	if got := l.Total(); got != 800 {
		t.Errorf("Total() = %d, want 800", got)
	}
}
