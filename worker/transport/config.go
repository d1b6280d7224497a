package transport

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// IsolationLevel says which records a consumer reads.
type IsolationLevel string

const (
	// ReadUncommitted reads every record, including those of open or aborted
	// transactions. It is the default, and the right level for
	// processing_guarantee at_least_once.
	ReadUncommitted IsolationLevel = "read_uncommitted"
	// ReadCommitted reads only records of committed transactions (and
	// non-transactional ones); processing_guarantee exactly_once needs it.
	ReadCommitted IsolationLevel = "read_committed"
)

// Defaults of Config. DefaultConfig returns a Config holding them; a zero
// field of a Config passed to this package means the same default.
const (
	// DefaultClientID is the client.id sent when Config.ClientID is empty.
	DefaultClientID = "eddy"
	// DefaultSessionTimeout is the consumer group session timeout.
	DefaultSessionTimeout = 45 * time.Second
	// DefaultMaxPollInterval is the longest the consumer may go without
	// polling before it is expelled from its group.
	DefaultMaxPollInterval = 5 * time.Minute
	// DefaultReachTimeout bounds how long Admin.Ping waits for a broker.
	DefaultReachTimeout = 10 * time.Second
	// DefaultLinger is how long the producer waits to fill a batch.
	DefaultLinger = 5 * time.Millisecond
)

// Config configures the Kafka clients of this package (Admin, Producer,
// Consumer). Each field documents its default and unit; a zero value means
// the default. Call Validate before use (the constructors do). A Config is a
// plain value: copy it freely; it is not mutated by this package.
type Config struct {
	// Brokers is the comma-separated bootstrap list, "host:port[,host:port]"
	// (librdkafka's bootstrap.servers). Required; no default.
	Brokers string
	// ClientID is sent to brokers as client.id and shows up in consumer
	// group descriptions; the worker advertises its gRPC address in it so
	// other workers can find a partition's owner. Default: "eddy".
	ClientID string
	// GroupID is the consumer group id (the app name). Required by
	// NewConsumer; unused by Admin and Producer. No default.
	GroupID string
	// GroupInstanceID, when set, makes the consumer a static group member
	// (group.instance.id, KIP-345): a restart within SessionTimeout causes
	// no rebalance. It must be unique within the group. Default: empty
	// (dynamic membership).
	GroupInstanceID string
	// SessionTimeout is the consumer group session timeout: a member whose
	// heartbeats stop for this long is expelled and its partitions
	// reassigned. Must lie within the broker's group.min/max.session.timeout.ms
	// (6s..30m by default). Millisecond resolution. Default: 45s.
	SessionTimeout time.Duration
	// MaxPollInterval is max.poll.interval.ms: the consumer leaves its group
	// (and reports an error) when its poll loop stalls this long. Must be at
	// least SessionTimeout. Millisecond resolution. Default: 5m.
	MaxPollInterval time.Duration
	// ReachTimeout bounds how long Admin.Ping waits for the brokers to
	// answer, and each admin request. librdkafka itself retries a missing
	// broker forever, so this is what turns "no broker" into an error.
	// Default: 10s.
	ReachTimeout time.Duration
	// Linger is the producer's linger.ms: how long a record may wait for
	// others to join its batch. Millisecond resolution. Default: 5ms.
	Linger time.Duration
	// MessageTimeout is the producer's message.timeout.ms: a record not
	// acknowledged by then is failed to its callback. Millisecond
	// resolution. Default (0): librdkafka's, 5 minutes.
	MessageTimeout time.Duration
	// StatsInterval is librdkafka's statistics.interval.ms for the
	// consumer: how often a Handler implementing StatsHandler receives the
	// statistics JSON (consumer lag per partition). Default (0): off.
	StatsInterval time.Duration
	// IsolationLevel is the consumer's isolation.level. Default:
	// ReadUncommitted. processing_guarantee exactly_once uses ReadCommitted.
	IsolationLevel IsolationLevel
	// TransactionalID makes the Producer transactional (processing_guarantee
	// exactly_once: one transactional producer per worker, its id stable
	// across restarts, docs/kafka.md#exactly-once). Default: empty (not
	// transactional).
	TransactionalID string
	// TransactionTimeout is transaction.timeout.ms of a transactional
	// Producer: the coordinator aborts a transaction left open this long
	// (a crashed worker's), and read_committed readers wait at most this
	// long for it. It must exceed the longest transaction: the commit
	// interval plus a revoke's deadline. Millisecond resolution. Default:
	// 30s. Unused without TransactionalID.
	TransactionTimeout time.Duration
	// Security is how every client connects to the brokers: the protocol,
	// SASL credentials and TLS files (docs/kafka.md#security). Default:
	// PLAINTEXT.
	Security Security
	// Overrides are raw librdkafka properties applied last to every client
	// this package creates (a producer-only property given to a consumer
	// is ignored by librdkafka with a logged warning), except those the
	// ChangelogReader owns (auto.offset.reset, enable.partition.eof,
	// isolation.level, queued.max.messages.kbytes, ...: changelogReaderOwned,
	// docs/kafka.md), which it skips with a logged warning. Properties whose
	// change would break this package's contract are rejected by Validate:
	// go.* (channel plumbing), enable.auto.commit, enable.auto.offset.store
	// (the commit frontier commits explicitly) and
	// partition.assignment.strategy (the Consumer does incremental
	// assignment). Default: none.
	Overrides map[string]string
}

