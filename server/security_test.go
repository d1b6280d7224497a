package server

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/internal/testutil"
	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/app"
	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/transport"
)

// startAgentServer serves cfg with a real agents.Manager of one agent
// "count" on topic "in" and returns its address, the server and the
// manager.
func startAgentServer(t *testing.T, cfg Config) (string, *Server, *agents.Manager) {
	t.Helper()
	m := agents.New(agents.Config{
		App:    "app",
		Agents: []config.Agent{{Name: "count", Topics: []string{"in"}, Ordering: "partition"}},
		Logger: slog.New(slog.DiscardHandler),
	}, nopProducer{})
	m.Attach(nopConsumer{})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran })
	cfg.Logger = slog.New(slog.DiscardHandler)
	srv := New(cfg, &sessionCore{fakeCore: &fakeCore{}, m: m})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.GRPC.Serve(lis) }()
	t.Cleanup(srv.GRPC.Stop)
	return lis.Addr().String(), srv, m
}

func dialTest(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func connect(t *testing.T, conn *grpc.ClientConn) grpc.BidiStreamingClient[eddyv1.ConnectRequest, eddyv1.ConnectResponse] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	s, err := eddyv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hello(instance, token string) *eddyv1.ConnectRequest {
	return &eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Hello{Hello: &eddyv1.Hello{
		App: "app", Agent: "count", InstanceId: instance, Token: token, ProtocolVersion: agents.ProtocolVersion,
		Credit: &eddyv1.Credit{Events: 100},
	}}}
}

// welcomed sends the Hello and waits for the Welcome.
func welcomed(t *testing.T, s grpc.BidiStreamingClient[eddyv1.ConnectRequest, eddyv1.ConnectResponse], h *eddyv1.ConnectRequest) {
	t.Helper()
	if err := s.Send(h); err != nil {
		t.Fatal(err)
	}
	m, err := s.Recv()
	if err != nil {
		t.Fatalf("Hello: got %v, want a Welcome", err)
	}
	if m.GetWelcome() == nil {
		t.Fatalf("got %v, want a Welcome", m)
	}
}

// refused sends h (when not nil) and reads until the stream ends, which
// must be with code, the message containing want, and without a Welcome.
func refused(t *testing.T, s grpc.BidiStreamingClient[eddyv1.ConnectRequest, eddyv1.ConnectResponse], h *eddyv1.ConnectRequest, code codes.Code, want string) {
	t.Helper()
	if h != nil {
		_ = s.Send(h) // a refusal may already have ended the stream
	}
	for {
		m, err := s.Recv()
		if err == nil && m.GetWelcome() == nil {
			continue // what a session already open had been sent
		}
		if err == nil {
			t.Fatalf("got %v, want the stream ended with %v", m, code)
		}
		if status.Code(err) != code || !strings.Contains(err.Error(), want) {
			t.Fatalf("stream ended with %v, want %v containing %q", err, code, want)
		}
		return
	}
}

// TestConnectHelloDeadline: a stream that never says Hello is closed at
// limits.hello_timeout, and leaves no stream waiting.
func TestConnectHelloDeadline(t *testing.T) {
	addr, srv, m := startAgentServer(t, Config{HelloTimeout: 200 * time.Millisecond})
	conn := dialTest(t, addr, nil)
	start := time.Now()
	refused(t, connect(t, conn), nil, codes.DeadlineExceeded, "no Hello within 200ms")
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("closed after %v, want about 200ms", took)
	}
	testutil.WaitFor(t, 5*time.Second, "no stream left pending", func() bool { return srv.gate.pendingNow() == 0 })
	if infos := m.Info(); len(infos[0].Instances) != 0 {
		t.Errorf("instances: got %+v, want none", infos[0].Instances)
	}
}

