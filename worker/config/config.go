// Package config holds the app file: the YAML document every worker of an app
// runs with, its defaults, its validation, and overrides from the environment.
//
// Precedence, highest first: command-line flags (applied by cmd/worker),
// EDDY_* environment variables (ApplyEnv), the app file, DefaultConfig.
package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is the app file. Every field documents its default and unit.
type Config struct {
	// App names the app. It is the consumer group id and the prefix of the
	// app's internal topics (changelogs, dead-letter topics). Required.
	App string `yaml:"app"`
	// WorkerID identifies this worker within the app in logs, status and the
	// consumer group's client.id; under exactly_once it names the worker's
	// transactional id (<app>-<worker_id>), which must be the same after a
	// restart and unique among live workers. Default: "<hostname>-<pid>";
	// under exactly_once "<hostname>-<random>", created on first start and
	// kept in <data_dir>/worker-id.
	WorkerID string `yaml:"worker_id"`
	// Brokers is the comma-separated Kafka bootstrap list, or "embedded" for
	// the in-process dev broker (keeps nothing). Required.
	Brokers string `yaml:"brokers"`
	// DataDir holds the local table stores. Default: ./eddy-data.
	DataDir string `yaml:"data_dir"`
	// Listen holds the addresses of the control plane.
	Listen Listen `yaml:"listen"`
	// ProcessingGuarantee is at_least_once (default) or exactly_once: every
	// commit cycle is then a Kafka transaction holding the outputs,
	// changelog and dead-letter records of the events below the offsets it
	// commits (docs/kafka.md#exactly-once). Under exactly_once the worker's
	// identity must survive restarts: WorkerID, or the one kept in DataDir.
	ProcessingGuarantee string `yaml:"processing_guarantee"`
	// ShutdownTimeout bounds graceful shutdown; past it the worker exits
	// anyway with a non-zero status. Default: 30s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// Auth configures bearer-token authentication.
	Auth Auth `yaml:"auth"`
	// TLS enables TLS on the gRPC and HTTP listeners when both files are
	// given, mutual TLS with ClientCAFile, and verified forwarding to the
	// other workers with PeerCAFile.
	TLS TLS `yaml:"tls"`
	// Log configures logging.
	Log Log `yaml:"log"`
	// Kafka tunes the Kafka clients.
	Kafka Kafka `yaml:"kafka"`
	// Monitor configures metrics and stall detection.
	Monitor Monitor `yaml:"monitor"`
	// Commit configures how often the commit frontier is committed.
	Commit Commit `yaml:"commit"`
	// Limits bound the worker's memory.
	Limits Limits `yaml:"limits"`
	// Topics declares the topics the app reads or writes; missing ones are
	// created at start, existing ones must have the declared partition count.
	Topics []Topic `yaml:"topics"`
	// Agents declares the agents: the remote processing functions.
	Agents []Agent `yaml:"agents"`
	// Tables declares the changelog-backed state tables.
	Tables []Table `yaml:"tables"`
}

// Listen holds listen addresses. Both default to loopback.
type Listen struct {
	// GRPC is the gRPC control-plane and agent address. Default: 127.0.0.1:6066.
	GRPC string `yaml:"grpc"`
	// HTTP serves /metrics, /healthz and /readyz. Default: 127.0.0.1:6067.
	HTTP string `yaml:"http"`
	// Advertise is the host:port other workers of the app dial to reach
	// this worker's gRPC listener (table queries forwarded to the owner,
	// standby placement); it is published in the consumer group's
	// client.id. A port of 0 stands for the port GRPC is bound to.
	// Default: the bound GRPC address. Required when GRPC listens on every
	// interface (0.0.0.0, ::, or an empty host), since peers cannot dial
	// that.
	Advertise string `yaml:"advertise"`
}

