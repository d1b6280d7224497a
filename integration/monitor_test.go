package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// snapshot returns `workerctl stats -o json`.
func (w *workerProc) snapshot(t *testing.T) *eddyv1.Snapshot {
	t.Helper()
	conn := w.conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := eddyv1.NewMonitorServiceClient(conn).GetSnapshot(ctx, &eddyv1.GetSnapshotRequest{})
	if err != nil {
		t.Fatalf("GetSnapshot: %v", err)
	}
	return resp.GetSnapshot()
}

// metrics returns /metrics as text.
func (w *workerProc) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + w.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricValue finds one sample of a metric with the given labels.
func metricValue(text, name string, labels map[string]string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for k, v := range labels {
			if !strings.Contains(line, fmt.Sprintf("%s=%q", k, v)) {
				ok = false
			}
		}
		if ok {
			f, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
			return f, err == nil
		}
	}
	return 0, false
}

func TestMonitorCountsExactly(t *testing.T) {
	body, app, in, out := passApp(t, "")
	w := startWorker(t, body)
	w.waitAssigned(t, 8)
	startAgent(t, w.GRPC, "pass", out)
	w.waitInstances(t, "pass", 1, 8)

	// A watcher that never reads must not hold anything up.
	conn := w.conn(t)
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	if _, err := eddyv1.NewMonitorServiceClient(conn).Watch(wctx, &eddyv1.WatchRequest{Interval: durationpb.New(100 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}

	keys, values := keyedValues(20000, 300)
	pos := produce(t, in, keys, values)
	perPartition := map[int32]uint64{}
	for _, p := range pos {
		perPartition[p.Partition]++
	}
	waitCommittedAtEnd(t, w, app, in)
	snap := w.snapshot(t)
	if len(snap.GetPartitions()) != 8 {
		t.Fatalf("snapshot partitions: got %d, want 8", len(snap.GetPartitions()))
	}
	text := w.metrics(t)
	for _, ps := range snap.GetPartitions() {
		want := perPartition[ps.GetPartition()]
		for name, got := range map[string]uint64{"received": ps.GetReceived(), "delivered": ps.GetDelivered(), "processed": ps.GetProcessed(), "acked (deprecated alias)": ps.GetAcked()} {
			if got != want {
				t.Errorf("partition %d %s: got %d, want %d", ps.GetPartition(), name, got, want)
			}
		}
		if ps.GetInFlight() != 0 || ps.GetRetried() != 0 || ps.GetDeadLettered() != 0 {
			t.Errorf("partition %d: in flight %d, retried %d, dead-lettered %d, want 0", ps.GetPartition(), ps.GetInFlight(), ps.GetRetried(), ps.GetDeadLettered())
		}
		if want > 0 && (ps.GetProcessingP99().AsDuration() <= 0 || ps.GetEndToEndP99().AsDuration() <= 0) {
			t.Errorf("partition %d: p99 processing %v, end-to-end %v, want both > 0", ps.GetPartition(), ps.GetProcessingP99().AsDuration(), ps.GetEndToEndP99().AsDuration())
		}
		labels := map[string]string{"agent": "pass", "topic": in, "partition": strconv.Itoa(int(ps.GetPartition()))}
		for _, name := range []string{"eddy_events_processed_total", "eddy_events_received_total", "eddy_events_delivered_total"} {
			if v, ok := metricValue(text, name, labels); !ok || uint64(v) != want {
				t.Errorf("/metrics %s%v: got %v (found %v), want %d", name, labels, v, ok, want)
			}
		}
	}
	if v, ok := metricValue(text, "eddy_agent_sessions", map[string]string{"agent": "pass"}); !ok || v != 1 {
		t.Errorf("eddy_agent_sessions: got %v (found %v), want 1", v, ok)
	}

	// promtool accepts the exposition.
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found: install the Debian package prometheus (apt-get install prometheus); .ci/run does")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, b)
	}
}

func TestStallDetected(t *testing.T) {
	body, _, in, out := passApp(t, "")
	body += "monitor: {stall_timeout: 2s}\n"
	w := startWorker(t, body)
	w.waitAssigned(t, 8)
	hang := filepath.Join(t.TempDir(), "hang")
	if err := os.WriteFile(hang, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	startAgent(t, w.GRPC, "pass", out, "--hang-file", hang)
	w.waitInstances(t, "pass", 1, 8)
	keys, values := keyedValues(200, 50)
	produce(t, in, keys, values)

	waitFor(t, 20*time.Second, "stalls reported", func() bool { return len(w.snapshot(t).GetStalled()) > 0 })
	st := w.status(t)
	if s, _ := st["stalled"].([]any); len(s) == 0 {
		t.Errorf("GetStatus stalled: got none, want the stalls")
	}
	if st["state"] != "WORKER_STATE_RUNNING" || w.health(t).String() != "SERVING" {
		t.Errorf("while stalled: state %v, health %v; want RUNNING and SERVING", st["state"], w.health(t))
	}
	text, _, _ := w.ctl(t, "status")
	if !strings.Contains(text, "STALLED") {
		t.Errorf("workerctl status does not show the stall loudly:\n%s", text)
	}
	if v, ok := metricValue(w.metrics(t), "eddy_stalled", map[string]string{"agent": "pass"}); !ok || v < 1 {
		t.Errorf("eddy_stalled: got %v (found %v), want >= 1", v, ok)
	}
	waitFor(t, 10*time.Second, "the stall warning in the log", func() bool { return strings.Contains(w.log.String(), "stalled") })

	os.Remove(hang)
	got := newConsumer(t, out).readUntil(time.Minute, "every output", allPresent(out, values))
	checkOutputs(t, values, got[out], false)
	waitFor(t, 20*time.Second, "stalls cleared", func() bool { return len(w.snapshot(t).GetStalled()) == 0 })
	// The line was logged before the snapshot changed, but it reaches the
	// test through the process's stderr pipe: wait for it.
	waitFor(t, 10*time.Second, "the recovery line in the log", func() bool {
		return strings.Contains(w.log.String(), "no longer stalled")
	})
}

// TestTop runs workerctl top in a real pseudo-terminal (tmux), reads the
// screen, and quits it with q.
func TestTop(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Fatalf("tmux not found: install the Debian package tmux; .ci/run does")
	}
	body, _, in, out := passApp(t, "")
	w := startWorker(t, body)
	w.waitAssigned(t, 8)
	startAgent(t, w.GRPC, "pass", out, "--delay", "1ms")
	w.waitInstances(t, "pass", 1, 8)
	keys, values := keyedValues(8000, 100)
	produce(t, in, keys, values)

	session := fmt.Sprintf("eddytop%d", os.Getpid())
	run := func(args ...string) string {
		b, err := exec.Command(tmux, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, b)
		}
		return string(b)
	}
	done := filepath.Join(t.TempDir(), "exited")
	run("new-session", "-d", "-s", session, "-x", "200", "-y", "50",
		fmt.Sprintf("%s --addr %s top --interval 200ms; touch %s; sleep 30", bin(t, "workerctl"), w.GRPC, done))
	t.Cleanup(func() { _ = exec.Command(tmux, "kill-session", "-t", session).Run() })
	var screen string
	waitFor(t, 20*time.Second, "top showing the agent and a rate", func() bool {
		screen = run("capture-pane", "-p", "-t", session)
		return strings.Contains(screen, "eddy top") && strings.Contains(screen, "pass") && strings.Contains(screen, "RATE/S")
	})
	run("send-keys", "-t", session, "q")
	waitFor(t, 10*time.Second, "top to exit on q", func() bool {
		_, err := os.Stat(done)
		return err == nil
	})
	if t.Failed() {
		t.Logf("screen:\n%s", screen)
	}
}