// TestConnectPendingHelloBound: past limits.max_pending_hello a new stream
// is refused at once; once a waiting one says Hello, there is room again,
// and an agent that says Hello at once works throughout.
func TestConnectPendingHelloBound(t *testing.T) {
	addr, srv, _ := startAgentServer(t, Config{MaxPendingHello: 2})
	conn := dialTest(t, addr, nil)
	silent := []grpc.BidiStreamingClient[eddyv1.ConnectRequest, eddyv1.ConnectResponse]{connect(t, conn), connect(t, conn)}
	testutil.WaitFor(t, 5*time.Second, "two streams pending", func() bool { return srv.gate.pendingNow() == 2 })
	refused(t, connect(t, conn), nil, codes.ResourceExhausted, "limits.max_pending_hello")
	welcomed(t, silent[0], hello("a", ""))
	testutil.WaitFor(t, 5*time.Second, "one stream pending", func() bool { return srv.gate.pendingNow() == 1 })
	welcomed(t, connect(t, conn), hello("b", ""))
}

// TestConnectPendingPerClient: past limits.max_pending_hello_per_client a
// client's next silent stream is refused, naming the client, while another
// client (another address) still gets in; a Hello makes room again.
func TestConnectPendingPerClient(t *testing.T) {
	addr, srv, _ := startAgentServer(t, Config{MaxPendingHello: 10, MaxPendingHelloPerClient: 2})
	conn := dialTest(t, addr, nil)
	silent := connect(t, conn)
	connect(t, conn)
	testutil.WaitFor(t, 5*time.Second, "two streams pending", func() bool { return srv.gate.pendingNow() == 2 })
	refused(t, connect(t, conn), nil, codes.ResourceExhausted,
		"client 127.0.0.1 has 2 Connect streams waiting to send their Hello (limits.max_pending_hello_per_client)")
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	other, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return dialer.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	welcomed(t, connect(t, other), hello("b", ""))
	welcomed(t, silent, hello("a", ""))
	testutil.WaitFor(t, 5*time.Second, "one stream pending", func() bool { return srv.gate.pendingNow() == 1 })
	welcomed(t, connect(t, conn), hello("c", ""))
}

// TestConnectStreamsPerClient: past limits.max_streams_per_client a
// client's next stream is refused, naming the client; a stream that ends
// makes room.
func TestConnectStreamsPerClient(t *testing.T) {
	addr, _, _ := startAgentServer(t, Config{MaxStreamsPerClient: 2})
	conn := dialTest(t, addr, nil)
	first := connect(t, conn)
	welcomed(t, first, hello("a", ""))
	welcomed(t, connect(t, conn), hello("b", ""))
	refused(t, connect(t, conn), hello("c", ""), codes.ResourceExhausted, "client 127.0.0.1 has 2 Connect streams open (limits.max_streams_per_client)")
	if err := first.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := first.Recv(); err != nil {
			break
		}
	}
	testutil.WaitFor(t, 5*time.Second, "room for a new stream", func() bool {
		s := connect(t, conn)
		if err := s.Send(hello("c", "")); err != nil {
			return false
		}
		m, err := s.Recv()
		return err == nil && m.GetWelcome() != nil
	})
}

// TestConnectTakeoverWithWrongToken: a session that claims a connected
// instance id with a wrong token is refused, and the real instance keeps
// its partition.
func TestConnectTakeoverWithWrongToken(t *testing.T) {
	addr, _, m := startAgentServer(t, Config{Token: "s3cret"})
	conn := dialTest(t, addr, nil)
	real := connect(t, conn)
	welcomed(t, real, hello("i1", "s3cret"))
	m.Assigned([]transport.TopicPartition{{Topic: "in", Partition: 0}})
	waitPartition(t, m, "i1")
	refused(t, connect(t, conn), hello("i1", "guess"), codes.Unauthenticated, "bad token")
	refused(t, connect(t, conn), hello("i1", ""), codes.Unauthenticated, "missing token")
	if got := partitionsOf(m, "i1"); got != 1 {
		t.Errorf("instance i1 holds %d partitions after the attempts, want 1", got)
	}
}

