package integration

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// uniq returns a name unique to this test run, usable as app or topic name.
func uniq(t *testing.T, prefix string) string {
	t.Helper()
	clean := regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(t.Name(), "-")
	return fmt.Sprintf("%s-%s-%06d", prefix, strings.ToLower(clean), rand.IntN(1000000))
}

// basicApp is an app with one topic and one agent on the test broker.
func basicApp(t *testing.T, extra string) (body, app, topic string) {
	t.Helper()
	app, topic = uniq(t, "app"), uniq(t, "in")
	body = fmt.Sprintf(`app: %s
brokers: %s
shutdown_timeout: 20s
kafka: {reach_timeout: 5s}
topics:
  - {name: %s, partitions: 3}
agents:
  - {name: pass, topics: [%s]}
%s`, app, kafkatest.Bootstrap(t), topic, topic, extra)
	return body, app, topic
}

func TestStatusAndGrpcurl(t *testing.T) {
	body, app, topic := basicApp(t, "")
	bin(t, "worker") // build before timing
	start := time.Now()
	w := startWorker(t, body)
	w.waitState(t, 60*time.Second, "RUNNING")
	t.Logf("worker start to RUNNING on the real broker: %s", time.Since(start).Round(time.Millisecond))

	st := w.status(t)
	for field, want := range map[string]any{
		"state":                "WORKER_STATE_RUNNING",
		"app":                  app,
		"brokers":              kafkatest.Bootstrap(t),
		"embedded_broker":      false,
		"processing_guarantee": "at_least_once",
		"grpc_address":         w.GRPC,
	} {
		if got := st[field]; got != want {
			t.Errorf("status %s: got %v, want %v", field, got, want)
		}
	}
	if v, _ := st["version"].(string); v == "" {
		t.Errorf("status version: got empty, want a version")
	}
	// The consumer group assigns all 3 partitions of the agent's topic to
	// the only worker.
	a := w.waitAssigned(t, 3)
	if tp, _ := a[0].(map[string]any); tp["topic"] != topic {
		t.Errorf("assigned[0].topic: got %v, want %s", tp["topic"], topic)
	}

	out, err := grpcurl(t, "-plaintext", w.GRPC, "list")
	if err != nil {
		t.Fatalf("grpcurl list: %v\n%s", err, out)
	}
	for _, svc := range []string{"eddy.v1.LifecycleService", "eddy.v1.AgentService", "eddy.v1.TableService", "eddy.v1.MonitorService", "grpc.health.v1.Health"} {
		if !strings.Contains(out, svc) {
			t.Errorf("grpcurl list: got %q, want it to list %s", out, svc)
		}
	}
	out, err = grpcurl(t, "-plaintext", w.GRPC, "eddy.v1.LifecycleService/GetStatus")
	if err != nil {
		t.Fatalf("grpcurl GetStatus: %v\n%s", err, out)
	}
	var resp map[string]any
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("grpcurl GetStatus output is not JSON: %v\n%s", err, out)
	}
	if resp["state"] != "WORKER_STATE_RUNNING" || resp["app"] != app {
		t.Errorf("grpcurl GetStatus: got state=%v app=%v, want RUNNING %s", resp["state"], resp["app"], app)
	}
	// A table the app does not declare is a clear NotFound.
	out, err = grpcurl(t, "-plaintext", "-d", `{"table":"t","key":"aw=="}`, w.GRPC, "eddy.v1.TableService/Get")
	if err == nil || !strings.Contains(out, "NotFound") || !strings.Contains(out, `unknown table "t"`) {
		t.Errorf("TableService/Get of an unknown table: got %v %q, want NotFound naming the table", err, out)
	}

	// The table view of status names the essentials.
	text, _, code := w.ctl(t, "status")
	if code != 0 || !strings.Contains(text, "RUNNING") || !strings.Contains(text, app) {
		t.Errorf("workerctl status: exit %d, got %q, want RUNNING and %s", code, text, app)
	}
}

