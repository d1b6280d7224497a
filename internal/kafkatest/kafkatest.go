// Package kafkatest runs tests against a real, single-node Apache Kafka
// broker.
//
// A test package opts in with
//
//	func TestMain(m *testing.M) { kafkatest.Main(m) }
//
// which starts one broker for the whole package (via scripts/kafka/start.sh,
// KRaft mode, listening on 127.0.0.1 only), runs the tests and stops it
// again. Tests then use [Bootstrap] for the "bootstrap.servers" address,
// [Topic] for a fresh topic of their own and [Group] for a fresh consumer
// group id, so tests can run in parallel against the one broker without
// seeing each other's data.
//
// The broker needs Java 17+ and, the first time, Maven (to fetch the Kafka
// jars into ~/.cache/eddy). If it cannot be started the test binary fails
// loudly; it never skips. Setting EDDY_KAFKA_BOOTSTRAP=host:port uses an
// already running broker instead of starting one.
//
// The broker also listens for SASL_SSL (start.sh's EDDY_KAFKA_SASL_SSL=1),
// which tests of Kafka-side security reach through [SASLSSL]; with
// EDDY_KAFKA_BOOTSTRAP, set EDDY_KAFKA_DIR to that broker's start.sh DIR
// for them.
package kafkatest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/testutil"
)

// EnvBootstrap names the environment variable that, when set to a
// bootstrap address ("host:port[,host:port...]"), makes [Main] use that
// broker instead of starting its own.
const EnvBootstrap = "EDDY_KAFKA_BOOTSTRAP"

// EnvDir names the environment variable giving, with EnvBootstrap, the
// start.sh DIR of that broker, where [SASLSSL] finds its SASL_SSL
// listener, certificates and user.
const EnvDir = "EDDY_KAFKA_DIR"

// startTimeout bounds start.sh as a whole, including a cold fetch of the
// jars with Maven. The broker itself gets start.sh's own (shorter) bound.
const startTimeout = 10 * time.Minute

// adminTimeout bounds each admin operation (create, wait, delete topic).
const adminTimeout = 30 * time.Second

var (
	// bootstrap is written once by Main before m.Run and only read after,
	// so reading it from tests needs no lock.
	bootstrap string

	adminMu sync.Mutex
	admin   *kafka.AdminClient // shared, lazily created; closed by Main
)

// Main is meant to be the whole body of a package's TestMain:
//
//	func TestMain(m *testing.M) { kafkatest.Main(m) }
//
// It starts one broker for the test binary (unless EDDY_KAFKA_BOOTSTRAP is
// set), runs m.Run, stops the broker, removes its temporary directory and
// exits with m.Run's code. If the broker cannot be started it prints what to
// install and exits with status 1; it does not skip the tests.
//
// Main calls os.Exit and must be called once, from TestMain only. Should the
// test binary die without reaching the stop (e.g. a -timeout panic), a
// watchdog started by start.sh stops the broker shortly after.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if addr := strings.TrimSpace(os.Getenv(EnvBootstrap)); addr != "" {
		bootstrap = addr
		brokerDir = os.Getenv(EnvDir)
		external = true
		defer closeAdmin()
		return m.Run()
	}

	dir, err := os.MkdirTemp("", "eddy-kafka-")
	if err != nil {
		fail(err)
		return 1
	}
	addr, stop, err := startBroker(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		fail(err)
		return 1
	}
	bootstrap = addr
	brokerDir = dir

	code := m.Run()

	closeAdmin()
	if err := stop(); err != nil {
		fmt.Fprintf(os.Stderr, "kafkatest: stopping the broker: %v\n", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintf(os.Stderr, "kafkatest: removing %s: %v\n", dir, err)
	}
	return code
}