// TestConnectTakeoverMTLS: under mutual TLS an instance id is bound to the
// client-certificate identity of its session: another identity is refused
// (the real instance keeps its partition); the same identity replaces it.
func TestConnectTakeoverMTLS(t *testing.T) {
	ca := testutil.NewCA(t, "eddy test CA")
	srvCert := ca.Issue(t, "worker", "127.0.0.1")
	addr, _, m := startAgentServer(t, Config{TLS: &tls.Config{
		Certificates: []tls.Certificate{srvCert.TLS}, MinVersion: tls.VersionTLS12,
		ClientCAs: ca.Pool, ClientAuth: tls.RequireAndVerifyClientCert,
	}})
	as := func(cn string) *grpc.ClientConn {
		return dialTest(t, addr, credentials.NewTLS(&tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.Issue(t, cn).TLS}}))
	}
	real := connect(t, as("agent-a"))
	welcomed(t, real, hello("i1", ""))
	m.Assigned([]transport.TopicPartition{{Topic: "in", Partition: 0}})
	waitPartition(t, m, "i1")
	refused(t, connect(t, as("intruder")), hello("i1", ""), codes.PermissionDenied,
		`instance "i1" of agent "count" is connected with client certificate "CN=agent-a": a session with client certificate "CN=intruder" may not replace it`)
	if got := partitionsOf(m, "i1"); got != 1 {
		t.Errorf("instance i1 holds %d partitions after the attempt, want 1", got)
	}
	// The intruder may use an instance id of its own.
	welcomed(t, connect(t, as("intruder")), hello("i2", ""))
	// The same identity reconnecting replaces the session.
	welcomed(t, connect(t, as("agent-a")), hello("i1", ""))
	refused(t, real, nil, codes.Aborted, "")
}

func partitionsOf(m *agents.Manager, instance string) int {
	for _, a := range m.Info() {
		for _, in := range a.Instances {
			if in.InstanceID == instance {
				return len(in.Partitions)
			}
		}
	}
	return -1
}

func waitPartition(t *testing.T, m *agents.Manager, instance string) {
	t.Helper()
	testutil.WaitFor(t, 5*time.Second, "instance "+instance+" to hold partition in/0", func() bool { return partitionsOf(m, instance) == 1 })
}

// TestTLSMinimumVersion: the listener's TLS configuration refuses TLS 1.1.
func TestTLSMinimumVersion(t *testing.T) {
	ca := testutil.NewCA(t, "eddy test CA")
	addr, _, _ := startAgentServer(t, Config{TLS: &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, "worker", "127.0.0.1").TLS}, MinVersion: tls.VersionTLS12,
	}})
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool, MaxVersion: tls.VersionTLS11})
	if err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 handshake succeeded, want it refused")
	}
}

// peerRecorder is a TableService peer that records the authorization
// metadata of the calls that reach it.
type peerRecorder struct {
	eddyv1.UnimplementedTableServiceServer
	mu     sync.Mutex
	tokens []string
}

func (p *peerRecorder) Get(ctx context.Context, _ *eddyv1.GetRequest) (*eddyv1.GetResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	p.mu.Lock()
	p.tokens = append(p.tokens, strings.Join(md.Get("authorization"), ","))
	p.mu.Unlock()
	return &eddyv1.GetResponse{Value: []byte("v"), ServedBy: "peer"}, nil
}

func (p *peerRecorder) calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tokens...)
}

