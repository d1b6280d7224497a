package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `
app: wordcount
brokers: localhost:9092
shutdown_timeout: 5s
topics:
  - {name: lines, partitions: 8}
agents:
  - name: count
    topics: [lines]
    tables: [counts]
tables:
  - name: counts
    standby_replicas: 1
  - name: recent
    window: {type: tumbling, size: 1m, expires: 1h}
`

func load(t *testing.T, body string) (*Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

func TestLoadGood(t *testing.T) {
	cfg, err := load(t, good)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if got, want := cfg.ShutdownTimeout.D(), 5*time.Second; got != want {
		t.Errorf("shutdown_timeout: got %v, want %v", got, want)
	}
	if got, want := cfg.Tables[1].Window.Size.D(), time.Minute; got != want {
		t.Errorf("window.size: got %v, want %v", got, want)
	}
	if got, want := cfg.Topics[0].Partitioner, "murmur2_random"; got != want {
		t.Errorf("partitioner default: got %q, want %q", got, want)
	}
	if got, want := cfg.Agents[0].Ordering, "partition"; got != want {
		t.Errorf("ordering default: got %q, want %q", got, want)
	}
	if got, want := cfg.Agents[0].Retries(), DefaultMaxRetries; got != want {
		t.Errorf("max_retries default: got %d, want %d", got, want)
	}
	if got, want := cfg.Agents[0].Processing(), DefaultProcessingTimeout; got != want {
		t.Errorf("processing_timeout default: got %v, want %v", got, want)
	}
	if got, want := cfg.Listen.GRPC, "127.0.0.1:6066"; got != want {
		t.Errorf("listen.grpc default: got %q, want %q", got, want)
	}
	if got, want := cfg.Limits.InflightBytes, ByteSize(256<<20); got != want {
		t.Errorf("limits.inflight_bytes default: got %v, want %v", got, want)
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"1048576", 1 << 20, true},
		{"64MiB", 64 << 20, true},
		{"1 GiB", 1 << 30, true},
		{"512KiB", 512 << 10, true},
		{"100B", 100, true},
		{"64MB", 0, false},
		{"-1", 0, false},
		{"lots", 0, false},
		{"9999999999GiB", 0, false},
	}
	for _, tt := range tests {
		cfg, err := Parse([]byte(good + "limits: {inflight_bytes: " + tt.in + "}\n"))
		switch {
		case tt.ok && err != nil:
			t.Errorf("%q: %v", tt.in, err)
		case tt.ok && cfg.Limits.InflightBytes != tt.want:
			t.Errorf("%q: got %d, want %d", tt.in, cfg.Limits.InflightBytes, tt.want)
		case !tt.ok && (err == nil || !strings.Contains(err.Error(), "limits.inflight_bytes")):
			t.Errorf("%q: got %v, want an error naming limits.inflight_bytes", tt.in, err)
		}
	}
	if got := ByteSize(256 << 20).String(); got != "256MiB" {
		t.Errorf("String() = %q, want 256MiB", got)
	}
}

// TestCommitDefaultsByGuarantee: the commit interval defaults to 1s under
// at_least_once and 100ms under exactly_once; the transaction timeout to
// the longest transaction plus 5s.
func TestCommitDefaultsByGuarantee(t *testing.T) {
	c := DefaultConfig()
	if got := c.EffectiveCommitInterval(); got != time.Second {
		t.Errorf("at_least_once commit interval %s, want 1s", got)
	}
	c.ProcessingGuarantee = ExactlyOnce
	if got := c.EffectiveCommitInterval(); got != 100*time.Millisecond {
		t.Errorf("exactly_once commit interval %s, want 100ms", got)
	}
	// 100ms + revoke 10s + message timeout min(10s/2, 10s) = 15.1s, + 5s.
	if got := c.EffectiveTransactionTimeout(); got != 20100*time.Millisecond {
		t.Errorf("exactly_once transaction timeout %s, want 20.1s", got)
	}
	c.Commit.Interval = Duration(2 * time.Second)
	if got := c.EffectiveCommitInterval(); got != 2*time.Second {
		t.Errorf("set commit interval %s, want 2s", got)
	}
}