// DefaultConfig returns a Config with every defaulted field set. Brokers (and
// GroupID for a consumer) still have to be filled in.
func DefaultConfig() Config {
	return Config{
		ClientID:        DefaultClientID,
		SessionTimeout:  DefaultSessionTimeout,
		MaxPollInterval: DefaultMaxPollInterval,
		ReachTimeout:    DefaultReachTimeout,
		Linger:          DefaultLinger,
		IsolationLevel:  ReadUncommitted,
	}
}

// forbiddenOverrides are librdkafka properties that Overrides may not set,
// with the reason.
var forbiddenOverrides = map[string]string{
	"enable.auto.commit":            "offsets are committed explicitly (commit frontier)",
	"enable.auto.offset.store":      "offsets are committed explicitly (commit frontier)",
	"partition.assignment.strategy": "the consumer uses cooperative-sticky incremental assignment",
	"bootstrap.servers":             "use Brokers",
	"metadata.broker.list":          "use Brokers",
	"group.id":                      "use GroupID",
	"group.instance.id":             "use GroupInstanceID",
	"transactional.id":              "use TransactionalID",
}

// Validate reports the first invalid field, named as in the struct
// ("transport: Brokers: ..."). It does not contact Kafka and does not check
// librdkafka property names in Overrides (librdkafka does, when a client is
// created).
func (c Config) Validate() error {
	if strings.TrimSpace(c.Brokers) == "" {
		return errors.New("transport: Brokers: required (host:port[,host:port])")
	}
	for _, b := range strings.Split(c.Brokers, ",") {
		b = strings.TrimSpace(b)
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" {
			return fmt.Errorf("transport: Brokers: %q is not host:port", b)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("transport: Brokers: %q: port must be 1..65535", b)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"SessionTimeout", c.SessionTimeout},
		{"MaxPollInterval", c.MaxPollInterval},
		{"ReachTimeout", c.ReachTimeout},
		{"Linger", c.Linger},
		{"MessageTimeout", c.MessageTimeout},
		{"TransactionTimeout", c.TransactionTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("transport: %s: must not be negative, got %s", d.name, d.v)
		}
	}
	if s := c.sessionTimeout(); s < time.Second {
		return fmt.Errorf("transport: SessionTimeout: must be at least 1s, got %s", s)
	}
	if c.maxPollInterval() < c.sessionTimeout() {
		return fmt.Errorf("transport: MaxPollInterval: %s is shorter than SessionTimeout %s",
			c.maxPollInterval(), c.sessionTimeout())
	}
	if c.TransactionalID != "" && c.MessageTimeout > c.transactionTimeout() {
		return fmt.Errorf("transport: MessageTimeout: %s exceeds TransactionTimeout %s (librdkafka requires message.timeout.ms <= transaction.timeout.ms)",
			c.MessageTimeout, c.transactionTimeout())
	}
	switch c.IsolationLevel {
	case "", ReadUncommitted, ReadCommitted:
	default:
		return fmt.Errorf("transport: IsolationLevel: %q is not %q or %q",
			c.IsolationLevel, ReadUncommitted, ReadCommitted)
	}
	if err := c.Security.validate(c.Overrides); err != nil {
		return err
	}
	for k := range c.Overrides {
		if strings.TrimSpace(k) == "" {
			return errors.New("transport: Overrides: empty property name")
		}
		if strings.HasPrefix(k, "go.") {
			return fmt.Errorf("transport: Overrides[%q]: go.* properties are owned by the transport package", k)
		}
		if why, ok := forbiddenOverrides[k]; ok {
			return fmt.Errorf("transport: Overrides[%q]: may not be overridden: %s", k, why)
		}
	}
	return nil
}