// Auth configures bearer-token authentication.
type Auth struct {
	// Token, when set, is required from agents and on mutating management
	// calls ("authorization: Bearer <token>"). Default: empty (no auth).
	Token string `yaml:"token"`
	// ProtectReads requires the token on read-only calls too (status,
	// agents, tables, monitor); health and reflection stay open.
	// Default: false.
	ProtectReads bool `yaml:"protect_reads"`
	// AllowPlaintext lets a worker with a Token listen without TLS on an
	// address other than loopback, where the token would cross the network
	// in clear text. Without it such a worker refuses to start.
	// Default: false.
	AllowPlaintext bool `yaml:"allow_plaintext"`
}

// TLS configures TLS for the gRPC and HTTP listeners and for the reads
// forwarded to the other workers (docs/operations.md#security).
type TLS struct {
	// CertFile is a PEM certificate chain served on both listeners and
	// presented to the other workers as a client certificate when
	// forwarding. Default: empty (plaintext).
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile. Default: empty.
	KeyFile string `yaml:"key_file"`
	// ClientCAFile is a PEM bundle of the CAs that sign client
	// certificates. When set, both listeners require a client certificate
	// that verifies against it (mutual TLS). Needs CertFile. Default: empty
	// (no client certificate asked for).
	ClientCAFile string `yaml:"client_ca_file"`
	// PeerCAFile is a PEM bundle of the CAs that sign the other workers'
	// certificates. A worker forwards a table read, and with it its token,
	// only to a peer whose certificate verifies against it and names the
	// host of the address the peer advertises, or to a loopback address.
	// Needs CertFile. Default: empty (reads are forwarded with a token only
	// to loopback peers).
	PeerCAFile string `yaml:"peer_ca_file"`
}

// Enabled reports whether the listeners serve TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Log configures the worker's log/slog output on stderr.
type Log struct {
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Format is text (default) or json.
	Format string `yaml:"format"`
}

// Kafka tunes the Kafka clients.
type Kafka struct {
	// ReachTimeout bounds how long start-up waits for the brokers to answer.
	// Default: 15s.
	ReachTimeout Duration `yaml:"reach_timeout"`
	// ReplicationFactor of topics the worker creates. Default: 1 for a single
	// broker cluster; set 3 in production.
	ReplicationFactor int `yaml:"replication_factor"`
	// StaticMembership sets group.instance.id to the worker id, so a restart
	// within the session timeout causes no rebalance. Default: false.
	StaticMembership bool `yaml:"static_membership"`
	// SessionTimeout is the consumer group session timeout. Default: 10s.
	SessionTimeout Duration `yaml:"session_timeout"`
	// MessageTimeout is the producer's message timeout: a record Kafka has
	// not acknowledged by then is failed (and its event retried). It must
	// stay below two thirds of SessionTimeout, so that a record queued
	// before the worker stood still long enough to lose its partitions
	// expires instead of landing after the next owner's writes; a leaving
	// partition waits this long, at most, for its records' acknowledgements.
	// Default (0): half of SessionTimeout, at most Commit.RevokeTimeout.
	MessageTimeout Duration `yaml:"message_timeout"`
	// MetadataRefresh is how often the worker asks Kafka for the partition
	// counts of the agents' source topics, to notice a topic whose count
	// changed while the app runs (a table's keys would no longer be with
	// their state, docs/tables.md#partitions). One metadata request each
	// time. Default: 30s.
	MetadataRefresh Duration `yaml:"metadata_refresh"`
	// Security is how the Kafka clients connect to the brokers: TLS, SASL
	// (docs/kafka.md#security). Default: PLAINTEXT.
	Security KafkaSecurity `yaml:"security"`
	// Properties are raw librdkafka properties applied last to every
	// client. Those kafka.security sets may not be given here once
	// kafka.security.protocol is set.
	Properties map[string]string `yaml:"properties"`
}

// Kafka security protocols (kafka.security.protocol).
const (
	ProtocolPlaintext     = "PLAINTEXT"
	ProtocolSSL           = "SSL"
	ProtocolSASLPlaintext = "SASL_PLAINTEXT"
	ProtocolSASLSSL       = "SASL_SSL"
)