// startPeer serves a peerRecorder with cert, requiring client certificates
// of clientCA when not nil.
func startPeer(t *testing.T, cert tls.Certificate, clientCA *testutil.CA) (string, *peerRecorder) {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != nil {
		cfg.ClientCAs, cfg.ClientAuth = clientCA.Pool, tls.RequireAndVerifyClientCert
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	p := &peerRecorder{}
	eddyv1.RegisterTableServiceServer(s, p)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String(), p
}

// TestForwardTokenOnlyToVerifiedPeers: a forwarded read, which carries the
// token, goes to a peer whose certificate verifies against the peer CAs
// and names the host dialled (presenting this worker's certificate to a
// peer that requires one); to a peer with a certificate of another CA or
// for another name it fails, and the peer received nothing; without peer
// CAs, a non-loopback peer is refused before any connection, naming the
// peer and the missing setting.
func TestForwardTokenOnlyToVerifiedPeers(t *testing.T) {
	ca := testutil.NewCA(t, "eddy workers CA")
	other := testutil.NewCA(t, "someone else's CA")
	me := ca.Issue(t, "worker-1", "127.0.0.1")
	req := &eddyv1.GetRequest{Table: "t", Key: []byte("k")}
	fwd := newForwarder(Config{Token: "s3cret", PeerCAs: ca.Pool,
		TLS: &tls.Config{Certificates: []tls.Certificate{me.TLS}, MinVersion: tls.VersionTLS12}})
	t.Cleanup(func() { fwd.Close() })
	ctx := context.Background()

	good, goodPeer := startPeer(t, ca.Issue(t, "worker-2", "127.0.0.1").TLS, ca)
	if _, err := fwd.get(ctx, "worker-1", "worker-2", good, req); err != nil {
		t.Fatalf("get from a verified peer: %v", err)
	}
	if got := goodPeer.calls(); len(got) != 1 || got[0] != "Bearer s3cret" {
		t.Errorf("the verified peer got authorization %q, want [\"Bearer s3cret\"]", got)
	}

	for _, tt := range []struct {
		name string
		cert tls.Certificate
		want string
	}{
		{"untrusted CA", other.Issue(t, "impostor", "127.0.0.1").TLS, "certificate signed by unknown authority"},
		{"wrong name", ca.Issue(t, "worker-3", "w3.example").TLS, "127.0.0.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, peer := startPeer(t, tt.cert, nil)
			_, err := fwd.get(ctx, "worker-1", "worker-x", addr, req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want a handshake failure containing %q", err, tt.want)
			}
			if got := peer.calls(); len(got) != 0 {
				t.Errorf("the unverified peer got %d calls (authorization %q), want none", len(got), got)
			}
		})
	}

	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"tls without peer CA", Config{Token: "s3cret", TLS: &tls.Config{Certificates: []tls.Certificate{me.TLS}}}, "tls.peer_ca_file is not set"},
		{"plaintext", Config{Token: "s3cret"}, "the workers run without TLS"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newForwarder(tt.cfg)
			t.Cleanup(func() { f.Close() })
			_, err := f.get(ctx, "worker-1", "worker-9", "10.1.2.3:6066", req)
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), `worker "worker-9" at 10.1.2.3:6066`) ||
				!strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want FailedPrecondition naming the peer and %q", err, tt.want)
			}
			if len(f.conns) != 0 {
				t.Errorf("the forwarder opened %d connections, want none", len(f.conns))
			}
		})
	}
}

// TestPprofBehindToken: without monitor.pprof no profile is served; with
// it, only to the token.
func TestPprofBehindToken(t *testing.T) {
	state := func() app.State { return app.StateRunning }
	get := func(h http.Handler, auth string) int {
		r := httptest.NewRequest("GET", "/debug/pprof/", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	off := HTTPHandler(state, prometheus.NewRegistry(), HTTPOptions{Token: "s3cret"})
	if got := get(off, "Bearer s3cret"); got != http.StatusNotFound {
		t.Errorf("pprof off: got %d, want 404", got)
	}
	on := HTTPHandler(state, prometheus.NewRegistry(), HTTPOptions{Pprof: true, Token: "s3cret"})
	for auth, want := range map[string]int{"": 401, "Bearer guess": 401, "s3cret": 401, "Bearer s3cret": 200} {
		if got := get(on, auth); got != want {
			t.Errorf("pprof on, authorization %q: got %d, want %d", auth, got, want)
		}
	}
	r := httptest.NewRequest("GET", "/healthz", nil)
	w := httptest.NewRecorder()
	on.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Errorf("/healthz without a token: got %d, want 200", w.Code)
	}
}

// TestLimitListener: a connection past the limit is closed at once; once
// one closes there is room again.
func TestLimitListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := LimitListener(raw, 1, "test", slog.New(slog.DiscardHandler))
	t.Cleanup(func() { lis.Close() })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	first := <-accepted
	second := dial()
	_ = second.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := second.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("read on the connection past the limit: got %v, want it closed by the server", err)
	}
	first.Close()
	dial()
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted after the first closed")
	}
}