// startBroker runs scripts/kafka/start.sh DIR and returns the bootstrap
// address and a function running scripts/kafka/stop.sh DIR.
func startBroker(dir string) (addr string, stop func() error, err error) {
	root, err := testutil.RepoRoot()
	if err != nil {
		return "", nil, err
	}
	scripts := filepath.Join(root, "scripts", "kafka")

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(scripts, "start.sh"), dir)
	// The watchdog stops the broker if this process dies without stopping it.
	cmd.Env = append(os.Environ(), "EDDY_KAFKA_WATCH_PID="+strconv.Itoa(os.Getpid()), "EDDY_KAFKA_SASL_SSL=1")
	// start.sh's stderr carries progress (a cold fetch takes a while) and,
	// on failure, the tail of the broker log: pass it through.
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", nil, fmt.Errorf("scripts/kafka/start.sh %s: %w", dir, err)
	}
	addr = strings.TrimSpace(string(out))
	if addr == "" {
		return "", nil, errors.New("scripts/kafka/start.sh printed no bootstrap address")
	}

	stop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(scripts, "stop.sh"), dir)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("scripts/kafka/stop.sh: %w: %s", err, stderr.Bytes())
		}
		return nil
	}
	return addr, stop, nil
}

// brokerDir is the directory of the broker Main started, or EDDY_KAFKA_DIR
// when the tests use an existing broker (EDDY_KAFKA_BOOTSTRAP); external
// says which.
var (
	brokerDir string
	external  bool
)

// SecureBroker is the SASL_SSL listener of the test broker.
type SecureBroker struct {
	// Bootstrap is the listener's address, "127.0.0.1:PORT".
	Bootstrap string
	// CAFile is the PEM CA that signed the broker's certificate and
	// ClientCert.
	CAFile string
	// CertFile and KeyFile are a client certificate the listener requires.
	CertFile, KeyFile string
	// Username and Password are the one SASL user, valid for PLAIN,
	// SCRAM-SHA-256 and SCRAM-SHA-512.
	Username, Password string
}

// SASLSSL returns the broker's SASL_SSL listener (scripts/kafka/start.sh,
// EDDY_KAFKA_SASL_SSL=1). It fails the test when there is none: with
// EDDY_KAFKA_BOOTSTRAP, EDDY_KAFKA_DIR must name that broker's start.sh DIR.
func SASLSSL(t testing.TB) SecureBroker {
	t.Helper()
	if brokerDir == "" {
		t.Fatalf("kafkatest: SASLSSL needs the broker's start.sh DIR: with %s, set %s to the DIR of a broker started with EDDY_KAFKA_SASL_SSL=1", EnvBootstrap, EnvDir)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(brokerDir, name))
		if err != nil {
			t.Fatalf("kafkatest: the broker in %s has no SASL_SSL listener (start.sh EDDY_KAFKA_SASL_SSL=1): %v", brokerDir, err)
		}
		return strings.TrimSpace(string(b))
	}
	tls := filepath.Join(brokerDir, "tls")
	return SecureBroker{
		Bootstrap: read("sasl_ssl.bootstrap"),
		CAFile:    filepath.Join(tls, "ca.pem"),
		CertFile:  filepath.Join(tls, "client.pem"),
		KeyFile:   filepath.Join(tls, "client.key"),
		Username:  read("sasl.username"),
		Password:  read("sasl.password"),
	}
}