// KafkaSecurity is how the worker's Kafka clients (every one: consumer,
// producer, admin, changelog reader) connect to the brokers.
type KafkaSecurity struct {
	// Protocol is PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL. Default:
	// PLAINTEXT (no TLS, no authentication).
	Protocol string `yaml:"protocol"`
	// SASL holds the credentials of SASL_PLAINTEXT and SASL_SSL.
	SASL KafkaSASL `yaml:"sasl"`
	// SSL holds the TLS files of SSL and SASL_SSL.
	SSL KafkaSSL `yaml:"ssl"`
}

// KafkaSASL holds SASL credentials. The password is never in the app file:
// it is read at start from PasswordFile or PasswordEnv, and never printed.
type KafkaSASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. Required with a
	// SASL protocol.
	Mechanism string `yaml:"mechanism"`
	// Username is the SASL user. Required with a SASL protocol.
	Username string `yaml:"username"`
	// PasswordFile is a file holding the password (one trailing newline
	// is dropped). Exactly one of PasswordFile and PasswordEnv is required
	// with a SASL protocol.
	PasswordFile string `yaml:"password_file"`
	// PasswordEnv names the environment variable holding the password.
	PasswordEnv string `yaml:"password_env"`
}

// KafkaSSL holds the PEM files of a TLS connection to the brokers.
type KafkaSSL struct {
	// CAFile is a PEM bundle of the CAs the brokers' certificates must
	// verify against (their host names are checked too). Default: the
	// system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile is a PEM client certificate, for brokers that ask for one
	// (ssl.client.auth). Default: none.
	CertFile string `yaml:"cert_file"`
	// KeyFile is CertFile's unencrypted PEM private key. Required with
	// CertFile.
	KeyFile string `yaml:"key_file"`
}

// SASLUsed reports whether Protocol authenticates with SASL.
func (s KafkaSecurity) SASLUsed() bool {
	return s.Protocol == ProtocolSASLPlaintext || s.Protocol == ProtocolSASLSSL
}

// TLSUsed reports whether Protocol runs over TLS.
func (s KafkaSecurity) TLSUsed() bool {
	return s.Protocol == ProtocolSSL || s.Protocol == ProtocolSASLSSL
}

// Password reads the SASL password from PasswordFile or, through getenv
// (pass os.Getenv), from PasswordEnv. Its errors name the setting and the
// file or variable, never the password. Empty without a SASL protocol.
func (s KafkaSecurity) Password(getenv func(string) string) (string, error) {
	switch {
	case !s.SASLUsed():
		return "", nil
	case s.SASL.PasswordFile != "":
		b, err := os.ReadFile(s.SASL.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("kafka.security.sasl.password_file: %w", err)
		}
		pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if pw == "" {
			return "", fmt.Errorf("kafka.security.sasl.password_file: %s is empty", s.SASL.PasswordFile)
		}
		return pw, nil
	case s.SASL.PasswordEnv != "":
		pw := getenv(s.SASL.PasswordEnv)
		if pw == "" {
			return "", fmt.Errorf("kafka.security.sasl.password_env: environment variable %s is not set or empty", s.SASL.PasswordEnv)
		}
		return pw, nil
	}
	return "", errors.New("kafka.security.sasl: password_file or password_env required")
}

// Commit configures offset commits. Only the commit frontier is ever
// committed; these settings trade commit traffic against how much is
// processed again after a crash.
type Commit struct {
	// Interval commits the frontier at least this often (under exactly_once
	// each commit is a transaction: outputs become visible to
	// read_committed readers at this pace). Default (0): 1s at_least_once,
	// 100ms exactly_once.
	Interval Duration `yaml:"interval"`
	// Every commits as soon as this many events are done since the last
	// commit. Default: 10000.
	Every int `yaml:"every"`
	// TransactionTimeout (exactly_once) is how long the transaction
	// coordinator keeps a transaction open before it aborts it: a crashed
	// worker's open transaction holds read_committed readers of its
	// partitions (their next owner's restore too) until its successor with
	// the same worker id starts or this passes. It must exceed the longest
	// transaction: interval + revoke_timeout + kafka.message_timeout.
	// Default (0): that sum plus 5s.
	TransactionTimeout Duration `yaml:"transaction_timeout"`
	// RevokeTimeout is how long an agent instance may take to finish its
	// in-flight events when its partitions are taken away (rebalance,
	// shutdown) before they are given to the next owner. Default: 10s.
	RevokeTimeout Duration `yaml:"revoke_timeout"`
}

