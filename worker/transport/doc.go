// Package transport is the worker's Kafka layer over confluent-kafka-go
// (librdkafka): an Admin (reachability, topic creation), a Producer
// (acks=all, idempotent, a callback per record that feeds the commit
// frontier) and a Consumer (consumer group with cooperative-sticky
// incremental rebalancing, explicit commits, pause/resume, optional static
// membership), and a ChangelogReader (one consumer in assign mode that
// reads every changelog partition being restored or tailed, routing records
// by partition). Kafka errors are logged with log/slog and kept in an ErrorLog
// for the status RPC.
//
// It is the Kafka boundary: the only package of the runtime that imports
// the client library (the tables' restore consumers aside, for now). It
// exports Eddy's own record, partition, offset and
// header types (types.go), and converts to and from the library's there
// alone, so the rest of the runtime is tested with fakes of them
// (docs/architecture.md, "The Kafka boundary").
//
// It is part of the runtime and imports no gRPC. The settings each client
// uses, and why, are in docs/kafka.md.
package transport
