package config

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// validName is what Kafka accepts in a topic name, which app, agent and
// table names become part of.
var validName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,200}$`)

// Validate checks every field and fills derived defaults (agent ordering).
// It reports all problems at once, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	name := func(field, v string) {
		switch {
		case v == "":
			bad(field, "required")
		case !validName.MatchString(v):
			bad(field, "%q: use only letters, digits, '.', '_' and '-' (at most 200)", v)
		}
	}

	name("app", c.App)
	if c.Brokers == "" {
		bad("brokers", `required: a comma-separated host:port list, or "embedded" for the dev broker`)
	}
	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	addr("listen.grpc", c.Listen.GRPC, bad)
	addr("listen.http", c.Listen.HTTP, bad)
	// Peers dial the advertised address: a wildcard one would have them
	// dial themselves (docs/configuration.md).
	switch {
	case c.Listen.Advertise != "":
		addr("listen.advertise", c.Listen.Advertise, bad)
		if Wildcard(c.Listen.Advertise) {
			bad("listen.advertise", "%q: a wildcard address cannot be dialled: give the host name or IP address other workers reach this one at", c.Listen.Advertise)
		}
	case Wildcard(c.Listen.GRPC):
		bad("listen.advertise", "required when listen.grpc %q listens on every interface: set the host:port other workers dial to reach this one", c.Listen.GRPC)
	}
	switch c.ProcessingGuarantee {
	case AtLeastOnce:
	case ExactlyOnce:
		if c.Brokers == EmbeddedBrokers {
			bad("processing_guarantee", "%q needs a real Kafka cluster: the embedded dev broker runs %s only", ExactlyOnce, AtLeastOnce)
		}
		if d := c.Commit.TransactionTimeout.D(); d < 0 {
			bad("commit.transaction_timeout", "%s: must not be negative", d)
		} else if d > 0 && d <= c.longestTxn() {
			bad("commit.transaction_timeout", "%s: must exceed the longest transaction, commit.interval + commit.revoke_timeout + kafka.message_timeout = %s", d, c.longestTxn())
		}
	default:
		bad("processing_guarantee", "%q: want %s or %s", c.ProcessingGuarantee, AtLeastOnce, ExactlyOnce)
	}
	positive("shutdown_timeout", c.ShutdownTimeout, bad)
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file must be given together")
	}
	if c.TLS.ClientCAFile != "" && !c.TLS.Enabled() {
		bad("tls.client_ca_file", "needs tls.cert_file and tls.key_file: client certificates are asked for only over TLS")
	}
	if c.TLS.PeerCAFile != "" && !c.TLS.Enabled() {
		bad("tls.peer_ca_file", "needs tls.cert_file and tls.key_file: reads are forwarded over TLS only by a worker that serves TLS")
	}
	if c.Monitor.Pprof && c.Auth.Token == "" {
		bad("monitor.pprof", "needs auth.token: profiles are served only behind the token")
	}
	// A token sent in clear text over a network can be read by anyone on
	// the path (docs/operations.md#security).
	if c.Auth.Token != "" && !c.TLS.Enabled() && !c.Auth.AllowPlaintext {
		if !Loopback(c.Listen.GRPC) {
			bad("auth.allow_plaintext", "auth.token is set and listen.grpc %q is not a loopback address, but tls.cert_file is not set: the token would cross the network in clear text; configure tls, or set auth.allow_plaintext: true to accept that", c.Listen.GRPC)
		} else if c.Monitor.Pprof && !Loopback(c.Listen.HTTP) {
			bad("auth.allow_plaintext", "monitor.pprof is on behind auth.token and listen.http %q is not a loopback address, but tls.cert_file is not set: the token would cross the network in clear text; configure tls, or set auth.allow_plaintext: true to accept that", c.Listen.HTTP)
		}
	}
	l := c.Limits
	if l.MaxConnections < 1 {
		bad("limits.max_connections", "%d: must be at least 1", l.MaxConnections)
	}
	positive("limits.max_connection_idle", l.MaxConnectionIdle, bad)
	if l.MaxStreamsPerConnection < 1 {
		bad("limits.max_streams_per_connection", "%d: must be at least 1", l.MaxStreamsPerConnection)
	}
	positive("limits.hello_timeout", l.HelloTimeout, bad)
	if l.MaxPendingHello < 1 {
		bad("limits.max_pending_hello", "%d: must be at least 1", l.MaxPendingHello)
	}
	if l.MaxPendingHelloPerClient < 1 || l.MaxPendingHelloPerClient > l.MaxPendingHello {
		bad("limits.max_pending_hello_per_client", "%d: must be 1..limits.max_pending_hello (%d)", l.MaxPendingHelloPerClient, l.MaxPendingHello)
	}
	if l.MaxStreamsPerClient < 1 {
		bad("limits.max_streams_per_client", "%d: must be at least 1", l.MaxStreamsPerClient)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q: want text or json", c.Log.Format)
	}
	positive("kafka.reach_timeout", c.Kafka.ReachTimeout, bad)
	positive("kafka.session_timeout", c.Kafka.SessionTimeout, bad)
	positive("kafka.metadata_refresh", c.Kafka.MetadataRefresh, bad)
	if mt, st := c.Kafka.MessageTimeout.D(), c.Kafka.SessionTimeout.D(); mt < 0 {
		bad("kafka.message_timeout", "%s: must not be negative", mt)
	} else if mt > 0 && mt*3 >= st*2 {
		bad("kafka.message_timeout", "%s: must be below two thirds of kafka.session_timeout (%s): a record queued before the worker stood still long enough to lose its partitions must expire, not land after their next owner's writes", mt, st)
	}
	positive("monitor.stall_timeout", c.Monitor.StallTimeout, bad)
	if d := c.Commit.Interval.D(); d < 0 {
		bad("commit.interval", "%s: must not be negative (0: the guarantee's default)", d)
	}
	positive("commit.revoke_timeout", c.Commit.RevokeTimeout, bad)
	if c.Commit.Every < 1 {
		bad("commit.every", "%d: must be at least 1", c.Commit.Every)
	}
	positive("monitor.stats_interval", c.Monitor.StatsInterval, bad)
	if c.Limits.InflightBytes < MinInflightBytes {
		bad("limits.inflight_bytes", "%s: must be at least %s",
			c.Limits.InflightBytes, ByteSize(MinInflightBytes))
	}
	if c.Kafka.ReplicationFactor < 1 {
		bad("kafka.replication_factor", "%d: must be at least 1", c.Kafka.ReplicationFactor)
	}
	c.validateKafkaSecurity(bad)

	topics := map[string]bool{}
	for i, t := range c.Topics {
		f := "topics[" + strconv.Itoa(i) + "]"
		name(f+".name", t.Name)
		if topics[t.Name] {
			bad(f+".name", "duplicate topic %q", t.Name)
		}
		topics[t.Name] = true
		if t.Partitions < 1 {
			bad(f+".partitions", "%d: must be at least 1", t.Partitions)
		}
		if t.Partitioner == "" {
			c.Topics[i].Partitioner = Partitioners[0]
		} else if !slices.Contains(Partitioners, t.Partitioner) {
			bad(f+".partitioner", "unknown partitioner %q (known: %s)", t.Partitioner, strings.Join(Partitioners, ", "))
		}
	}
	tables := map[string]bool{}
	for i, t := range c.Tables {
		f := "tables[" + strconv.Itoa(i) + "]"
		name(f+".name", t.Name)
		if tables[t.Name] {
			bad(f+".name", "duplicate table %q", t.Name)
		}
		tables[t.Name] = true
		if t.StandbyReplicas < 0 {
			bad(f+".standby_replicas", "%d: must not be negative", t.StandbyReplicas)
		}
		if w := t.Window; w != nil {
			switch w.Type {
			case "tumbling":
				if w.Step != 0 {
					bad(f+".window.step", "only hopping windows have a step")
				}
			case "hopping":
				positive(f+".window.step", w.Step, bad)
				if w.Step > w.Size {
					bad(f+".window.step", "%s is longer than the window size %s", w.Step, w.Size)
				}
			default:
				bad(f+".window.type", "%q: want tumbling or hopping", w.Type)
			}
			positive(f+".window.size", w.Size, bad)
			positive(f+".window.expires", w.Expires, bad)
		}
	}
	agents := map[string]bool{}
	topicAgent := map[string]string{}
	for i := range c.Agents {
		a := &c.Agents[i]
		f := "agents[" + strconv.Itoa(i) + "]"
		name(f+".name", a.Name)
		if agents[a.Name] {
			bad(f+".name", "duplicate agent %q", a.Name)
		}
		agents[a.Name] = true
		if len(a.Topics) == 0 {
			bad(f+".topics", "at least one source topic is required")
		}
		for j, t := range a.Topics {
			ft := f + ".topics[" + strconv.Itoa(j) + "]"
			if !topics[t] {
				bad(ft, "unknown topic %q (declare it under topics)", t)
			}
			if other, ok := topicAgent[t]; ok && other != a.Name {
				bad(ft, "topic %q is already the source of agent %q (one agent per source topic)", t, other)
			}
			topicAgent[t] = a.Name
		}
		for j, t := range a.Tables {
			if !tables[t] {
				bad(f+".tables["+strconv.Itoa(j)+"]", "unknown table %q (declare it under tables)", t)
			}
		}
		switch a.Ordering {
		case "":
			a.Ordering = "partition"
		case "partition", "key":
		default:
			bad(f+".ordering", "%q: want partition or key", a.Ordering)
		}
		if a.MaxRetries != nil && *a.MaxRetries < 0 {
			bad(f+".max_retries", "%d: must not be negative", *a.MaxRetries)
		}
		if a.ProcessingTimeout != nil {
			positive(f+".processing_timeout", *a.ProcessingTimeout, bad)
		}
	}
	errs = append(errs, c.checkTablePartitions()...)
	return errors.Join(errs...)
}

// checkTablePartitions checks that every table's source topics (the topics
// of the agents that declare it) have one partition count: table partition
// p lives with source partition p, so the changelog has exactly that many
// partitions. Unknown names are reported elsewhere.
func (c *Config) checkTablePartitions() []error {
	var errs []error
	for i, t := range c.Tables {
		first, firstN := "", 0
		var sources []string
		for _, a := range c.Agents {
			if slices.Contains(a.Tables, t.Name) {
				for _, name := range a.Topics {
					if !slices.Contains(sources, name) {
						sources = append(sources, name)
					}
				}
			}
		}
		if len(sources) > 1 {
			// Table partition p lives with source partition p, but the
			// consumer group may give partition p of each topic to a
			// different worker: both would write table partition p.
			errs = append(errs, fmt.Errorf("tables[%d]: table %q has source topics %q: a table needs exactly one source topic (partition p of each could go to a different worker, and both would write table partition p)",
				i, t.Name, sources))
		}
		for _, a := range c.Agents {
			if !slices.Contains(a.Tables, t.Name) {
				continue
			}
			for _, name := range a.Topics {
				top, ok := c.Topic(name)
				if !ok {
					continue
				}
				if first == "" {
					first, firstN = name, top.Partitions
				} else if top.Partitions != firstN {
					errs = append(errs, fmt.Errorf("tables[%d]: table %q is partitioned like its source topics, but topic %q has %d partitions and topic %q has %d",
						i, t.Name, first, firstN, name, top.Partitions))
				}
			}
		}
	}
	return errs
}

// TablePartitions returns the partition count of a table: that of the
// source topics of the agents declaring it (Validate checks they agree),
// or 0 when no agent uses it.
func (c *Config) TablePartitions(table string) int {
	for _, a := range c.Agents {
		if !slices.Contains(a.Tables, table) {
			continue
		}
		for _, name := range a.Topics {
			if top, ok := c.Topic(name); ok {
				return top.Partitions
			}
		}
	}
	return 0
}

func addr(field, v string, bad func(string, string, ...any)) {
	if _, port, err := net.SplitHostPort(v); err != nil {
		bad(field, "%q: want host:port (%v)", v, err)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		bad(field, "%q: bad port", v)
	}
}

// Advertised is the gRPC address to publish to the other workers, given
// the address the listener is bound to: Advertise, its port 0 replaced by
// the bound port, or bound itself when Advertise is empty.
func (l Listen) Advertised(bound string) string {
	if l.Advertise == "" {
		return bound
	}
	host, port, err := net.SplitHostPort(l.Advertise)
	if err != nil || port != "0" {
		return l.Advertise
	}
	if _, bp, err := net.SplitHostPort(bound); err == nil {
		return net.JoinHostPort(host, bp)
	}
	return l.Advertise
}

// Wildcard reports whether a host:port listen address names every
// interface (an empty host, 0.0.0.0 or ::), which another host cannot dial.
func Wildcard(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// Loopback reports whether hostport names a loopback address
// (127.0.0.0/8, ::1 or localhost): only this machine can reach it.
func Loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func positive(field string, d Duration, bad func(string, string, ...any)) {
	if d <= 0 {
		bad(field, "%s: must be positive", d)
	}
}

// kafkaSecurityOwned are the librdkafka properties kafka.security sets,
// which kafka.properties may then not set.
var kafkaSecurityOwned = []string{
	"security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password",
	"ssl.ca.location", "ssl.certificate.location", "ssl.key.location",
}

func (c *Config) validateKafkaSecurity(bad func(string, string, ...any)) {
	s := c.Kafka.Security
	switch s.Protocol {
	case "":
		if s.SASL != (KafkaSASL{}) || s.SSL != (KafkaSSL{}) {
			bad("kafka.security.protocol", "required when kafka.security.sasl or kafka.security.ssl is set (%s, %s, %s or %s)",
				ProtocolPlaintext, ProtocolSSL, ProtocolSASLPlaintext, ProtocolSASLSSL)
		}
		return
	case ProtocolPlaintext, ProtocolSSL, ProtocolSASLPlaintext, ProtocolSASLSSL:
	default:
		bad("kafka.security.protocol", "%q: want %s, %s, %s or %s", s.Protocol,
			ProtocolPlaintext, ProtocolSSL, ProtocolSASLPlaintext, ProtocolSASLSSL)
		return
	}
	if c.Brokers == EmbeddedBrokers {
		bad("kafka.security.protocol", "%s: the embedded dev broker speaks PLAINTEXT only", s.Protocol)
	}
	if s.SASLUsed() {
		switch s.SASL.Mechanism {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		case "":
			bad("kafka.security.sasl.mechanism", "required with %s: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Protocol)
		default:
			bad("kafka.security.sasl.mechanism", "%q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.SASL.Mechanism)
		}
		if s.SASL.Username == "" {
			bad("kafka.security.sasl.username", "required with %s", s.Protocol)
		}
		switch {
		case s.SASL.PasswordFile == "" && s.SASL.PasswordEnv == "":
			bad("kafka.security.sasl", "password_file or password_env required with %s (the password itself is never in the app file)", s.Protocol)
		case s.SASL.PasswordFile != "" && s.SASL.PasswordEnv != "":
			bad("kafka.security.sasl", "password_file and password_env are both set: give one")
		}
	} else if s.SASL != (KafkaSASL{}) {
		bad("kafka.security.sasl", "set, but protocol %s does not authenticate with SASL (use %s or %s)", s.Protocol, ProtocolSASLPlaintext, ProtocolSASLSSL)
	}
	if s.TLSUsed() {
		if (s.SSL.CertFile == "") != (s.SSL.KeyFile == "") {
			bad("kafka.security.ssl", "cert_file and key_file must be given together")
		}
	} else if s.SSL != (KafkaSSL{}) {
		bad("kafka.security.ssl", "set, but protocol %s does not use TLS (use %s or %s)", s.Protocol, ProtocolSSL, ProtocolSASLSSL)
	}
	for _, k := range kafkaSecurityOwned {
		if _, ok := c.Kafka.Properties[k]; ok {
			bad("kafka.properties", "%q is set by kafka.security; remove it here", k)
		}
	}
}
