package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// ErrClosed is returned (or passed to a produce callback) once a client has
// begun to close.
var ErrClosed = errors.New("transport: client closed")

// ErrNotRunning is returned by Consumer methods called before Run started
// the underlying librdkafka consumer.
var ErrNotRunning = errors.New("transport: consumer not running")

// ErrAlreadyRunning is returned by a second call of Consumer.Run.
var ErrAlreadyRunning = errors.New("transport: consumer already running (Run may be called once)")

// ErrNotAssigned marks offsets that Consumer.Commit refused to commit because
// their partition is no longer assigned to this consumer; see
// NotAssignedError.
var ErrNotAssigned = errors.New("partition not assigned")

// PartitionMismatchError reports an existing topic whose partition count
// differs from the one declared. Partition counts are never changed
// automatically: keys would move to other partitions and away from their
// table state.
type PartitionMismatchError struct {
	// Topic is the topic's name.
	Topic string
	// Want is the declared partition count.
	Want int
	// Got is the partition count the cluster has.
	Got int
}

// Error names the topic and both partition counts.
func (e *PartitionMismatchError) Error() string {
	return fmt.Sprintf("topic %q has %d partitions, but %d are declared (partition counts are not changed automatically)",
		e.Topic, e.Got, e.Want)
}

// UnreachableError reports that no broker answered within the reach
// timeout. Err is the last error librdkafka reported while trying (e.g. a
// refused connection), or the context's error when it had none.
type UnreachableError struct {
	// Brokers is the bootstrap list that was tried.
	Brokers string
	// Timeout is how long it was tried.
	Timeout time.Duration
	// Err is the cause.
	Err error
}

// Error names the brokers, the timeout and the cause.
func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach Kafka brokers %s within %s: %v", e.Brokers, e.Timeout, e.Err)
}

// Unwrap returns the cause.
func (e *UnreachableError) Unwrap() error { return e.Err }

// AuthError reports that the brokers refused this client's credentials or
// its TLS handshake (docs/kafka.md#security). Err is librdkafka's reason,
// e.g. "SASL authentication error: Authentication failed during
// authentication due to invalid credentials with SASL mechanism
// SCRAM-SHA-256"; it never holds the password.
type AuthError struct {
	// Brokers is the bootstrap list that was tried.
	Brokers string
	// Protocol is the security protocol used.
	Protocol string
	// Err is the cause.
	Err error
}

// Error names the brokers, the protocol and the cause.
func (e *AuthError) Error() string {
	return fmt.Sprintf("Kafka brokers %s refused the connection over %s: %v", e.Brokers, e.Protocol, e.Err)
}

// Unwrap returns the cause.
func (e *AuthError) Unwrap() error { return e.Err }

// NotAssignedError lists offsets that Consumer.Commit did not commit because
// their partitions are no longer assigned to this consumer (generation
// safety: a revoked partition's progress belongs to its new owner). It
// matches ErrNotAssigned with errors.Is.
type NotAssignedError struct {
	// Offsets are the offsets that were not committed.
	Offsets []PartitionOffset
}

// Error lists the skipped offsets as topic[partition]@offset.
func (e *NotAssignedError) Error() string {
	parts := make([]string, len(e.Offsets))
	for i, o := range e.Offsets {
		parts[i] = fmt.Sprintf("%s[%d]@%d", o.Topic, o.Partition, o.Offset)
	}
	return fmt.Sprintf("commit skipped for %s: %v", strings.Join(parts, ", "), ErrNotAssigned)
}

// Is reports whether target is ErrNotAssigned.
func (e *NotAssignedError) Is(target error) bool { return target == ErrNotAssigned }

