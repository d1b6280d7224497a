package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/internal/testutil"
)

// TestMTLSWorker: a worker process with mutual TLS and a token
// (docs/operations.md#security). workerctl with the right client
// certificate works; without one, or verifying against another CA, it
// exits 4 naming the certificate problem. The HTTP listener serves the
// same TLS. A Go agent with a client certificate processes events, checked
// with an independent consumer. A Connect stream that never says Hello is
// closed at limits.hello_timeout.
func TestMTLSWorker(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, "eddy integration CA")
	other := testutil.NewCA(t, "another CA")
	caFile, otherFile := ca.WriteCA(t, dir, "ca.pem"), other.WriteCA(t, dir, "other.pem")
	workerCert, workerKey := ca.Issue(t, "worker-1", "127.0.0.1").Write(t, dir, "worker")
	opLeaf := ca.Issue(t, "operator")
	opCert, opKey := opLeaf.Write(t, dir, "operator")
	agentCert, agentKey := ca.Issue(t, "agent-pass").Write(t, dir, "agent")

	body, app, in, out := passApp(t, "")
	body += fmt.Sprintf("auth: {token: s3cret}\ntls: {cert_file: %s, key_file: %s, client_ca_file: %s, peer_ca_file: %s}\nlimits: {hello_timeout: 1s}\n",
		workerCert, workerKey, caFile, caFile)
	w := startWorker(t, body)
	withCert := []string{"--cacert", caFile, "--cert", opCert, "--key", opKey}
	waitFor(t, 60*time.Second, "RUNNING, asked over mutual TLS", func() bool {
		if w.exited() {
			t.Fatalf("worker exited with %d:\n%s", w.exitCode, w.log.String())
		}
		stdout, _, code := runCtl(t, w.GRPC, append(withCert, "status", "-o", "json")...)
		return code == 0 && strings.Contains(stdout, `"WORKER_STATE_RUNNING"`)
	})

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no client certificate", []string{"--cacert", caFile}, "certificate required"},
		{"another CA", []string{"--cacert", otherFile, "--cert", opCert, "--key", opKey}, "certificate signed by unknown authority"},
	} {
		_, stderr, code := runCtl(t, w.GRPC, append(tt.args, "status")...)
		if code != 4 || !strings.Contains(stderr, tt.want) {
			t.Errorf("workerctl status, %s: got exit %d, stderr %q; want exit 4 naming %q", tt.name, code, stderr, tt.want)
		}
	}

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.Pool, Certificates: []tls.Certificate{opLeaf.TLS}}}}
	resp, err := hc.Get("https://" + w.HTTP + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz over TLS: got %d, want 200", resp.StatusCode)
	}
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + w.HTTP + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("GET /healthz in plaintext: got 200, want the TLS listener to refuse it")
		}
	}

	ag := exec.Command(bin(t, "testagent"), "--addr", w.GRPC, "--app", app, "--name", "pass", "--out", out,
		"--token", "s3cret", "--cacert", caFile, "--cert", agentCert, "--key", agentKey)
	log := &syncBuffer{}
	ag.Stdout, ag.Stderr = log, log
	if err := ag.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = ag.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = ag.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("agent log:\n%s", log.String())
		}
	})
	keys, values := keyedValues(200, 10)
	produce(t, in, keys, values)
	got := newConsumer(t, out).readUntil(60*time.Second, "every value on the output topic", allPresent(out, values))
	checkOutputs(t, values, got[out], false)

	// A stream that passes the TLS handshake but never says Hello.
	conn, err := grpc.NewClient(w.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: ca.Pool, Certificates: []tls.Certificate{opLeaf.TLS}})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := eddyv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := stream.Recv(); status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "no Hello within 1s") {
		t.Errorf("silent Connect stream: got %v, want DEADLINE_EXCEEDED at limits.hello_timeout", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("silent Connect stream closed after %v, want about 1s", took)
	}
}