// EffectiveCommitInterval is Commit.Interval, or its default for the
// guarantee: 1s at_least_once, 100ms exactly_once (as Kafka Streams).
func (c *Config) EffectiveCommitInterval() time.Duration {
	switch {
	case c.Commit.Interval.D() > 0:
		return c.Commit.Interval.D()
	case c.ProcessingGuarantee == ExactlyOnce:
		return 100 * time.Millisecond
	}
	return time.Second
}

// EffectiveTransactionTimeout is Commit.TransactionTimeout, or its default:
// the longest transaction (commit interval + revoke timeout + message
// timeout) plus 5s.
func (c *Config) EffectiveTransactionTimeout() time.Duration {
	if d := c.Commit.TransactionTimeout.D(); d > 0 {
		return d
	}
	return c.longestTxn() + 5*time.Second
}

func (c *Config) longestTxn() time.Duration {
	return c.EffectiveCommitInterval() + c.Commit.RevokeTimeout.D() + c.EffectiveMessageTimeout()
}

// EffectiveMessageTimeout is Kafka.MessageTimeout, or its default: half of
// the session timeout, at most the revoke timeout.
func (c *Config) EffectiveMessageTimeout() time.Duration {
	if d := c.Kafka.MessageTimeout.D(); d > 0 {
		return d
	}
	return min(c.Kafka.SessionTimeout.D()/2, c.Commit.RevokeTimeout.D())
}

// Limits bound the memory the worker holds for events in flight.
type Limits struct {
	// InflightBytes caps the bytes held for results on their way to Kafka,
	// over all agents and partitions: results read from agents and not
	// yet applied, and the records they produced (outputs, changelog
	// records) until Kafka acknowledges them (table mutations until they
	// reach the store). At the cap the worker delivers no event and reads
	// no further message from any agent stream until acknowledgements
	// make room. Written as bytes (268435456) or with a unit (256MiB,
	// 1GiB, 512KiB). Default: 256MiB; at least 1MiB.
	InflightBytes ByteSize `yaml:"inflight_bytes"`
	// MaxConnections bounds the open connections of each listener (gRPC
	// and HTTP); one past it is closed at once. Default: 1024.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionIdle closes a gRPC connection that has had no call or
	// stream for this long (an agent's open stream keeps its connection).
	// Default: 5m.
	MaxConnectionIdle Duration `yaml:"max_connection_idle"`
	// MaxStreamsPerConnection bounds the concurrent calls and streams of
	// one gRPC connection (HTTP/2 MAX_CONCURRENT_STREAMS). Default: 256.
	MaxStreamsPerConnection int `yaml:"max_streams_per_connection"`
	// HelloTimeout is how long a Connect stream may go without a valid
	// Hello; past it the stream is closed (DEADLINE_EXCEEDED). Until its
	// Hello is accepted a stream gets nothing and holds no partition.
	// Default: 10s.
	HelloTimeout Duration `yaml:"hello_timeout"`
	// MaxPendingHello bounds the Connect streams, over all clients, that
	// have not sent their Hello yet; one past it is refused at once
	// (RESOURCE_EXHAUSTED). Default: 128.
	MaxPendingHello int `yaml:"max_pending_hello"`
	// MaxPendingHelloPerClient bounds the Connect streams of one client
	// (counted as MaxStreamsPerClient counts them) that have not sent
	// their Hello yet, so that one client's silent streams cannot take all
	// of MaxPendingHello from the others; one past it is refused at once
	// (RESOURCE_EXHAUSTED). At most MaxPendingHello. Default: 32.
	MaxPendingHelloPerClient int `yaml:"max_pending_hello_per_client"`
	// MaxStreamsPerClient bounds the open Connect streams of one client:
	// its client-certificate identity under mutual TLS, else its IP
	// address. One past it is refused (RESOURCE_EXHAUSTED). Default: 256.
	MaxStreamsPerClient int `yaml:"max_streams_per_client"`
}

