package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/worker/tables"
)

// TestKafkaSASLSSL: a worker process whose only way to the broker is its
// SASL_SSL listener (SCRAM-SHA-256, a client certificate, the password in
// a file; docs/kafka.md#security) processes records with a table: its
// consumer, producer, changelog writes and restore all run over SASL_SSL,
// checked with an independent consumer. Neither its log nor workerctl
// status holds the password. With a wrong password (from the environment)
// a worker fails at start, well before kafka.reach_timeout, with a message
// saying the brokers refused the credentials and holding no password; one
// whose password variable is unset fails naming the setting and variable.
func TestKafkaSASLSSL(t *testing.T) {
	sb := kafkatest.SASLSSL(t)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "kafka-password")
	if err := os.WriteFile(pwFile, []byte(sb.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secure := func(body, password string) string {
		body = strings.Replace(body, "brokers: "+kafkatest.Bootstrap(t), "brokers: "+sb.Bootstrap, 1)
		return strings.Replace(body, "kafka: {reach_timeout: 10s, session_timeout: 6s}",
			"kafka:\n  reach_timeout: 60s\n  session_timeout: 6s\n  security:\n    protocol: SASL_SSL\n"+
				"    sasl: {mechanism: SCRAM-SHA-256, username: "+sb.Username+", "+password+"}\n"+
				"    ssl: {ca_file: "+sb.CAFile+", cert_file: "+sb.CertFile+", key_file: "+sb.KeyFile+"}", 1)
	}
	body, app, in, out := passApp(t, ", tables: [kv]")
	body = secure(body+"tables:\n  - {name: kv}\n", "password_file: "+pwFile)
	if !strings.Contains(body, "brokers: "+sb.Bootstrap) || !strings.Contains(body, "protocol: SASL_SSL") {
		t.Fatalf("app file not made secure:\n%s", body)
	}
	w := startWorker(t, body)
	w.waitAssigned(t, 8)
	startAgent(t, w.GRPC, "pass", out, "--table", "kv")
	w.waitInstances(t, "pass", 1, 8)

	produce(t, in, []string{"k0"}, []string{"v1"})
	c := newConsumer(t, out, tables.ChangelogTopic(app, "kv"))
	c.readUntil(time.Minute, "k0's output and its changelog record", func(got map[string][]record) bool {
		return len(got[out]) > 0 && got[out][0].Value == "v1" &&
			len(got[tables.ChangelogTopic(app, "kv")]) > 0 && got[tables.ChangelogTopic(app, "kv")][0].Value == "v1"
	})

	stdout, stderr, code := w.ctl(t, "status", "-o", "json")
	if code != 0 {
		t.Fatalf("workerctl status: exit %d: %s", code, stderr)
	}
	for what, s := range map[string]string{"workerctl status": stdout, "the worker's log": w.log.String()} {
		if strings.Contains(s, sb.Password) {
			t.Errorf("%s holds the SASL password", what)
		}
	}

	bad, _, _, _ := passApp(t, "")
	bad = secure(bad, "password_env: EDDY_TEST_KAFKA_PASSWORD")
	start := time.Now()
	wb := startWorker(t, bad, "EDDY_TEST_KAFKA_PASSWORD=wrong-"+sb.Password[:4])
	if code := wb.wait(40 * time.Second); code != 1 {
		t.Fatalf("worker with a wrong password exited %d, want 1 (the worker failed, docs/operations.md)", code)
	}
	took := time.Since(start)
	log := wb.log.String()
	want := "Kafka brokers " + sb.Bootstrap + " refused the connection over SASL_SSL"
	if !strings.Contains(log, want) || !strings.Contains(log, "invalid credentials with SASL mechanism SCRAM-SHA-256") {
		t.Errorf("worker with a wrong password: log lacks %q and the SASL reason:\n%s", want, log)
	}
	if strings.Contains(log, "wrong-"+sb.Password[:4]) || strings.Contains(log, sb.Password) {
		t.Errorf("worker with a wrong password: its log holds a password:\n%s", log)
	}
	if took > 30*time.Second {
		t.Errorf("worker with a wrong password failed after %v, want it at once, not at kafka.reach_timeout (60s)", took)
	}
	t.Logf("wrong password: exit after %v:\n%s", took.Round(time.Millisecond), log)

	unset, _, _, _ := passApp(t, "")
	wu := startWorker(t, secure(unset, "password_env: EDDY_TEST_KAFKA_PASSWORD_UNSET"))
	if code := wu.wait(40 * time.Second); code != 1 {
		t.Fatalf("worker without its password variable exited %d, want 1", code)
	}
	if want := "kafka.security.sasl.password_env: environment variable EDDY_TEST_KAFKA_PASSWORD_UNSET is not set or empty"; !strings.Contains(wu.log.String(), want) {
		t.Errorf("worker without its password variable: log lacks %q:\n%s", want, wu.log.String())
	}
}