func TestLoadBad(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string // substrings of the error
	}{
		{"unknown field", "app: a\nbrokers: b\nfoo: 1\n", []string{"app.yaml: foo: line 3: unknown field"}},
		{"unknown nested field", strings.Replace(good, "tables: [counts]", "tabels: [counts]", 1),
			[]string{"agents[0].tabels", "unknown field"}},
		{"missing brokers", "app: a\n", []string{"brokers: required"}},
		{"missing app", "brokers: b\n", []string{"app: required"}},
		{"bad duration", strings.Replace(good, "5s", "5 parsecs", 1),
			[]string{"shutdown_timeout", `invalid duration "5 parsecs"`}},
		{"bad window duration", strings.Replace(good, "size: 1m", "size: soon", 1),
			[]string{"tables[1].window.size", `invalid duration "soon"`}},
		{"unknown table", strings.Replace(good, "tables: [counts]", "tables: [cnts]", 1),
			[]string{`agents[0].tables[0]: unknown table "cnts"`}},
		{"unknown topic", strings.Replace(good, "topics: [lines]", "topics: [line]", 1),
			[]string{`agents[0].topics[0]: unknown topic "line"`}},
		{"duplicate topic", strings.Replace(good, "- {name: lines, partitions: 8}", "- {name: lines, partitions: 8}\n  - {name: lines, partitions: 2}", 1),
			[]string{`topics[1].name: duplicate topic "lines"`}},
		{"bad guarantee", good + "processing_guarantee: maybe_once\n", []string{`processing_guarantee: "maybe_once"`}},
		{"exactly_once on the embedded broker", strings.Replace(good, "brokers: localhost:9092", "brokers: embedded", 1) + "processing_guarantee: exactly_once\n",
			[]string{`processing_guarantee: "exactly_once" needs a real Kafka cluster`}},
		{"transaction timeout too short", good + "processing_guarantee: exactly_once\ncommit: {transaction_timeout: 5s}\n",
			[]string{"commit.transaction_timeout: 5s: must exceed the longest transaction", "= 15.1s"}},
		{"negative commit interval", good + "commit: {interval: -1s}\n", []string{"commit.interval: -1s: must not be negative"}},
		{"bad partitions type", strings.Replace(good, "partitions: 8", "partitions: eight", 1),
			[]string{"topics[0].partitions", `want a whole number, got "eight"`}},
		{"unknown partitioner", strings.Replace(good, "partitions: 8", "partitions: 8, partitioner: crc32", 1),
			[]string{`topics[0].partitioner: unknown partitioner "crc32" (known: murmur2_random, consistent_random, fnv1a_random)`}},
		{"zero partitions", strings.Replace(good, "partitions: 8", "partitions: 0", 1),
			[]string{"topics[0].partitions: 0: must be at least 1"}},
		{"bad ordering", strings.Replace(good, "tables: [counts]\n", "tables: [counts]\n    ordering: random\n", 1),
			[]string{`agents[0].ordering: "random"`}},
		{"zero processing timeout", strings.Replace(good, "tables: [counts]\n", "tables: [counts]\n    processing_timeout: 0s\n", 1),
			[]string{"agents[0].processing_timeout: 0s: must be positive"}},
		{"bad processing timeout", strings.Replace(good, "tables: [counts]\n", "tables: [counts]\n    processing_timeout: forever\n", 1),
			[]string{"agents[0].processing_timeout", `invalid duration "forever"`}},
		{"bad window type", strings.Replace(good, "tumbling", "sliding", 1),
			[]string{`tables[1].window.type: "sliding"`}},
		{"table partition mismatch", strings.Replace(strings.Replace(good, "- {name: lines, partitions: 8}", "- {name: lines, partitions: 8}\n  - {name: more, partitions: 4}", 1),
			"agents:\n", "agents:\n  - {name: other, topics: [more], tables: [counts]}\n", 1),
			[]string{`tables[0]: table "counts"`, `topic "more" has 4 partitions and topic "lines" has 8`}},
		{"table of two source topics", strings.Replace(strings.Replace(good, "- {name: lines, partitions: 8}", "- {name: lines, partitions: 8}\n  - {name: more, partitions: 8}", 1),
			"agents:\n", "agents:\n  - {name: other, topics: [more], tables: [counts]}\n", 1),
			[]string{`tables[0]: table "counts" has source topics ["more" "lines"]: a table needs exactly one source topic`}},
		{"bad listen", good + "listen: {grpc: nowhere}\n", []string{`listen.grpc: "nowhere"`}},
		{"bad size", good + "limits: {inflight_bytes: huge}\n", []string{"limits.inflight_bytes", `invalid size "huge"`}},
		{"small inflight cap", good + "limits: {inflight_bytes: 100}\n", []string{"limits.inflight_bytes: 100: must be at least 1MiB"}},
		{"wildcard listen without advertise", good + "listen: {grpc: \"0.0.0.0:6066\"}\n",
			[]string{`listen.advertise: required when listen.grpc "0.0.0.0:6066" listens on every interface`}},
		{"IPv6 wildcard listen without advertise", good + "listen: {grpc: \"[::]:6066\"}\n",
			[]string{`listen.advertise: required when listen.grpc "[::]:6066"`}},
		{"empty-host listen without advertise", good + "listen: {grpc: \":6066\"}\n",
			[]string{`listen.advertise: required when listen.grpc ":6066"`}},
		{"bad advertise", good + "listen: {grpc: \"0.0.0.0:6066\", advertise: nowhere}\n", []string{`listen.advertise: "nowhere"`}},
		{"wildcard advertise", good + "listen: {grpc: \"0.0.0.0:6066\", advertise: \"0.0.0.0:6066\"}\n",
			[]string{`listen.advertise: "0.0.0.0:6066": a wildcard address`}},
		{"client ca without tls", good + "tls: {client_ca_file: ca.pem}\n",
			[]string{"tls.client_ca_file: needs tls.cert_file and tls.key_file"}},
		{"peer ca without tls", good + "tls: {peer_ca_file: ca.pem}\n",
			[]string{"tls.peer_ca_file: needs tls.cert_file and tls.key_file"}},
		{"key without cert", good + "tls: {key_file: k.pem}\n", []string{"tls: cert_file and key_file must be given together"}},
		{"pprof without token", good + "monitor: {pprof: true}\n", []string{"monitor.pprof: needs auth.token"}},
		{"token in plaintext off loopback", good + "auth: {token: s}\nlisten: {grpc: \"10.0.0.7:6066\"}\n",
			[]string{`auth.allow_plaintext: auth.token is set and listen.grpc "10.0.0.7:6066" is not a loopback address`, "clear text"}},
		{"token in plaintext on every interface", good + "auth: {token: s}\nlisten: {grpc: \"0.0.0.0:6066\", advertise: \"w1:6066\"}\n",
			[]string{`listen.grpc "0.0.0.0:6066" is not a loopback address`}},
		{"pprof token in plaintext off loopback", good + "auth: {token: s}\nmonitor: {pprof: true}\nlisten: {http: \"10.0.0.7:6067\"}\n",
			[]string{`auth.allow_plaintext: monitor.pprof is on behind auth.token and listen.http "10.0.0.7:6067"`}},
		{"zero max connections", good + "limits: {max_connections: 0}\n", []string{"limits.max_connections: 0: must be at least 1"}},
		{"zero connection idle", good + "limits: {max_connection_idle: 0s}\n", []string{"limits.max_connection_idle: 0s: must be positive"}},
		{"zero streams per connection", good + "limits: {max_streams_per_connection: 0}\n", []string{"limits.max_streams_per_connection: 0: must be at least 1"}},
		{"zero hello timeout", good + "limits: {hello_timeout: 0s}\n", []string{"limits.hello_timeout: 0s: must be positive"}},
		{"zero pending hello", good + "limits: {max_pending_hello: 0}\n", []string{"limits.max_pending_hello: 0: must be at least 1"}},
		{"zero streams per client", good + "limits: {max_streams_per_client: 0}\n", []string{"limits.max_streams_per_client: 0: must be at least 1"}},
		{"not yaml", "app: [\n", []string{"not valid YAML"}},
		{"empty", "", []string{"empty"}},
		{"list where mapping", "app: a\nbrokers: b\nlisten: [1]\n", []string{"listen: line 3: want a mapping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.body)
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestSecurityAccepted: what the refusals above leave allowed — a token in
// plaintext on loopback, or off loopback when auth.allow_plaintext says so,
// or over TLS; pprof behind the token.
func TestSecurityAccepted(t *testing.T) {
	for _, body := range []string{
		good + "auth: {token: s}\n",
		good + "auth: {token: s}\nlisten: {grpc: \"localhost:6066\"}\n",
		good + "auth: {token: s}\nlisten: {grpc: \"[::1]:6066\"}\n",
		good + "auth: {token: s, allow_plaintext: true}\nlisten: {grpc: \"10.0.0.7:6066\"}\n",
		good + "auth: {token: s}\nlisten: {grpc: \"10.0.0.7:6066\"}\ntls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem, peer_ca_file: ca.pem}\n",
		good + "auth: {token: s}\nmonitor: {pprof: true}\n",
	} {
		if _, err := load(t, body); err != nil {
			t.Errorf("%s: got %v, want no error", body[len(good):], err)
		}
	}
	cfg, err := load(t, good)
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Limits
	if l.MaxConnections != 1024 || l.MaxConnectionIdle.D() != 5*time.Minute || l.MaxStreamsPerConnection != 256 ||
		l.HelloTimeout.D() != 10*time.Second || l.MaxPendingHello != 128 || l.MaxStreamsPerClient != 256 || cfg.Monitor.Pprof {
		t.Errorf("got limits %+v pprof %v, want the documented defaults", l, cfg.Monitor.Pprof)
	}
}

func TestProcessingTimeoutSet(t *testing.T) {
	cfg, err := load(t, strings.Replace(good, "tables: [counts]\n", "tables: [counts]\n    processing_timeout: 5m\n", 1))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Agents[0].Processing(), 5*time.Minute; got != want {
		t.Errorf("processing_timeout: got %v, want %v", got, want)
	}
}

func TestListenAdvertise(t *testing.T) {
	tests := []struct {
		listen string
		want   string // listen.advertise after Validate
	}{
		{"{grpc: \"0.0.0.0:6066\", advertise: \"w1.internal:6066\"}", "w1.internal:6066"},
		{"{grpc: \"[::]:6066\", advertise: \"10.0.0.5:0\"}", "10.0.0.5:0"},
		{"{grpc: \"127.0.0.1:6066\"}", ""},
		{"{grpc: \"10.0.0.5:6066\"}", ""},
	}
	for _, tt := range tests {
		t.Run(tt.listen, func(t *testing.T) {
			cfg, err := load(t, good+"listen: "+tt.listen+"\n")
			if err != nil {
				t.Fatalf("load: got %v, want no error", err)
			}
			if got := cfg.Listen.Advertise; got != tt.want {
				t.Errorf("listen.advertise: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDuplicateAgent(t *testing.T) {
	body := strings.Replace(good, "agents:\n", "agents:\n  - {name: count, topics: [lines]}\n", 1)
	_, err := load(t, body)
	if err == nil || !strings.Contains(err.Error(), `agents[1].name: duplicate agent "count"`) {
		t.Fatalf("got %v, want duplicate agent error", err)
	}
}

func TestApplyEnv(t *testing.T) {
	cfg, err := load(t, good)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"EDDY_BROKERS": "embedded", "EDDY_SHUTDOWN_TIMEOUT": "2s", "EDDY_TOKEN": "s3cret"}
	if err := cfg.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if !cfg.Embedded() || cfg.ShutdownTimeout.D() != 2*time.Second || cfg.Auth.Token != "s3cret" {
		t.Errorf("got brokers=%q shutdown=%v token=%q, want embedded 2s s3cret", cfg.Brokers, cfg.ShutdownTimeout, cfg.Auth.Token)
	}
	env["EDDY_SHUTDOWN_TIMEOUT"] = "later"
	if err := cfg.ApplyEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "EDDY_SHUTDOWN_TIMEOUT") {
		t.Errorf("got %v, want an error naming EDDY_SHUTDOWN_TIMEOUT", err)
	}
}

func TestTablePartitions(t *testing.T) {
	cfg, err := load(t, good)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.TablePartitions("counts"), 8; got != want {
		t.Errorf("TablePartitions(counts) = %d, want %d", got, want)
	}
	if got := cfg.TablePartitions("nope"); got != 0 {
		t.Errorf("TablePartitions(nope) = %d, want 0", got)
	}
}

func TestListenAdvertised(t *testing.T) {
	tests := []struct {
		advertise, bound string
		want             string
	}{
		{"", "127.0.0.1:6066", "127.0.0.1:6066"},
		{"w1.internal:7000", "[::]:6066", "w1.internal:7000"},
		{"w1.internal:0", "[::]:41234", "w1.internal:41234"},
		{"[fd00::5]:0", "0.0.0.0:41234", "[fd00::5]:41234"},
	}
	for _, tt := range tests {
		l := Listen{Advertise: tt.advertise}
		if got := l.Advertised(tt.bound); got != tt.want {
			t.Errorf("Listen{Advertise: %q}.Advertised(%q): got %q, want %q", tt.advertise, tt.bound, got, tt.want)
		}
	}
}