// KafkaError is one error that a librdkafka client reported, as kept by
// ErrorLog for the status RPC. Repeats of the same error (same client, code,
// topic and partition) are folded into one entry.
type KafkaError struct {
	// Time is when the error was first seen (since it was last folded
	// out of the log).
	Time time.Time
	// Last is when it was last seen; equal to Time when Repeats is 0.
	Last time.Time
	// Repeats counts how many more times it was seen after Time.
	Repeats int
	// Client is the kind of client that reported it: "producer",
	// "consumer" or "admin".
	Client string
	// Code is librdkafka's error code (negative codes are local to the
	// client, positive ones come from a broker).
	Code kafka.ErrorCode
	// CodeName is librdkafka's text for Code, e.g. "Local: All broker
	// connections are down".
	CodeName string
	// Name is librdkafka's symbolic name of Code, e.g. "_ALL_BROKERS_DOWN"
	// (CodeName of the package): a bounded set, the label of
	// eddy_kafka_errors_total. Set by Add when empty.
	Name string
	// Message is the error message of the latest occurrence.
	Message string
	// Fatal reports an unrecoverable client error (the client must be
	// recreated).
	Fatal bool
	// Retriable reports an error that a retry may clear.
	Retriable bool
	// Topic is the topic the error is about, or "" for a client-wide error.
	Topic string
	// Partition is the partition the error is about, or -1.
	Partition int32
}

func (e KafkaError) sameAs(o KafkaError) bool {
	return e.Client == o.Client && e.Code == o.Code && e.Topic == o.Topic && e.Partition == o.Partition
}

// DefaultErrorLogSize is the capacity of an ErrorLog created with a size < 1.
const DefaultErrorLogSize = 64

// relogAfter is how long a repeating error stays out of the logs after it
// was logged; librdkafka repeats some errors many times a second while a
// broker is down.
const relogAfter = 30 * time.Second

// ErrorLog keeps the most recent distinct Kafka errors, for the status RPC:
// a bounded list, oldest first, where a repeat of an error already kept
// moves it to the end and bumps its Repeats. The zero value is not usable:
// create one with NewErrorLog. It is safe for concurrent use; one ErrorLog
// is usually shared by the Admin, Producer and Consumer of a worker (see
// WithErrorLog).
type ErrorLog struct {
	mu      sync.Mutex
	size    int
	entries []logEntry // oldest first
	total   uint64
	onError func(KafkaError)
}

// OnError sets f to be called with every error recorded, repeats
// included, outside the log's lock (the worker counts them in
// eddy_kafka_errors_total). Set it before the clients start.
func (l *ErrorLog) OnError(f func(KafkaError)) {
	l.mu.Lock()
	l.onError = f
	l.mu.Unlock()
}

type logEntry struct {
	KafkaError
	loggedAt time.Time
}

// NewErrorLog returns an ErrorLog keeping the last size distinct errors
// (DefaultErrorLogSize if size < 1).
func NewErrorLog(size int) *ErrorLog {
	if size < 1 {
		size = DefaultErrorLogSize
	}
	return &ErrorLog{size: size, entries: make([]logEntry, 0, size)}
}

// Add records e, folding it into an entry for the same error if one is
// kept, and evicting the oldest entry when full. A zero e.Time is set to
// now.
func (l *ErrorLog) Add(e KafkaError) { l.record(e) }

// record adds e and reports whether it is worth logging: the first
// occurrence, a fatal error, or a repeat last logged over relogAfter ago.
// It returns the entry as kept.
func (l *ErrorLog) record(e KafkaError) (KafkaError, bool) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Name == "" {
		e.Name = CodeName(e.Code)
	}
	e.Last = e.Time
	l.mu.Lock()
	if f := l.onError; f != nil {
		defer f(e) // after the unlock below
	}
	defer l.mu.Unlock()
	l.total++
	ent := logEntry{KafkaError: e, loggedAt: e.Time}
	notable := true
	for i, old := range l.entries {
		if !old.sameAs(e) {
			continue
		}
		l.entries = append(l.entries[:i], l.entries[i+1:]...)
		ent.Time = old.Time
		ent.Repeats = old.Repeats + 1
		ent.loggedAt = old.loggedAt
		if !e.Fatal && e.Last.Sub(old.loggedAt) < relogAfter {
			notable = false
		} else {
			ent.loggedAt = e.Last
		}
		break
	}
	if len(l.entries) == l.size {
		l.entries = append(l.entries[:0], l.entries[1:]...)
	}
	l.entries = append(l.entries, ent)
	return ent.KafkaError, notable
}

// Recent returns the kept errors, oldest first (by latest occurrence), as
// a new slice.
func (l *ErrorLog) Recent() []KafkaError {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]KafkaError, len(l.entries))
	for i, e := range l.entries {
		out[i] = e.KafkaError
	}
	return out
}

