// Package integration holds end-to-end tests: real worker and workerctl
// processes against a real Apache Kafka broker started by scripts/kafka/,
// checked with independent clients (grpcurl, a plain Kafka consumer).
package integration
