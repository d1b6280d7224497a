// Package server holds the gRPC services and the HTTP endpoints of a worker.
// Handlers are thin adapters: validate the request, call the runtime through
// a narrow interface, map the error (errors.go). Nothing here knows Kafka.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/app"
	"github.com/eddy-streams/eddy/worker/monitor"
	"github.com/eddy-streams/eddy/worker/tables/live"
)

// Limits applied to every gRPC connection.
const (
	// MaxRecvMsgBytes is the largest request message accepted (4 MiB, the
	// gRPC default, set explicitly). Agents batch results below it.
	MaxRecvMsgBytes = 4 << 20
	// MaxSendMsgBytes is the largest response message sent.
	MaxSendMsgBytes = 4 << 20
	// MaxConcurrentStreams is the default of Config.MaxStreamsPerConnection.
	MaxConcurrentStreams = 256
)

// Defaults of the Config limits left zero (docs/configuration.md).
const (
	defaultMaxConnectionIdle   = 5 * time.Minute
	defaultHelloTimeout        = 10 * time.Second
	defaultMaxPendingHello     = 128
	defaultMaxPendingPerClient = 32
	defaultMaxStreamsPerClient = 256
)

// Core is what the services need from the worker runtime; *app.App
// implements it. Methods must be safe for concurrent use.
type Core interface {
	Status() app.Status
	Pause(agent string) (app.State, []string, error)
	Resume(agent string) (app.State, []string, error)
	Shutdown(reason string) time.Time
	Members(ctx context.Context, refresh bool) ([]app.Member, error)
	AgentInfos() []app.AgentInfo
	TableInfos(ctx context.Context) ([]app.TableInfo, error)
	TableGet(ctx context.Context, table string, key []byte, windowStart *time.Time) (live.Value, error)
	TableScan(ctx context.Context, table string, prefix []byte, limit int, token string, only []int32) (live.Page, error)
	TablePartitions(table string) (int32, error)
	TableWindowed(table string) bool
	TableOwners(ctx context.Context, table string, parts []int32, refresh bool) ([]live.Owner, error)
	Send(ctx context.Context, rec app.SendRecord) (app.SendResult, error)
	Topics() []app.TopicInfo
	OpenAgentSession(agents.Hello) (*agents.Session, agents.Welcome, error)
	State() app.State
	Snapshot() monitor.Snapshot
	WatchDropped()
}

// Config configures the gRPC server.
type Config struct {
	// Token, when set, is required as "authorization: Bearer <token>" on
	// mutating calls (Pause, Resume, Shutdown) and from agents. Default: none.
	Token string
	// ProtectReads requires the token on read-only calls too (GetStatus,
	// ListAgents, tables, monitor). Health and reflection stay open for
	// probes and grpcurl. Default: false.
	ProtectReads bool
	// TLS enables TLS when set; with ClientAuth
	// tls.RequireAndVerifyClientCert (mutual TLS) an agent instance id is
	// bound to the client-certificate identity of its session.
	// Default: plaintext.
	TLS *tls.Config
	// PeerCAs verify the other workers' certificates when reads are
	// forwarded to them over TLS (tls.peer_ca_file); TLS.Certificates are
	// presented to them as client certificates. A forwarded read carries
	// Token only to a verified peer: over TLS verified by PeerCAs, with the
	// certificate naming the host dialled, or at a loopback address.
	// Default: none: peers are verified against the system roots and
	// receive no token unless on loopback.
	PeerCAs *x509.CertPool
	// Logger receives request logs and recovered panics. Required.
	Logger *slog.Logger
	// AgentSendTimeout bounds one message's send to an agent on its
	// Connect stream. An agent that stops reading fills the stream's flow
	// control window; past this its session ends (RESOURCE_EXHAUSTED) and
	// its work goes to other instances. Default: 30s.
	AgentSendTimeout time.Duration
	// MaxConnectionIdle closes a connection without calls or streams for
	// this long. Default: 5m.
	MaxConnectionIdle time.Duration
	// MaxStreamsPerConnection bounds the concurrent streams of one
	// connection. Default: MaxConcurrentStreams.
	MaxStreamsPerConnection int
	// HelloTimeout bounds the wait for a Connect stream's Hello.
	// Default: 10s.
	HelloTimeout time.Duration
	// MaxPendingHello bounds the Connect streams waiting for their Hello,
	// over all clients. Default: 128.
	MaxPendingHello int
	// MaxPendingHelloPerClient bounds the Connect streams of one client
	// (as MaxStreamsPerClient counts them) waiting for their Hello, so one
	// client's silent streams leave room under MaxPendingHello for the
	// others. Default: 32.
	MaxPendingHelloPerClient int
	// MaxStreamsPerClient bounds the Connect streams of one client (its
	// certificate identity under mutual TLS, else its IP address).
	// Default: 256.
	MaxStreamsPerClient int
}