func TestPauseResumeShutdownRPC(t *testing.T) {
	body, _, _ := basicApp(t, "")
	w := startWorker(t, body)
	w.waitState(t, 60*time.Second, "RUNNING")

	if _, e, code := w.ctl(t, "pause"); code != 0 {
		t.Fatalf("pause: exit %d: %s", code, e)
	}
	w.waitState(t, 5*time.Second, "PAUSED")
	if got := w.health(t); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health while PAUSED: got %v, want SERVING", got)
	}
	if _, e, code := w.ctl(t, "resume"); code != 0 {
		t.Fatalf("resume: exit %d: %s", code, e)
	}
	w.waitState(t, 5*time.Second, "RUNNING")

	// Per-agent pause, and an unknown agent.
	if _, e, code := w.ctl(t, "pause", "pass"); code != 0 {
		t.Fatalf("pause pass: exit %d: %s", code, e)
	}
	if p, _ := w.status(t)["paused_agents"].([]any); len(p) != 1 || p[0] != "pass" {
		t.Errorf("paused_agents: got %v, want [pass]", p)
	}
	_, e, code := w.ctl(t, "pause", "nosuch")
	if code == 0 || !strings.Contains(e, `unknown agent "nosuch"`) {
		t.Errorf("pause nosuch: exit %d, stderr %q; want an error naming the agent", code, e)
	}

	start := time.Now()
	if _, e, code := w.ctl(t, "shutdown"); code != 0 {
		t.Fatalf("shutdown: exit %d: %s", code, e)
	}
	if got := w.wait(25 * time.Second); got != 0 {
		t.Errorf("exit status after Shutdown RPC: got %d, want 0\n%s", got, w.log.String())
	}
	t.Logf("Shutdown RPC to exit: %s", time.Since(start).Round(time.Millisecond))
}

func TestSIGTERMExitsZero(t *testing.T) {
	body, _, _ := basicApp(t, "")
	w := startWorker(t, body)
	w.waitState(t, 60*time.Second, "RUNNING")
	w.signal(syscall.SIGTERM)
	if got := w.wait(25 * time.Second); got != 0 {
		t.Errorf("exit status after SIGTERM: got %d, want 0", got)
	}
	if !strings.Contains(w.log.String(), "worker stopped cleanly") {
		t.Errorf("log: want %q in\n%s", "worker stopped cleanly", w.log.String())
	}
}

// TestStoppedBroker freezes the broker (SIGSTOP) so that leaving the group
// hangs: health must turn NOT_SERVING from STOPPING on, a second SIGINT must
// exit at once, and a single signal must end in a non-zero exit at the
// shutdown deadline.
func TestStoppedBroker(t *testing.T) {
	t.Run("second signal exits at once", func(t *testing.T) {
		body, _, _ := basicApp(t, "")
		body = strings.Replace(body, "shutdown_timeout: 20s", "shutdown_timeout: 60s", 1)
		w := startWorker(t, body)
		w.waitAssigned(t, 3)
		freezeBroker(t)
		w.signal(syscall.SIGINT)
		waitFor(t, 10*time.Second, "health NOT_SERVING while stopping", func() bool {
			return w.health(t) == healthpb.HealthCheckResponse_NOT_SERVING
		})
		if w.exited() {
			t.Fatalf("worker exited before the second signal; can't test it")
		}
		start := time.Now()
		w.signal(syscall.SIGINT)
		code := w.wait(5 * time.Second)
		if code == 0 {
			t.Errorf("exit status after a second SIGINT: got 0, want non-zero")
		}
		t.Logf("second SIGINT to exit: %s (status %d)", time.Since(start).Round(time.Millisecond), code)
	})
	t.Run("deadline", func(t *testing.T) {
		body, _, _ := basicApp(t, "")
		body = strings.Replace(body, "shutdown_timeout: 20s", "shutdown_timeout: 3s", 1)
		w := startWorker(t, body)
		w.waitAssigned(t, 3)
		freezeBroker(t)
		start := time.Now()
		w.signal(syscall.SIGTERM)
		code := w.wait(15 * time.Second)
		took := time.Since(start)
		if code != 1 {
			t.Errorf("exit status at the deadline: got %d, want 1", code)
		}
		if took < 3*time.Second {
			t.Errorf("exit after %s, want it at the 3s deadline", took)
		}
		if !strings.Contains(w.log.String(), "did not finish within shutdown_timeout") {
			t.Errorf("log: want the reason (shutdown_timeout) in\n%s", w.log.String())
		}
		t.Logf("SIGTERM with a frozen broker: exit %d after %s", code, took.Round(time.Millisecond))
	})
}

// freezeBroker stops the test broker's JVM until the test ends.
func freezeBroker(t *testing.T) {
	t.Helper()
	pid := kafkatest.BrokerPID(t)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP broker: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
}

func TestHealthNotServingBeforeRunning(t *testing.T) {
	// A broker that never answers keeps the worker in STARTING.
	body := fmt.Sprintf("app: %s\nbrokers: 127.0.0.1:1\nkafka: {reach_timeout: 8s}\n", uniq(t, "app"))
	w := startWorker(t, body)
	if got := w.health(t); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health while STARTING: got %v, want NOT_SERVING", got)
	}
	resp, err := http.Get("http://" + w.HTTP + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz while STARTING: got %d, want 503", resp.StatusCode)
	}
	resp, err = http.Get("http://" + w.HTTP + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: got %d, want 200", resp.StatusCode)
	}
}

