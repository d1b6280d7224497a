// Package tables is the storage and recovery layer of Eddy's tables
// (docs/tables.md): changelog-backed key/value state, partitioned like the
// source topic of the agents that use it.
//
//   - Store: one buntdb file per table partition, <data_dir>/<table>/<partition>.db,
//     holding the values and the last applied changelog offset (the
//     checkpoint).
//   - Changelog: the compacted topic <app>-<table>-changelog, one partition
//     per source partition; a mutation is a record keyed by the table key, a
//     delete is a tombstone. Changelog builds its TopicSpec and turns
//     mutations into transport.Record values for the caller to produce.
//   - Restorer: brings a table partition's store from its checkpoint up to
//     the changelog's end, or rebuilds it from the beginning when the local
//     file is missing, corrupt, ahead of the changelog, or otherwise not to
//     be trusted.
//   - Standby: tails the changelog of a partition owned by another worker
//     into a local store, so a takeover only replays the tail.
//   - ChangelogReader: what restores and standbys read through; the worker
//     passes its one transport.ChangelogReader (TransportReader), which
//     serves all of them, and tests pass fakes. The package imports no
//     Kafka client library.
//   - Window: tumbling and hopping window arithmetic and the key encoding of
//     windowed tables.
//
// It is part of the runtime and imports no gRPC. docs/tables.md describes
// tables for users and operators, including why each recovery decision is
// safe.
package tables