// orDefault returns v, or def when v is not positive.
func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Server is the worker's gRPC server with what it owns besides: the health
// service, and the connections to the other workers that forwarded table
// reads use.
type Server struct {
	// GRPC serves every service; the caller runs Serve and stops it.
	GRPC *grpc.Server
	// Health is the health service, to flip with SetServing.
	Health *health.Server

	fwd    *forwarder
	gate   *helloGate
	tables *tableServer // the dashboard's look-ups
	cfg    Config
}

// Close closes the connections to other workers. Call it once GRPC has
// stopped: a read forwarded after it fails with UNAVAILABLE. Idempotent
// and safe for concurrent use.
func (s *Server) Close() error { return s.fwd.Close() }

// New builds the gRPC server with every eddy.v1 service, grpc.health.v1 and
// server reflection registered. Interceptor order: logging → auth (via
// selector, health and reflection exempt) → panic recovery. Close the
// returned Server after stopping its GRPC server.
func New(cfg Config, core Core) *Server {
	log := cfg.Logger
	logOpts := []logging.Option{logging.WithLevels(levelFor)}
	recoveryOpt := recovery.WithRecoveryHandler(func(p any) error { return recovered(log, p) })
	authFn := tokenAuth(cfg.Token)
	needsAuth := authMatcher(cfg.Token != "", cfg.ProtectReads)

	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(
			logging.UnaryServerInterceptor(slogAdapter(log), logOpts...),
			selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(authFn), needsAuth),
			recovery.UnaryServerInterceptor(recoveryOpt),
		),
		grpc.ChainStreamInterceptor(
			logging.StreamServerInterceptor(slogAdapter(log), logOpts...),
			selector.StreamServerInterceptor(auth.StreamServerInterceptor(authFn), needsAuth),
			recovery.StreamServerInterceptor(recoveryOpt),
		),
		grpc.MaxRecvMsgSize(MaxRecvMsgBytes),
		grpc.MaxSendMsgSize(MaxSendMsgBytes),
		grpc.MaxConcurrentStreams(uint32(orDefault(cfg.MaxStreamsPerConnection, MaxConcurrentStreams))),
		// Agents keep long-lived streams: ping idle connections so dead
		// peers are noticed, close connections left without calls, and
		// refuse clients that ping abusively.
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time: 30 * time.Second, Timeout: 10 * time.Second,
			MaxConnectionIdle: orDefault(cfg.MaxConnectionIdle, defaultMaxConnectionIdle),
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	s := grpc.NewServer(opts...)
	eddyv1.RegisterLifecycleServiceServer(s, &lifecycleServer{core: core, log: log})
	gate := newHelloGate(cfg)
	eddyv1.RegisterAgentServiceServer(s, &agentServer{core: core, log: log, token: cfg.Token, sendTimeout: cfg.AgentSendTimeout, gate: gate})
	fwd := newForwarder(cfg)
	ts := newTableServer(core, log, fwd)
	eddyv1.RegisterTableServiceServer(s, ts)
	eddyv1.RegisterMonitorServiceServer(s, &monitorServer{core: core, log: log})
	eddyv1.RegisterTopicServiceServer(s, &topicServer{core: core, log: log})
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	reflection.Register(s)
	SetServing(h, false)
	return &Server{GRPC: s, Health: h, fwd: fwd, gate: gate, tables: ts, cfg: cfg}
}

// Services are the names health reports on, besides the empty name that
// stands for the whole worker.
var Services = []string{
	eddyv1.LifecycleService_ServiceDesc.ServiceName,
	eddyv1.AgentService_ServiceDesc.ServiceName,
	eddyv1.TableService_ServiceDesc.ServiceName,
	eddyv1.MonitorService_ServiceDesc.ServiceName,
	eddyv1.TopicService_ServiceDesc.ServiceName,
}

// SetServing sets every health entry to SERVING or NOT_SERVING.
func SetServing(h *health.Server, serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	h.SetServingStatus("", st)
	for _, s := range Services {
		h.SetServingStatus(s, st)
	}
}
