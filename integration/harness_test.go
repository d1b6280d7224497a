package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/internal/testutil"
)

func TestMain(m *testing.M) { kafkatest.Main(m) }

// bins builds worker, workerctl and the pinned grpcurl once per test binary.
var bins = sync.OnceValues(func() (map[string]string, error) {
	dir, err := os.MkdirTemp("", "eddy-bins-")
	if err != nil {
		return nil, err
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for name, args := range map[string][]string{
		"worker":    {"./cmd/worker"},
		"workerctl": {"./cmd/workerctl"},
		"grpcurl":   {"-modfile=tools/tools.mod", "github.com/fullstorydev/grpcurl/cmd/grpcurl"},
		"testagent": {"./integration/testagent"},
		"router":    {"./examples/router"},
		"orders":    {"./examples/router/orders"},
		"wordcount": {"./examples/wordcount"},
	} {
		path := filepath.Join(dir, name)
		cmd := exec.Command("go", append([]string{"build", "-o", path}, args...)...)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v\n%s", name, err, b)
		}
		out[name] = path
	}
	return out, nil
})

func bin(t testing.TB, name string) string {
	t.Helper()
	b, err := bins()
	if err != nil {
		t.Fatalf("build binaries: %v", err)
	}
	return b[name]
}

// The helpers these tests share with other packages (internal/testutil).
var (
	repoRoot = testutil.RepoRoot
	waitFor  = testutil.WaitFor[string]
)

// syncBuffer is a buffer safe for a writer and a reading test.
type syncBuffer = testutil.Buffer

// workerProc is a running worker process.
type workerProc struct {
	t        testing.TB
	cmd      *exec.Cmd
	log      *syncBuffer
	dir      string
	GRPC     string
	HTTP     string
	done     chan struct{}
	exitCode int

	connOnce sync.Once
	grpcConn *grpc.ClientConn
	connErr  error
}

// appFile writes an app file for a test into dir and returns its path.
func appFile(t testing.TB, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startWorker starts a worker on loopback ports chosen by the OS with the
// given app file body and extra environment. It does not wait for RUNNING.
func startWorker(t testing.TB, body string, env ...string) *workerProc {
	t.Helper()
	return startWorkerIn(t, t.TempDir(), body, env...)
}

// startWorkerIn is startWorker with the worker's files (app file, address
// file, data directory dir/data) in dir, so that a restarted worker finds
// its table stores again.
func startWorkerIn(t testing.TB, dir, body string, env ...string) *workerProc {
	t.Helper()
	return startWorkerListen(t, dir, body, "127.0.0.1:0", env...)
}

// startWorkerListen is startWorkerIn with the gRPC listener on grpcAddr.
func startWorkerListen(t testing.TB, dir, body, grpcAddr string, env ...string) *workerProc {
	t.Helper()
	_ = os.Remove(filepath.Join(dir, "addr.json"))
	path := appFile(t, dir, body)
	addrFile := filepath.Join(dir, "addr.json")
	cmd := exec.Command(bin(t, "worker"), "-c", path,
		"--grpc", grpcAddr, "--http", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "data"), "--addr-file", addrFile)
	cmd.Env = append(os.Environ(), env...)
	w := &workerProc{t: t, cmd: cmd, log: &syncBuffer{}, dir: dir, done: make(chan struct{})}
	cmd.Stderr = w.log
	cmd.Stdout = w.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	go func() {
		err := cmd.Wait()
		w.exitCode = cmd.ProcessState.ExitCode()
		_ = err
		close(w.done)
	}()
	t.Cleanup(func() {
		if t.Failed() && !w.exited() {
			// What it was doing: its status and partition figures, then
			// its goroutines (SIGQUIT makes the Go runtime print every
			// goroutine's stack as it exits, into the log printed below).
			dumpWorkers(t, w)
			_ = cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-w.done:
			case <-time.After(10 * time.Second):
			}
		}
		_ = cmd.Process.Kill()
		<-w.done
		if t.Failed() {
			t.Logf("worker log:\n%s", w.log.String())
		}
	})
	waitFor(t, 30*time.Second, "the worker's addr file", func() bool {
		b, err := os.ReadFile(addrFile)
		if err != nil {
			select {
			case <-w.done:
				t.Fatalf("worker exited with %d before listening:\n%s", w.exitCode, w.log.String())
			default:
			}
			return false
		}
		var a struct{ GRPC, HTTP string }
		if err := json.Unmarshal(b, &a); err != nil {
			return false
		}
		w.GRPC, w.HTTP = a.GRPC, a.HTTP
		return true
	})
	return w
}

// dumpWorkers logs what each live worker of ws is doing: its status and
// its partitions' figures (for a failed test; agents still connected, if
// called before the cleanups stop them).
func dumpWorkers(t testing.TB, ws ...*workerProc) {
	t.Helper()
	for _, w := range ws {
		if w.exited() {
			continue
		}
		for _, what := range []string{"status", "stats"} {
			out, errOut, code := runCtl(t, w.GRPC, what, "-o", "json")
			t.Logf("worker %s (workerctl %s, exit %d):\n%s%s", w.GRPC, what, code, out, errOut)
		}
	}
}

