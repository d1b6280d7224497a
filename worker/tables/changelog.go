package tables

import (
	"fmt"
	"strconv"
	"time"

	"github.com/eddy-streams/eddy/worker/transport"
)

// DeleteRetention is the delete.retention.ms a changelog topic is created
// with: how long the broker keeps a tombstone after compacting it in. A
// local checkpoint that fell further behind than that may have missed a
// tombstone, which is why Config.MaxCheckpointAge defaults to less.
const DeleteRetention = 24 * time.Hour

// ChangelogTopic returns the name of a table's changelog topic,
// "<app>-<table>-changelog".
func ChangelogTopic(app, table string) string { return app + "-" + table + "-changelog" }

// Changelog is a table's changelog topic: compacted, one partition per
// partition of the table's source topic, a record per mutation (key = table
// key, value = new value, tombstone = delete). The value is plain data; its
// methods are safe for concurrent use.
type Changelog struct {
	// App is the app name (the topic prefix). Required.
	App string
	// Table is the table name. Required.
	Table string
}

// Topic returns the changelog topic's name.
func (c Changelog) Topic() string { return ChangelogTopic(c.App, c.Table) }

// Spec returns the changelog topic for transport.Admin.EnsureTopics:
// partitions must be the source topic's partition count (table partition p
// lives with source partition p); replicationFactor 0 means the broker's
// default. Configs: cleanup.policy=compact (the latest value of every key
// is kept forever, tombstones for DeleteRetention) and
// delete.retention.ms=DeleteRetention.
//
// Windowed tables use the same compacted topic: expired windows are deleted
// like any other key (a tombstone), so the changelog always folds to
// exactly the store.
func (c Changelog) Spec(partitions, replicationFactor int) transport.TopicSpec {
	return transport.TopicSpec{
		Name:              c.Topic(),
		Partitions:        partitions,
		ReplicationFactor: replicationFactor,
		Config: map[string]string{
			"cleanup.policy":      "compact",
			"delete.retention.ms": strconv.FormatInt(DeleteRetention.Milliseconds(), 10),
		},
	}
}

// Records returns the changelog records of muts for table partition
// partition, in order: the partition is explicit (the source partition),
// never the partitioner's choice, so a key's changelog record lands where
// its state lives whatever its hash. A delete becomes a tombstone (nil
// Value); a set with a nil or empty value becomes an empty, non-nil Value,
// which Kafka keeps apart from a tombstone. The records share the byte
// slices of muts (Producer.Produce copies them). Empty keys are refused
// (ErrEmptyKey): compaction needs a key.
//
// The caller produces the records and applies muts to the Store with the
// offset of the last record only once Kafka acknowledged them all: that is
// how the commit frontier covers changelog writes.
func (c Changelog) Records(partition int32, muts []Mutation) ([]transport.Record, error) {
	return c.AppendRecords(make([]transport.Record, 0, len(muts)), partition, muts)
}

// AppendRecords is Records appending to dst.
func (c Changelog) AppendRecords(dst []transport.Record, partition int32, muts []Mutation) ([]transport.Record, error) {
	if partition < 0 {
		return dst, fmt.Errorf("tables: changelog %s: partition %d: must not be negative", c.Topic(), partition)
	}
	topic := c.Topic()
	for i, m := range muts {
		if len(m.Key) == 0 {
			return dst, fmt.Errorf("tables: changelog %s: mutation %d: %w", topic, i, ErrEmptyKey)
		}
		rec := transport.Record{Topic: topic, Partition: partition, Key: m.Key}
		if !m.Delete {
			rec.Value = m.Value
			if rec.Value == nil {
				rec.Value = []byte{}
			}
		}
		dst = append(dst, rec)
	}
	return dst, nil
}

// mutationOf turns a changelog record back into a mutation: a nil value is
// a tombstone.
func mutationOf(key, value []byte) Mutation {
	if value == nil {
		return Mutation{Key: key, Delete: true}
	}
	return Mutation{Key: key, Value: value}
}