func (c Config) clientID() string {
	if c.ClientID == "" {
		return DefaultClientID
	}
	return c.ClientID
}

func (c Config) sessionTimeout() time.Duration {
	if c.SessionTimeout == 0 {
		return DefaultSessionTimeout
	}
	return c.SessionTimeout
}

func (c Config) maxPollInterval() time.Duration {
	if c.MaxPollInterval == 0 {
		return DefaultMaxPollInterval
	}
	return c.MaxPollInterval
}

func (c Config) reachTimeout() time.Duration {
	if c.ReachTimeout == 0 {
		return DefaultReachTimeout
	}
	return c.ReachTimeout
}

func (c Config) linger() time.Duration {
	if c.Linger == 0 {
		return DefaultLinger
	}
	return c.Linger
}

func (c Config) isolationLevel() IsolationLevel {
	if c.IsolationLevel == "" {
		return ReadUncommitted
	}
	return c.IsolationLevel
}

func ms(d time.Duration) int { return int(d / time.Millisecond) }

// common returns the properties every client gets.
func (c Config) common() kafka.ConfigMap {
	m := kafka.ConfigMap{
		"bootstrap.servers": c.Brokers,
		"client.id":         c.clientID(),
		// librdkafka's own log lines go to a channel that forwardLogs
		// turns into slog records instead of raw stderr.
		"go.logs.channel.enable": true,
		// Idle connections closed by the broker are routine, not news.
		"log.connection.close": false,
	}
	c.Security.properties(m)
	return m
}

// apply sets the Overrides on m, last, so they win.
func (c Config) apply(m kafka.ConfigMap) kafka.ConfigMap {
	for k, v := range c.Overrides {
		m[k] = v
	}
	return m
}

// producerConfig is the librdkafka configuration of Producer.
func (c Config) producerConfig() kafka.ConfigMap {
	m := c.common()
	for k, v := range map[string]kafka.ConfigValue{
		"acks":               "all",
		"enable.idempotence": true,
		// Same partitioning as the Java client, so topics written by other
		// Kafka apps co-partition with Eddy's tables.
		"partitioner": "murmur2_random",
		"linger.ms":   ms(c.linger()),
		// 1 MiB batches, at most 10k records each; at most 64 MiB or 100k
		// records waiting locally, past which Produce blocks (backpressure).
		"batch.size":                   1 << 20,
		"batch.num.messages":           10000,
		"queue.buffering.max.kbytes":   64 << 10,
		"queue.buffering.max.messages": 100000,
		// Records up to MaxMessageBytes: a dead letter carries a record
		// consumed from a topic that may allow more than librdkafka's
		// 1,000,000-byte default.
		"message.max.bytes": MaxMessageBytes,
		// Topics are created explicitly (Admin.EnsureTopics); a typo must
		// fail, not create a topic with broker defaults.
		"allow.auto.create.topics": false,
		// Delivery reports only need Opaque (the callback id) and the
		// error; copying key and value back into Go is wasted work.
		"go.delivery.report.fields": "none",
		"go.events.channel.size":    10000,
		// ProduceChannel is not used.
		"go.produce.channel.size": 1,
	} {
		m[k] = v
	}
	if c.MessageTimeout > 0 {
		m["message.timeout.ms"] = ms(c.MessageTimeout)
	}
	if c.TransactionalID != "" {
		m["transactional.id"] = c.TransactionalID
		m["transaction.timeout.ms"] = ms(c.transactionTimeout())
		if c.MessageTimeout <= 0 {
			m["message.timeout.ms"] = ms(c.transactionTimeout())
		}
	}
	return c.apply(m)
}

// DefaultTransactionTimeout is the default of Config.TransactionTimeout.
const DefaultTransactionTimeout = 30 * time.Second

func (c Config) transactionTimeout() time.Duration {
	if c.TransactionTimeout <= 0 {
		return DefaultTransactionTimeout
	}
	return c.TransactionTimeout
}

