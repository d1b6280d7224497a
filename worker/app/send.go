package app

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/transport"
)

// MaxSendBytes bounds the key and value of one sent record, like the
// largest event the agents take.
const MaxSendBytes = 3 << 20

// UnknownTopicError names a topic that is not declared in the app file.
type UnknownTopicError struct {
	Name     string
	Declared []string
}

func (e *UnknownTopicError) Error() string {
	if len(e.Declared) == 0 {
		return fmt.Sprintf("unknown topic %q: the app declares no topics", e.Name)
	}
	return fmt.Sprintf("unknown topic %q: declared topics are %s", e.Name, quoteList(e.Declared))
}

// Header is a record header. It is transport.Header, so Send hands a
// record's headers to the producer as they are.
type Header = transport.Header

// SendRecord is a record for Send. Partition nil lets the partitioner
// choose from the key.
type SendRecord struct {
	Topic      string
	Key, Value []byte
	Headers    []Header
	Partition  *int32
}

// SendResult is where a sent record landed.
type SendResult struct {
	Partition int32
	Offset    int64
	Timestamp time.Time
}

// TopicInfo is a topic declared in the app file.
type TopicInfo struct {
	Name       string
	Partitions int32
}

// Topics returns the topics of the app file, in its order. Safe for
// concurrent use: the config does not change.
func (a *App) Topics() []TopicInfo {
	out := make([]TopicInfo, 0, len(a.cfg.Topics))
	for _, t := range a.cfg.Topics {
		out = append(out, TopicInfo{Name: t.Name, Partitions: int32(t.Partitions)})
	}
	return out
}

// Send writes one record to a declared topic through the worker's producer
// (acks=all, idempotent) and returns once Kafka acknowledged it, or ctx
// ends (the record may then still be written). Errors: *UnknownTopicError,
// agents.ErrBadRequest (partition out of range, too large), ErrNotRunning (all
// wrapped). Safe for concurrent use.
func (a *App) Send(ctx context.Context, rec SendRecord) (SendResult, error) {
	topic, declared := a.cfg.Topic(rec.Topic)
	partitions := topic.Partitions
	switch {
	case !declared:
		var names []string
		for _, t := range a.cfg.Topics {
			names = append(names, t.Name)
		}
		return SendResult{}, &UnknownTopicError{Name: rec.Topic, Declared: names}
	case rec.Partition != nil && (*rec.Partition < 0 || int(*rec.Partition) >= partitions):
		return SendResult{}, fmt.Errorf("topic %q has partitions 0..%d, not %d: %w", rec.Topic, partitions-1, *rec.Partition, agents.ErrBadRequest)
	case len(rec.Key)+len(rec.Value) > MaxSendBytes:
		return SendResult{}, fmt.Errorf("key and value are %d bytes, above the limit of %d: %w", len(rec.Key)+len(rec.Value), MaxSendBytes, agents.ErrBadRequest)
	}
	a.mu.Lock()
	p := a.producer
	a.mu.Unlock()
	if p == nil || !a.State().Serving() {
		return SendResult{}, errNotRunning(a.State())
	}
	tr := transport.Record{Topic: rec.Topic, Key: rec.Key, Value: rec.Value, Headers: rec.Headers, Timestamp: time.Now()}
	// The partition is chosen here, by the topic's partitioner
	// (topics[].partitioner), so the answer can name it; a record without
	// key goes to a random partition.
	switch {
	case rec.Partition != nil:
		tr.Partition = *rec.Partition
	case len(rec.Key) > 0:
		tr.Partition = a.partitioners.Partition(rec.Topic, rec.Key)
	default:
		tr.Key = nil
		tr.Partition = rand.Int32N(int32(partitions))
	}
	type done struct {
		off int64
		err error
	}
	ch := make(chan done, 1) // the callback must not block
	p.ProduceOffset(tr, func(off int64, err error) { ch <- done{off, err} })
	select {
	case d := <-ch:
		if d.err != nil {
			return SendResult{}, fmt.Errorf("%w: writing to %q: %w", ErrUnavailable, rec.Topic, d.err)
		}
		return SendResult{Partition: tr.Partition, Offset: d.off, Timestamp: tr.Timestamp}, nil
	case <-ctx.Done():
		return SendResult{}, fmt.Errorf("waiting for Kafka to acknowledge the record on %q: %w", rec.Topic, ctx.Err())
	}
}
