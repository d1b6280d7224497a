package tables

import (
	"context"
	"time"

	"github.com/eddy-streams/eddy/worker/transport"
)

// ChangelogReader is what restores and standby replicas read changelog
// partitions through. A worker has one (transport.ChangelogReader, adapted
// by TransportReader) that serves every restoring and standby partition:
// each consume adds its partition to it and removes it when done
// (docs/tables.md#recovery). Implementations must be safe for concurrent
// use; tests use a fake.
type ChangelogReader interface {
	// DescribeTopic returns the topic's id and partition count; a missing
	// topic is an error wrapping transport.ErrUnknownTopic.
	DescribeTopic(ctx context.Context, topic string) (transport.TopicInfo, error)
	// Watermarks returns the partition's low watermark and end (the high
	// watermark, or the last stable offset under read_committed), at the
	// isolation level the reader reads at.
	Watermarks(ctx context.Context, topic string, partition int32) (low, high int64, err error)
	// Add starts reading the partition at offset from. A partition is
	// read by one stream at a time.
	Add(topic string, partition int32, from int64) (ChangelogStream, error)
	// Remove stops reading the partition; it may be added again once
	// Remove returns.
	Remove(topic string, partition int32)
}

// ChangelogStream is one partition added to a ChangelogReader.
type ChangelogStream interface {
	// Fetch returns the records (and ends of partition) read since the
	// last Fetch, in offset order, waiting up to wait for the first; none
	// when wait passes. Once the stream has ended it returns the error
	// that ended it: transport.ErrOffsetOutOfRange (records deleted under
	// the reader) or transport.ErrUnknownTopic (wrapped), or another.
	Fetch(ctx context.Context, wait time.Duration) ([]transport.ChangelogEvent, error)
}

// TransportReader adapts the worker's transport.ChangelogReader to
// ChangelogReader. The caller keeps owning (and closes) r.
func TransportReader(r *transport.ChangelogReader) ChangelogReader { return transportReader{r} }

type transportReader struct{ *transport.ChangelogReader }

func (t transportReader) Add(topic string, partition int32, from int64) (ChangelogStream, error) {
	s, err := t.ChangelogReader.Add(topic, partition, from)
	if err != nil {
		return nil, err
	}
	return s, nil
}