// MinInflightBytes is the smallest Limits.InflightBytes accepted: room for
// a few largest messages of an agent stream.
const MinInflightBytes = 1 << 20

// Monitor configures metrics and stall detection.
type Monitor struct {
	// Enabled records per-event metrics (counters, latency histograms).
	// Lifecycle metrics are always on. Default: true.
	Enabled bool `yaml:"enabled"`
	// StallTimeout is how long a partition with work waiting may go without
	// its frontier moving, or an agent instance may hold an event without a
	// result, before it is reported as stalled. Default: 30s.
	StallTimeout Duration `yaml:"stall_timeout"`
	// StatsInterval is how often librdkafka reports statistics (consumer
	// lag). Default: 5s.
	StatsInterval Duration `yaml:"stats_interval"`
	// Pprof serves Go profiles at /debug/pprof/ on the HTTP listener,
	// behind auth.token (which it needs). Default: false (not served).
	Pprof bool `yaml:"pprof"`
}

// Topic declares a topic.
type Topic struct {
	// Name is the topic name. Required.
	Name string `yaml:"name"`
	// Partitions is the partition count. Required, at least 1.
	Partitions int `yaml:"partitions"`
	// Partitioner is how the topic's producers place keys, by librdkafka's
	// name: murmur2_random (the Java client's and franz-go's),
	// consistent_random (librdkafka's and kcat's default) or fnv1a_random.
	// Table reads find a key's partition with it, the worker's own records
	// for the topic are placed with it, and consumed records whose key it
	// would put elsewhere are counted (docs/configuration.md). Default:
	// murmur2_random.
	Partitioner string `yaml:"partitioner"`
}

// Partitioners are the accepted topics[].partitioner names, the default
// first.
var Partitioners = []string{"murmur2_random", "consistent_random", "fnv1a_random"}

// Agent declares an agent.
type Agent struct {
	// Name is how agent processes identify themselves in Hello. Required.
	Name string `yaml:"name"`
	// Topics are the agent's source topics. Required, each declared in topics.
	Topics []string `yaml:"topics"`
	// Ordering is partition (default: one instance per partition) or key
	// (events spread over instances by key, per-key order kept).
	Ordering string `yaml:"ordering"`
	// Tables are tables whose state for the event's key travels with each event.
	Tables []string `yaml:"tables"`
	// MaxRetries is how often a RETRY result is redelivered before the event
	// goes to the dead-letter topic <app>-<agent>-dlq; 0 dead-letters on the
	// first RETRY. Default: 5 (see Retries).
	MaxRetries *int `yaml:"max_retries"`
	// ProcessingTimeout is how long an instance may hold a partition's
	// oldest unanswered event, counted from its delivery or from the
	// partition's previous result there, whichever is later. Past it the
	// session ends (the instance is taken as hung) and its events go to
	// another instance. Default: 60s (see Processing).
	ProcessingTimeout *Duration `yaml:"processing_timeout"`
}

// DefaultMaxRetries is the default of Agent.MaxRetries.
const DefaultMaxRetries = 5

// DefaultProcessingTimeout is the default of Agent.ProcessingTimeout.
const DefaultProcessingTimeout = 60 * time.Second

// Processing returns ProcessingTimeout or its default.
func (a Agent) Processing() time.Duration {
	if a.ProcessingTimeout == nil {
		return DefaultProcessingTimeout
	}
	return a.ProcessingTimeout.D()
}