// TestForwardedGetMTLS: two worker processes with mutual TLS, a token that
// protects reads too, and tls.peer_ca_file. A Go agent (with a client
// certificate) writes k0 into table kv; `workerctl get kv k0` asked of each
// worker answers the value, and the worker that does not own k0's
// partition forwards the read to the one that does, over verified mutual
// TLS with its token (the owner requires both, so the answer proves it).
func TestForwardedGetMTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, "eddy peers CA")
	caFile := ca.WriteCA(t, dir, "ca.pem")
	opCert, opKey := ca.Issue(t, "operator").Write(t, dir, "operator")
	agentCert, agentKey := ca.Issue(t, "agent-pass").Write(t, dir, "agent")
	body, app, in, out := passApp(t, ", tables: [kv]")
	body += "tables:\n  - {name: kv}\nauth: {token: s3cret, protect_reads: true}\n"
	withCert := []string{"--cacert", caFile, "--cert", opCert, "--key", opKey, "--token", "s3cret"}
	ctl := func(w *workerProc, args ...string) (string, string, int) {
		return runCtl(t, w.GRPC, append(withCert, args...)...)
	}
	var ws []*workerProc
	for i := 1; i <= 2; i++ {
		name := fmt.Sprintf("worker-%d", i)
		cert, key := ca.Issue(t, name, "127.0.0.1").Write(t, dir, name)
		ws = append(ws, startWorker(t, body+fmt.Sprintf("tls: {cert_file: %s, key_file: %s, client_ca_file: %s, peer_ca_file: %s}\n",
			cert, key, caFile, caFile)))
	}
	assigned := func(w *workerProc) (int, string) {
		stdout, _, code := ctl(w, "status", "-o", "json")
		if code != 0 {
			return 0, ""
		}
		var st struct {
			WorkerID string `json:"worker_id"`
			Assigned []any  `json:"assigned"`
			State    string `json:"state"`
		}
		if json.Unmarshal([]byte(stdout), &st) != nil || st.State != "WORKER_STATE_RUNNING" {
			return 0, ""
		}
		return len(st.Assigned), st.WorkerID
	}
	ids := map[*workerProc]string{}
	waitFor(t, 90*time.Second, "the 8 partitions split over both workers", func() bool {
		for _, w := range ws {
			if w.exited() {
				t.Fatalf("worker exited with %d:\n%s", w.exitCode, w.log.String())
			}
		}
		n1, id1 := assigned(ws[0])
		n2, id2 := assigned(ws[1])
		ids[ws[0]], ids[ws[1]] = id1, id2
		return n1 > 0 && n2 > 0 && n1+n2 == 8
	})
	for _, w := range ws {
		startAgentProc(t, w.GRPC, app, out, "--token", "s3cret", "--cacert", caFile, "--cert", agentCert, "--key", agentKey, "--table", "kv")
	}
	produce(t, in, []string{"k0"}, []string{"v1"})
	newConsumer(t, out).readUntil(60*time.Second, "k0's output", func(got map[string][]record) bool { return len(got[out]) > 0 })

	served := map[string]bool{}
	for _, w := range ws {
		var g struct {
			Value    []byte `json:"value"`
			ServedBy string `json:"served_by"`
		}
		waitFor(t, 30*time.Second, "k0 in table kv, asked of "+ids[w], func() bool {
			stdout, stderr, code := ctl(w, "get", "kv", "k0", "-o", "json")
			if code != 0 {
				if !strings.Contains(stderr, "not found") {
					t.Fatalf("workerctl get kv k0 on %s: exit %d: %s", ids[w], code, stderr)
				}
				return false // the changelog write is not acknowledged yet
			}
			return json.Unmarshal([]byte(stdout), &g) == nil
		})
		if string(g.Value) != "v1" {
			t.Errorf("get kv k0 on %s: got %q, want v1", ids[w], g.Value)
		}
		served[g.ServedBy] = true
		if g.ServedBy != ids[w] {
			t.Logf("get kv k0 on %s: forwarded to %s over mutual TLS", ids[w], g.ServedBy)
		}
	}
	if len(served) != 1 {
		t.Errorf("k0 served by %v, want one owner answering both workers (the other forwarding to it)", served)
	}
}

// startAgentProc starts the Go test agent "pass" against addr with app
// given (appAt asks in plaintext, which a TLS worker refuses).
func startAgentProc(t *testing.T, addr, app, out string, args ...string) {
	t.Helper()
	ag := exec.Command(bin(t, "testagent"), append([]string{"--addr", addr, "--app", app, "--name", "pass", "--out", out}, args...)...)
	log := &syncBuffer{}
	ag.Stdout, ag.Stderr = log, log
	if err := ag.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = ag.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = ag.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("agent log:\n%s", log.String())
		}
	})
}