// BrokerPID returns the process id of the broker started by Main, for fault
// injection (e.g. SIGSTOP to freeze it). A test that needs it fails when the
// tests run against an existing broker (EDDY_KAFKA_BOOTSTRAP).
func BrokerPID(t testing.TB) int {
	t.Helper()
	if brokerDir == "" || external {
		t.Fatalf("kafkatest: BrokerPID needs the broker started by kafkatest.Main, not %s", EnvBootstrap)
	}
	b, err := os.ReadFile(filepath.Join(brokerDir, "broker.pid"))
	if err != nil {
		t.Fatalf("kafkatest: read broker pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("kafkatest: broker pid %q: %v", b, err)
	}
	return pid
}

// fail reports that no broker could be started, loudly, with what to do.
func fail(err error) {
	fmt.Fprintf(os.Stderr, `
======================================================================
kafkatest: FAILED to start the test Kafka broker:
    %v

These tests need a real Apache Kafka broker, started by
scripts/kafka/start.sh. It needs:
  - Java 17 or newer on PATH   (Debian: apt-get install -y openjdk-17-jre-headless)
  - Maven on PATH, the first time, to fetch the Kafka jars
                               (Debian: apt-get install -y maven)
  - python3 on PATH            (Debian: apt-get install -y python3)
Or point the tests at a running broker: %s=host:port
The tests were NOT run.
======================================================================
`, err, EnvBootstrap)
}

// Bootstrap returns the broker's bootstrap address ("127.0.0.1:PORT"), for
// the "bootstrap.servers" client setting. It fails the test if the package's
// TestMain does not call [Main]. Safe for concurrent use.
func Bootstrap(t testing.TB) string {
	t.Helper()
	if bootstrap == "" {
		t.Fatal("kafkatest: no broker; add `func TestMain(m *testing.M) { kafkatest.Main(m) }` to this package")
	}
	return bootstrap
}

// Topic creates a new topic with the given number of partitions (replication
// factor 1) whose name is derived from t.Name() plus a random suffix, waits
// until the broker reports it with a leader for every partition, and
// deletes it when the test ends (t.Cleanup). It fails the test on error.
// Safe for concurrent use, e.g. from parallel tests.
func Topic(t testing.TB, partitions int) string {
	t.Helper()
	if partitions < 1 {
		t.Fatalf("kafkatest.Topic: partitions = %d, want >= 1", partitions)
	}
	a := adminClient(t)
	name := uniqueName(t.Name())

	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	res, err := a.CreateTopics(ctx, []kafka.TopicSpecification{{
		Topic:             name,
		NumPartitions:     partitions,
		ReplicationFactor: 1,
	}}, kafka.SetAdminOperationTimeout(adminTimeout))
	if err != nil {
		t.Fatalf("kafkatest.Topic: creating %q: %v", name, err)
	}
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError {
			t.Fatalf("kafkatest.Topic: creating %q: %v", name, r.Error)
		}
	}
	// Registered before waiting, so that a topic that never becomes ready
	// is still deleted.
	t.Cleanup(func() { deleteTopic(t, a, name) })

	if err := waitTopic(ctx, a, name, partitions); err != nil {
		t.Fatalf("kafkatest.Topic: %v", err)
	}
	return name
}