// consumerConfig is the librdkafka configuration of Consumer.
func (c Config) consumerConfig() kafka.ConfigMap {
	m := c.common()
	for k, v := range map[string]kafka.ConfigValue{
		"group.id":                      c.GroupID,
		"session.timeout.ms":            ms(c.sessionTimeout()),
		"max.poll.interval.ms":          ms(c.maxPollInterval()),
		"enable.auto.commit":            false,
		"enable.auto.offset.store":      false,
		"partition.assignment.strategy": "cooperative-sticky",
		"auto.offset.reset":             "earliest",
		"isolation.level":               string(c.isolationLevel()),
		"allow.auto.create.topics":      false,
		"enable.partition.eof":          false,
	} {
		m[k] = v
	}
	if c.GroupInstanceID != "" {
		m["group.instance.id"] = c.GroupInstanceID
	}
	if c.StatsInterval > 0 {
		m["statistics.interval.ms"] = ms(c.StatsInterval)
	}
	// librdkafka requires heartbeat.interval.ms < session.timeout.ms; its
	// default (3s) breaks short session timeouts.
	if hb := c.sessionTimeout() / 3; hb < 3*time.Second {
		m["heartbeat.interval.ms"] = ms(hb)
	}
	return c.apply(m)
}

// adminConfig is the librdkafka configuration of the producer handle that
// Admin runs its requests on.
func (c Config) adminConfig() kafka.ConfigMap {
	m := c.common()
	m["allow.auto.create.topics"] = false
	m["go.delivery.reports"] = false
	m["go.events.channel.size"] = 1000
	m["go.produce.channel.size"] = 1
	return c.apply(m)
}

// changelogReaderOwned are the librdkafka properties ChangelogReader sets
// itself and does not take from Overrides, with the reason (the reader
// logs each one it skips). Every other override applies, e.g. security.*,
// sasl.*, ssl.*, fetch.* and socket settings.
var changelogReaderOwned = map[string]string{
	"auto.offset.reset":          `must be "error": an offset out of range means records were deleted under a restore, which it must hear`,
	"enable.partition.eof":       "must be true: restores and standbys notice the partition's end by it",
	"isolation.level":            "follows IsolationLevel, the same level the end offsets are measured at",
	"queued.max.messages.kbytes": "bounds the memory of every restoring and standby partition together",
	"allow.auto.create.topics":   "a missing changelog must be reported, not created",
	"statistics.interval.ms":     "the reader reads no statistics",
	"enable.auto.commit":         "the reader commits nothing",
	"auto.commit.enable":         "the reader commits nothing",
	"enable.auto.offset.store":   "the reader commits nothing",
	"max.poll.interval.ms":       "the reader joins no group",
	"session.timeout.ms":         "the reader joins no group",
}

// changelogReaderConfig is the librdkafka configuration of
// ChangelogReader: a consumer that is only ever assigned partitions (no
// group membership, no commits), with the Overrides applied except those
// in changelogReaderOwned, which it returns with the reason.
func (c Config) changelogReaderConfig() (kafka.ConfigMap, map[string]string) {
	m := c.common()
	for k, v := range map[string]kafka.ConfigValue{
		// confluent-kafka-go requires a group.id; the reader only assigns
		// partitions, so it joins no group and commits nothing.
		"group.id":                 c.clientID() + "-changelog-reader",
		"enable.auto.commit":       false,
		"enable.auto.offset.store": false,
		"auto.offset.reset":        "error",
		"enable.partition.eof":     true,
		"isolation.level":          string(c.isolationLevel()),
		"allow.auto.create.topics": false,
		// One prefetch queue for every partition the reader has
		// (librdkafka's high-level consumer bounds its single queue).
		"queued.max.messages.kbytes": changelogPrefetchKiB,
		// With many partitions on one consumer, the prefetch thresholds
		// (queued.min.messages, queued.max.messages.kbytes) are reached
		// by the queue they share, and librdkafka then postpones each
		// partition's next fetch by this much (1s by default), which
		// halved restore throughput; the poll goroutine drains the queue
		// in far less.
		"fetch.queue.backoff.ms": 10,
	} {
		m[k] = v
	}
	skipped := map[string]string{}
	for k, v := range c.Overrides {
		if why, ok := changelogReaderOwned[k]; ok {
			skipped[k] = why
			continue
		}
		m[k] = v
	}
	return m, skipped
}