func TestUnreachableBroker(t *testing.T) {
	body := fmt.Sprintf("app: %s\nbrokers: 127.0.0.1:1\nkafka: {reach_timeout: 3s}\n", uniq(t, "app"))
	start := time.Now()
	w := startWorker(t, body)
	code := w.wait(20 * time.Second)
	took := time.Since(start)
	if code == 0 {
		t.Errorf("exit status: got 0, want non-zero")
	}
	if !strings.Contains(w.log.String(), "cannot reach Kafka brokers 127.0.0.1:1") {
		t.Errorf("log: want a clear unreachable error in\n%s", w.log.String())
	}
	t.Logf("unreachable broker reported after %s", took.Round(time.Millisecond))
}

func TestPartitionMismatchReported(t *testing.T) {
	topic := kafkatest.Topic(t, 2)
	body := fmt.Sprintf("app: %s\nbrokers: %s\nkafka: {reach_timeout: 5s}\ntopics:\n  - {name: %s, partitions: 4}\n",
		uniq(t, "app"), kafkatest.Bootstrap(t), topic)
	w := startWorker(t, body)
	if code := w.wait(30 * time.Second); code == 0 {
		t.Errorf("exit status: got 0, want non-zero")
	}
	for _, want := range []string{topic, "has 2 partitions, but 4 are declared"} {
		if !strings.Contains(w.log.String(), want) {
			t.Errorf("log: want %q in\n%s", want, w.log.String())
		}
	}
}

func TestBadAppFiles(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"unknown field", "app: a\nbrokers: b:1\ncolour: blue\n", "colour: line 3: unknown field"},
		{"missing brokers", "app: a\n", "brokers: required"},
		{"bad duration", "app: a\nbrokers: b:1\nshutdown_timeout: soon\n", `shutdown_timeout: line 3: invalid duration "soon"`},
		{"unknown table", "app: a\nbrokers: b:1\ntopics: [{name: t, partitions: 1}]\nagents: [{name: x, topics: [t], tables: [cnts]}]\n",
			`agents[0].tables[0]: unknown table "cnts"`},
		{"duplicate agent", "app: a\nbrokers: b:1\ntopics: [{name: t, partitions: 1}]\nagents: [{name: x, topics: [t]}, {name: x, topics: [t]}]\n",
			`agents[1].name: duplicate agent "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := appFile(t, t.TempDir(), tt.body)
			cmd := exec.Command(bin(t, "worker"), "-c", path)
			cmd.Env = append(os.Environ(), "EDDY_BROKERS=")
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != 2 {
				t.Errorf("exit status: got %d, want 2", code)
			}
			if !strings.Contains(string(out), path+": "+tt.want) {
				t.Errorf("got %q, want it to contain %q", out, path+": "+tt.want)
			}
		})
	}
}

func TestToken(t *testing.T) {
	body, _, _ := basicApp(t, "auth: {token: s3cret}\n")
	w := startWorker(t, body)
	w.waitState(t, 60*time.Second, "RUNNING") // GetStatus needs no token

	for _, args := range [][]string{{"pause"}, {"resume"}, {"shutdown"}} {
		for _, tok := range []string{"", "wrong"} {
			cmdArgs := args
			if tok != "" {
				cmdArgs = append([]string{"--token", tok}, args...)
			}
			_, e, code := w.ctl(t, cmdArgs...)
			if code != 4 {
				t.Errorf("workerctl %v with token %q: exit %d (stderr %q), want 4 (unauthenticated)", args, tok, code, e)
			}
		}
	}
	// grpcurl sees the gRPC code itself.
	out, err := grpcurl(t, "-plaintext", "-H", "authorization: Bearer wrong", w.GRPC, "eddy.v1.LifecycleService/Pause")
	if err == nil || !strings.Contains(out, "Unauthenticated") {
		t.Errorf("grpcurl Pause with a wrong token: got %v %q, want Unauthenticated", err, out)
	}
	// Read-only calls work without the token, as documented.
	if _, e, code := w.ctl(t, "status"); code != 0 {
		t.Errorf("status without token: exit %d: %s", code, e)
	}
	if out, err := grpcurl(t, "-plaintext", w.GRPC, "eddy.v1.AgentService/ListAgents"); err != nil {
		t.Errorf("ListAgents without token: %v %s", err, out)
	}
	// With the right token, mutating calls work.
	if _, e, code := w.ctl(t, "--token", "s3cret", "pause"); code != 0 {
		t.Errorf("pause with the token: exit %d: %s", code, e)
	}
	if _, e, code := w.ctl(t, "--token", "s3cret", "shutdown"); code != 0 {
		t.Errorf("shutdown with the token: exit %d: %s", code, e)
	}
	if code := w.wait(25 * time.Second); code != 0 {
		t.Errorf("exit status: got %d, want 0", code)
	}
}