// waitTopic polls the broker's metadata until topic has the wanted number
// of partitions, each with a leader, or ctx expires.
func waitTopic(ctx context.Context, a *kafka.AdminClient, topic string, partitions int) error {
	var last string
	for {
		md, err := a.GetMetadata(&topic, false, 5000)
		if err != nil {
			last = err.Error()
		} else if tm, ok := md.Topics[topic]; !ok {
			last = "not in metadata"
		} else if tm.Error.Code() != kafka.ErrNoError {
			last = tm.Error.String()
		} else if len(tm.Partitions) != partitions {
			last = fmt.Sprintf("%d of %d partitions", len(tm.Partitions), partitions)
		} else {
			ready := true
			for _, p := range tm.Partitions {
				if p.Leader < 0 || p.Error.Code() != kafka.ErrNoError {
					ready = false
					last = fmt.Sprintf("partition %d: leader %d, %v", p.ID, p.Leader, p.Error)
					break
				}
			}
			if ready {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %q not ready after %v: %s", topic, adminTimeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func deleteTopic(t testing.TB, a *kafka.AdminClient, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	res, err := a.DeleteTopics(ctx, []string{name}, kafka.SetAdminOperationTimeout(adminTimeout))
	if err != nil {
		t.Errorf("kafkatest: deleting topic %q: %v", name, err)
		return
	}
	for _, r := range res {
		// The test may have deleted it itself.
		if c := r.Error.Code(); c != kafka.ErrNoError && c != kafka.ErrUnknownTopicOrPart {
			t.Errorf("kafkatest: deleting topic %q: %v", name, r.Error)
		}
	}
}

// Group returns a new consumer group id, derived from t.Name() plus a
// random suffix, so that tests never share committed offsets. Nothing is
// created on the broker. Safe for concurrent use.
func Group(t testing.TB) string {
	t.Helper()
	return uniqueName(t.Name())
}

// adminClient returns the package-wide admin client, creating it on first
// use. The confluent-kafka-go AdminClient is safe for concurrent use.
func adminClient(t testing.TB) *kafka.AdminClient {
	t.Helper()
	adminMu.Lock()
	defer adminMu.Unlock()
	if admin == nil {
		a, err := kafka.NewAdminClient(&kafka.ConfigMap{
			"bootstrap.servers": Bootstrap(t),
			"client.id":         "eddy-kafkatest",
		})
		if err != nil {
			t.Fatalf("kafkatest: creating admin client: %v", err)
		}
		admin = a
	}
	return admin
}

func closeAdmin() {
	adminMu.Lock()
	defer adminMu.Unlock()
	if admin != nil {
		admin.Close()
		admin = nil
	}
}

// maxNameLen keeps names well below Kafka's 249-character topic limit.
const maxNameLen = 200

// uniqueName turns a test name into a valid Kafka topic / group name:
// characters other than ASCII letters, digits and '-' become '_' (topic
// names allow [a-zA-Z0-9._-]; avoiding '.' sidesteps Kafka's '.'/'_'
// collision rule), and a random 8-hex-digit suffix makes it unique.
func uniqueName(testName string) string {
	var b strings.Builder
	for _, r := range testName {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= maxNameLen {
			break
		}
	}
	if b.Len() == 0 {
		b.WriteString("test")
	}
	return fmt.Sprintf("%s-%08x", b.String(), rand.Uint32())
}

// DeleteRecordsBefore deletes the records of topic[partition] before
// offset, through a client of its own (not the code under test).
func DeleteRecordsBefore(t testing.TB, topic string, partition int32, offset int64) {
	t.Helper()
	a := adminClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := a.DeleteRecords(ctx, []kafka.TopicPartition{{Topic: &topic, Partition: partition, Offset: kafka.Offset(offset)}})
	if err != nil {
		t.Fatalf("kafkatest: DeleteRecords %s[%d]: %v", topic, partition, err)
	}
	for _, r := range res.DeleteRecordsResults {
		if r.TopicPartition.Error != nil {
			t.Fatalf("kafkatest: DeleteRecords %s[%d]: %v", topic, partition, r.TopicPartition.Error)
		}
	}
}

// Record is one record ReadAll read.
type Record struct {
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
}

// ReadAll reads every record of topic's partitions 0..partitions-1 from the
// start to the end, through a consumer of its own (not the code under
// test): with committed set, at read_committed (records of aborted or
// still open transactions are not seen; the end is the last stable
// offset), else at read_uncommitted. Records come per partition in offset
// order. It fails the test if the end is not reached within a minute.
func ReadAll(t testing.TB, topic string, partitions int, committed bool) []Record {
	t.Helper()
	level := "read_uncommitted"
	if committed {
		level = "read_committed"
	}
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":    Bootstrap(t),
		"group.id":             uniqueName("kafkatest-reader"),
		"enable.auto.commit":   false,
		"enable.partition.eof": true,
		"isolation.level":      level,
		"auto.offset.reset":    "earliest",
	})
	if err != nil {
		t.Fatalf("kafkatest.ReadAll: consumer: %v", err)
	}
	defer c.Close()
	var tps []kafka.TopicPartition
	for p := range partitions {
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: int32(p), Offset: kafka.OffsetBeginning})
	}
	if err := c.Assign(tps); err != nil {
		t.Fatalf("kafkatest.ReadAll: assign: %v", err)
	}
	var out []Record
	eof := map[int32]bool{}
	deadline := time.Now().Add(time.Minute)
	for len(eof) < partitions {
		if time.Now().After(deadline) {
			t.Fatalf("kafkatest.ReadAll %s: reached the end of %d of %d partitions within a minute", topic, len(eof), partitions)
		}
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			if e.TopicPartition.Error != nil {
				t.Fatalf("kafkatest.ReadAll %s: %v", topic, e.TopicPartition.Error)
			}
			out = append(out, Record{Partition: e.TopicPartition.Partition, Offset: int64(e.TopicPartition.Offset), Key: e.Key, Value: e.Value})
		case kafka.PartitionEOF:
			eof[e.Partition] = true
		case kafka.Error:
			if e.IsFatal() {
				t.Fatalf("kafkatest.ReadAll %s: %v", topic, e)
			}
		}
	}
	return out
}