// Total returns how many errors were ever added, repeats and evicted ones
// included.
func (l *ErrorLog) Total() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// reporter logs Kafka errors of one client and records them in an ErrorLog.
type reporter struct {
	client string
	logger *slog.Logger
	errs   *ErrorLog
}

// report records err and logs it unless it is a repeat logged recently.
// topic may be "" and partition -1 for a client-wide error. Errors that
// are not kafka.Error are recorded with code ErrUnknown.
func (r reporter) report(err error, topic string, partition int32) {
	ke := KafkaError{
		Time:      time.Now(),
		Client:    r.client,
		Code:      kafka.ErrUnknown,
		Message:   err.Error(),
		Topic:     topic,
		Partition: partition,
	}
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		ke.Code = kerr.Code()
		ke.Fatal = kerr.IsFatal()
		ke.Retriable = kerr.IsRetriable()
	}
	ke.CodeName = ke.Code.String()
	kept, notable := r.errs.record(ke)
	if !notable {
		return
	}
	level := slog.LevelWarn
	if ke.Fatal {
		level = slog.LevelError
	}
	attrs := []slog.Attr{
		slog.String("client", r.client),
		slog.String("code", ke.CodeName),
		slog.Bool("fatal", ke.Fatal),
		slog.Any("err", err),
	}
	if topic != "" {
		attrs = append(attrs, slog.String("topic", topic), slog.Int("partition", int(partition)))
	}
	if kept.Repeats > 0 {
		attrs = append(attrs, slog.Int("repeats", kept.Repeats))
	}
	r.logger.LogAttrs(context.Background(), level, "kafka error", attrs...)
}

// topicOf returns the topic of tp, or "" when unset.
func topicOf(tp kafka.TopicPartition) string {
	if tp.Topic == nil {
		return ""
	}
	return *tp.Topic
}

// MaxMessageBytes is the largest record, with its batch framing, that the
// Producer writes (librdkafka's message.max.bytes) and the max.message.bytes
// the worker gives the topics whose records come from anywhere (dead-letter
// topics), so that a record the worker consumed from a topic allowing large
// records still fits its dead letter. A record larger than this fails with
// a permanent error (see IsPermanent). 16 MiB.
const MaxMessageBytes = 16 << 20

// permanentCodes are the produce errors that producing the same record again
// cannot clear.
var permanentCodes = map[kafka.ErrorCode]bool{
	// Too large: for the producer's message.max.bytes or the topic's
	// max.message.bytes.
	kafka.ErrMsgSizeTooLarge:    true,
	kafka.ErrRecordListTooLarge: true,
	kafka.ErrInvalidMsgSize:     true,
	// Not authorised to write the topic.
	kafka.ErrTopicAuthorizationFailed: true,
	// No such topic or partition. librdkafka reports these only after
	// topic.metadata.propagation.max.ms (30s) without the topic: a topic
	// created concurrently is waited for, not refused.
	kafka.ErrUnknownTopicOrPart: true,
	kafka.ErrUnknownTopic:       true,
	kafka.ErrUnknownPartition:   true,
	// An invalid topic name, or a record the broker refuses to store.
	kafka.ErrTopicException:  true,
	kafka.ErrInvalidRecord:   true,
	kafka.ErrPolicyViolation: true,
	// A timestamp outside what the topic accepts
	// (log.message.timestamp.before/after.max.ms).
	kafka.ErrInvalidTimestamp: true,
}

// IsPermanent reports whether err, as passed to a produce callback, is a
// failure that producing the same record again cannot clear: the record
// is too large (for MaxMessageBytes or the topic's max.message.bytes),
// the worker may not write the topic, the topic or partition does not
// exist, or the broker refuses the record. Such a record is dead-lettered
// with the reason rather than retried.
//
// Every other error is worth retrying with backoff: a message timeout
// during a broker outage, a closing producer (ErrClosed), errors this
// package cannot classify. A fatal producer error is not permanent for the
// record: the producer is unusable and the worker stops (see
// Producer.Fatal). It classifies with errors.As on kafka.Error, never by
// message text. Safe for concurrent use.
func IsPermanent(err error) bool {
	var kerr kafka.Error
	if !errors.As(err, &kerr) || kerr.IsFatal() || errors.Is(err, ErrClosed) {
		return false
	}
	return permanentCodes[kerr.Code()]
}