// exited reports whether the process has exited.
func (w *workerProc) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// wait waits up to timeout for the process to exit and returns its status.
func (w *workerProc) wait(timeout time.Duration) int {
	w.t.Helper()
	select {
	case <-w.done:
		return w.exitCode
	case <-time.After(timeout):
		w.t.Fatalf("worker still running %s later; log:\n%s", timeout, w.log.String())
		return -1
	}
}

func (w *workerProc) signal(s syscall.Signal) {
	w.t.Helper()
	if err := w.cmd.Process.Signal(s); err != nil {
		w.t.Fatalf("signal %v: %v", s, err)
	}
}

// ctl runs workerctl against the worker and returns stdout, stderr and the
// exit code.
func (w *workerProc) ctl(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	return runCtl(t, w.GRPC, args...)
}

func runCtl(t testing.TB, addr string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(t, "workerctl"), append([]string{"--addr", addr}, args...)...)
	cmd.Env = append(os.Environ(), "EDDY_ADDR=", "EDDY_TOKEN=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("run workerctl: %v", err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// status returns `workerctl status -o json` decoded.
func (w *workerProc) status(t testing.TB) map[string]any {
	t.Helper()
	out, errOut, code := w.ctl(t, "status", "-o", "json")
	if code != 0 {
		t.Fatalf("workerctl status: exit %d: %s", code, errOut)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, out)
	}
	return m
}

// waitState polls status until the worker reports the state.
func (w *workerProc) waitState(t testing.TB, timeout time.Duration, state string) {
	t.Helper()
	waitFor(t, timeout, "state "+state, func() bool {
		if w.exited() {
			t.Fatalf("worker exited with %d while waiting for %s:\n%s", w.exitCode, state, w.log.String())
		}
		out, _, code := w.ctl(t, "status", "-o", "json")
		return code == 0 && strings.Contains(out, `"WORKER_STATE_`+state+`"`)
	})
}

// waitAssigned waits until the worker is RUNNING and owns n partitions, and
// returns them from status.
func (w *workerProc) waitAssigned(t testing.TB, n int) []any {
	t.Helper()
	w.waitState(t, 60*time.Second, "RUNNING")
	var a []any
	waitFor(t, 30*time.Second, fmt.Sprintf("%d assigned partitions", n), func() bool {
		a, _ = w.status(t)["assigned"].([]any)
		return len(a) == n
	})
	return a
}

// conn returns the test's gRPC connection to the worker, dialled once and
// closed when the test ends, so polling helpers do not dial each time.
func (w *workerProc) conn(t testing.TB) *grpc.ClientConn {
	t.Helper()
	w.connOnce.Do(func() {
		w.grpcConn, w.connErr = grpc.NewClient(w.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if w.connErr == nil {
			t.Cleanup(func() { w.grpcConn.Close() })
		}
	})
	if w.connErr != nil {
		t.Fatal(w.connErr)
	}
	return w.grpcConn
}

// health asks grpc.health.v1 for the whole worker's status.
func (w *workerProc) health(t testing.TB) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	conn := w.conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.GetStatus()
}

// agentProc is a running test agent process.
type agentProc struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

// startAgent runs integration/testagent against a worker, as an agent of
// the worker's app (args may name another with --app).
func startAgent(t testing.TB, addr, name, out string, args ...string) *agentProc {
	t.Helper()
	base := []string{"--addr", addr, "--app", appAt(t, addr), "--name", name, "--out", out}
	cmd := exec.Command(bin(t, "testagent"), append(base, args...)...)
	a := &agentProc{cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = a.log, a.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start agent: %v", err)
	}
	go func() { _ = cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-a.done
		if t.Failed() {
			t.Logf("agent %s log:\n%s", name, a.log.String())
		}
	})
	return a
}

// appAt asks the worker at addr for its app, which a test agent sends in
// Hello.
func appAt(t testing.TB, addr string) string {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := eddyv1.NewLifecycleServiceClient(conn).GetStatus(ctx, &eddyv1.GetStatusRequest{})
	if err != nil {
		t.Fatalf("GetStatus of %s, for the app of a test agent: %v", addr, err)
	}
	return st.GetApp()
}

// kill ends the agent process with SIGKILL and waits for it.
func (a *agentProc) kill() {
	_ = a.cmd.Process.Kill()
	<-a.done
}

// agents returns ListAgents from the worker.
func (w *workerProc) agents(t testing.TB) []*eddyv1.AgentInfo {
	t.Helper()
	conn := w.conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := eddyv1.NewAgentServiceClient(conn).ListAgents(ctx, &eddyv1.ListAgentsRequest{})
	if err != nil {
		t.Fatalf("ListAgents: %v", err)
	}
	return resp.GetAgents()
}

// waitInstances waits until agent name has n instances owning every one of
// its partitions between them (parts in all).
func (w *workerProc) waitInstances(t testing.TB, name string, n, parts int) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("%d instances of %s owning %d partitions", n, name, parts), func() bool {
		for _, a := range w.agents(t) {
			if a.GetName() != name || len(a.GetInstances()) != n || len(a.GetUnassigned()) != 0 {
				continue
			}
			owned := 0
			for _, in := range a.GetInstances() {
				owned += len(in.GetPartitions())
			}
			return owned == parts
		}
		return false
	})
}

// grpcurl runs the pinned grpcurl with args (flags, address, method) and
// returns its combined output.
func grpcurl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, bin(t, "grpcurl"), args...).CombinedOutput()
	return string(b), err
}