// CommittedOffsets returns group's committed offsets of topic's partitions
// 0..partitions-1 (-1: none), asked with require_stable (KIP-447: an
// offset of a transaction still open is waited for, not answered), through
// a client of its own.
func CommittedOffsets(t testing.TB, group, topic string, partitions int) map[int32]int64 {
	t.Helper()
	a := adminClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var tps []kafka.TopicPartition
	for p := range partitions {
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: int32(p)})
	}
	for {
		res, err := a.ListConsumerGroupOffsets(ctx, []kafka.ConsumerGroupTopicPartitions{{Group: group, Partitions: tps}},
			kafka.SetAdminRequireStableOffsets(true))
		if err != nil {
			t.Fatalf("kafkatest: committed offsets of %s: %v", group, err)
		}
		out, unstable := map[int32]int64{}, false
		for _, g := range res.ConsumerGroupsTopicPartitions {
			for _, tp := range g.Partitions {
				var kerr kafka.Error
				switch {
				case tp.Error == nil:
					out[tp.Partition] = int64(tp.Offset)
				case errors.As(tp.Error, &kerr) && kerr.Code() == kafka.ErrUnstableOffsetCommit && ctx.Err() == nil:
					unstable = true // a transaction's markers are on their way
				default:
					t.Fatalf("kafkatest: committed offset of %s %s[%d]: %v", group, topic, tp.Partition, tp.Error)
				}
			}
		}
		if !unstable {
			return out
		}
		time.Sleep(50 * time.Millisecond) // polling the broker until the offsets are stable
	}
}

// RestartBroker kills the broker started by Main with SIGKILL (a crash, no
// clean shutdown), waits until it is gone, and starts it again on the same
// address and data (scripts/kafka/start.sh with EDDY_KAFKA_KEEP=1). Clients
// reconnect to the address they know. It fails the test when the tests run
// against an existing broker (EDDY_KAFKA_BOOTSTRAP).
func RestartBroker(t testing.TB) {
	t.Helper()
	pid := BrokerPID(t)
	if err := syscallKill(pid); err != nil {
		t.Fatalf("kafkatest: kill broker %d: %v", pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("kafkatest: broker %d still alive 30s after SIGKILL", pid)
		}
		time.Sleep(50 * time.Millisecond) // polling for the process to be gone
	}
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "kafka", "start.sh"), brokerDir)
	cmd.Env = append(os.Environ(), "EDDY_KAFKA_KEEP=1", "EDDY_KAFKA_WATCH_PID="+strconv.Itoa(os.Getpid()))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kafkatest: restart broker: %v\n%s", err, stderr.Bytes())
	}
	if got := strings.TrimSpace(string(out)); got != bootstrap {
		t.Fatalf("kafkatest: restarted broker at %s, want the same address %s", got, bootstrap)
	}
}

// WaitStable waits until no transaction is open on topic's partitions
// 0..partitions-1 (each one's last stable offset is its high watermark),
// so a read_committed reader sees everything committed. A transaction a
// killed producer left open holds the last stable offset until the
// coordinator aborts it (transaction.timeout.ms). It fails the test after
// timeout.
func WaitStable(t testing.TB, timeout time.Duration, topic string, partitions int) {
	t.Helper()
	a := adminClient(t)
	ends := func(level kafka.IsolationLevel) map[int32]int64 {
		req := map[kafka.TopicPartition]kafka.OffsetSpec{}
		for p := range partitions {
			req[kafka.TopicPartition{Topic: &topic, Partition: int32(p)}] = kafka.LatestOffsetSpec
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := a.ListOffsets(ctx, req, kafka.SetAdminIsolationLevel(level))
		if err != nil {
			t.Fatalf("kafkatest.WaitStable %s: %v", topic, err)
		}
		out := map[int32]int64{}
		for tp, info := range res.ResultInfos {
			out[tp.Partition] = int64(info.Offset)
		}
		return out
	}
	deadline := time.Now().Add(timeout)
	for {
		hw, lso := ends(kafka.IsolationLevelReadUncommitted), ends(kafka.IsolationLevelReadCommitted)
		open := 0
		for p, h := range hw {
			if lso[p] != h {
				open++
			}
		}
		if open == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kafkatest.WaitStable %s: %d partitions still have an open transaction after %s", topic, open, timeout)
		}
		time.Sleep(200 * time.Millisecond) // polling the broker until the transactions settle
	}
}