// Retries returns MaxRetries or its default.
func (a Agent) Retries() int {
	if a.MaxRetries == nil {
		return DefaultMaxRetries
	}
	return *a.MaxRetries
}

// Table declares a table.
type Table struct {
	// Name is the table name; its changelog is <app>-<name>-changelog. Required.
	Name string `yaml:"name"`
	// StandbyReplicas is the number of warm copies kept by other workers.
	// Default: 0.
	StandbyReplicas int `yaml:"standby_replicas"`
	// Window makes the table windowed. Default: not windowed.
	Window *Window `yaml:"window"`
}

// Window declares a windowed table.
type Window struct {
	// Type is tumbling or hopping. Required.
	Type string `yaml:"type"`
	// Size is the window length. Required.
	Size Duration `yaml:"size"`
	// Step is the hop of a hopping window. Required for hopping.
	Step Duration `yaml:"step"`
	// Expires is how long a window is kept after it closes. Required.
	Expires Duration `yaml:"expires"`
}

// Guarantees named in ProcessingGuarantee.
const (
	AtLeastOnce = "at_least_once"
	ExactlyOnce = "exactly_once"
)

// EmbeddedBrokers is the Brokers value that starts the in-process dev broker.
const EmbeddedBrokers = "embedded"

// DefaultConfig returns a Config holding every default. App and Brokers
// remain empty: they have no sensible default.
func DefaultConfig() *Config {
	return &Config{
		DataDir:             "./eddy-data",
		Listen:              Listen{GRPC: "127.0.0.1:6066", HTTP: "127.0.0.1:6067"},
		ProcessingGuarantee: AtLeastOnce,
		ShutdownTimeout:     Duration(30 * time.Second),
		Log:                 Log{Level: "info", Format: "text"},
		Kafka: Kafka{
			ReachTimeout:      Duration(15 * time.Second),
			ReplicationFactor: 1,
			SessionTimeout:    Duration(10 * time.Second),
			MetadataRefresh:   Duration(30 * time.Second),
		},
		Commit: Commit{
			Every:         10000,
			RevokeTimeout: Duration(10 * time.Second),
		},
		Limits: Limits{
			InflightBytes:            256 << 20,
			MaxConnections:           1024,
			MaxConnectionIdle:        Duration(5 * time.Minute),
			MaxStreamsPerConnection:  256,
			HelloTimeout:             Duration(10 * time.Second),
			MaxPendingHello:          128,
			MaxPendingHelloPerClient: 32,
			MaxStreamsPerClient:      256,
		},
		Monitor: Monitor{
			Enabled:       true,
			StallTimeout:  Duration(30 * time.Second),
			StatsInterval: Duration(5 * time.Second),
		},
	}
}

// Duration is a time.Duration written in the app file as a Go duration
// string ("500ms", "1m", "1h30m").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. 500ms, 30s, 1m)", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// ByteSize is a size in bytes, written in the app file as a whole number
// of bytes or with a binary unit: B, KiB, MiB, GiB ("64MiB").
type ByteSize int64

// UnmarshalText parses a whole number with an optional unit.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64/mult {
		return fmt.Errorf("invalid size %q (want bytes, or e.g. 512KiB, 64MiB, 1GiB)", text)
	}
	*b = ByteSize(v * mult)
	return nil
}

// MarshalText formats b in the largest unit that divides it.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// String formats b in the largest binary unit that divides it ("256MiB").
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Agent returns the declared agent with the given name.
func (c *Config) Agent(name string) (Agent, bool) {
	for _, a := range c.Agents {
		if a.Name == name {
			return a, true
		}
	}
	return Agent{}, false
}

// Topic returns the declared topic with the given name.
func (c *Config) Topic(name string) (Topic, bool) {
	for _, t := range c.Topics {
		if t.Name == name {
			return t, true
		}
	}
	return Topic{}, false
}

// Embedded reports whether the worker runs the in-process dev broker.
func (c *Config) Embedded() bool { return c.Brokers == EmbeddedBrokers }
