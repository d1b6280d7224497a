// Package daemon runs one Eddy worker process: it binds the control plane
// (the gRPC and HTTP listeners of package server), starts the embedded dev
// broker when asked, runs the app (package worker/app, the runtime), and
// shuts all of it down in order within a deadline. It sits above the
// runtime and server so that the runtime imports neither gRPC nor server
// (docs/architecture.md#layers); cmd/worker parses flags, handles signals
// and maps Run's error to the exit status.
package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/eddy-streams/eddy/server"
	"github.com/eddy-streams/eddy/worker/app"
	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/embedded"
)

// ErrShutdownTimeout is returned by Run when graceful shutdown did not finish
// within the configured shutdown_timeout.
var ErrShutdownTimeout = errors.New("graceful shutdown did not finish within shutdown_timeout")

// Options are the process-level settings that are not part of the app file.
type Options struct {
	// Version is reported in status. Default: "dev".
	Version string
	// AddrFile, when set, receives {"grpc": ..., "http": ...} as JSON once
	// both listeners are bound, so scripts and tests can find ports chosen
	// with ":0". Default: none.
	AddrFile string
}

// Daemon is one worker process. Run it once; not for concurrent use
// beyond that.
type Daemon struct {
	cfg     *config.Config
	log     *slog.Logger
	opts    Options
	running atomic.Bool
}

// New returns the process of a validated config.
func New(cfg *config.Config, log *slog.Logger, opts Options) *Daemon {
	if opts.Version == "" {
		opts.Version = "dev"
	}
	return &Daemon{cfg: cfg, log: log, opts: opts}
}

// Run starts the worker and blocks until ctx is cancelled, a Shutdown RPC
// arrives, or a service fails. It returns nil after a clean shutdown.
//
// Start order: gRPC and HTTP listeners (health NOT_SERVING), the embedded
// broker when brokers is "embedded", then the app (which starts its services
// in the order of docs/architecture.md) — health turns SERVING when it is RUNNING.
//
// Shutdown order, bounded by shutdown_timeout:
//  1. health turns NOT_SERVING, state STOPPING;
//  2. the app stops its services in reverse start order (agents, consumer —
//     committing what is done and leaving the group —, producer, flushing);
//  3. the gRPC server stops gracefully (forcibly at the deadline) and closes
//     its connections to other workers (forwarded table reads), then HTTP;
//  4. the embedded broker, if any, closes.
func (w *Daemon) Run(ctx context.Context) (err error) {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("daemon: Run called twice")
	}
	cfg := w.cfg
	log := w.log

	// Certificates first: a bad file fails the start before anything binds.
	tlsCfg, err := loadTLS(cfg.TLS)
	if err != nil {
		return err
	}
	grpcLis, err := net.Listen("tcp", cfg.Listen.GRPC)
	if err != nil {
		return fmt.Errorf("listen.grpc %s: %w", cfg.Listen.GRPC, err)
	}
	httpLis, err := net.Listen("tcp", cfg.Listen.HTTP)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("listen.http %s: %w", cfg.Listen.HTTP, err)
	}
	grpcAddr, httpAddr := grpcLis.Addr().String(), httpLis.Addr().String()
	grpcLis = server.LimitListener(grpcLis, cfg.Limits.MaxConnections, "grpc", log)
	httpLis = server.LimitListener(httpLis, cfg.Limits.MaxConnections, "http", log)
	if tlsCfg.server != nil {
		// The gRPC server does its own handshakes (credentials); HTTP
		// serves the same certificate and client CAs.
		httpLis = tls.NewListener(httpLis, tlsCfg.server)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	brokers := cfg.Brokers
	var broker *embedded.Broker
	if cfg.Embedded() {
		broker, err = embedded.Start(ctx, log, embedded.Options{})
		if err != nil {
			grpcLis.Close()
			httpLis.Close()
			return fmt.Errorf("start embedded broker: %w", err)
		}
		defer broker.Close()
		brokers = broker.Addr()
	}

	a := app.New(cfg, app.Options{
		Logger:    log,
		Version:   w.opts.Version,
		Bootstrap: brokers,
		GRPCAddr:  grpcAddr,
		HTTPAddr:  httpAddr,
		Advertise: cfg.Listen.Advertised(grpcAddr),
		Shutdown: func(reason string) {
			log.Info("shutdown requested", "reason", reason)
			cancel(errShutdownRequested)
		},
	})
	l := cfg.Limits
	srv := server.New(server.Config{
		Token: cfg.Auth.Token, ProtectReads: cfg.Auth.ProtectReads, TLS: tlsCfg.server, PeerCAs: tlsCfg.peerCAs, Logger: log,
		MaxConnectionIdle: l.MaxConnectionIdle.D(), MaxStreamsPerConnection: l.MaxStreamsPerConnection,
		HelloTimeout: l.HelloTimeout.D(), MaxPendingHello: l.MaxPendingHello,
		MaxPendingHelloPerClient: l.MaxPendingHelloPerClient, MaxStreamsPerClient: l.MaxStreamsPerClient,
	}, a)
	gs, health := srv.GRPC, srv.Health
	dash := srv.Dashboard(a)
	hs := &http.Server{
		Handler:           server.HTTPHandler(a.State, a.Metrics(), server.HTTPOptions{Pprof: cfg.Monitor.Pprof, Token: cfg.Auth.Token, Dashboard: dash}),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       l.MaxConnectionIdle.D(),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug), // TLS handshake failures of probes and scanners
	}
	a.OnStateChange(func(s app.State) { server.SetServing(health, s.Serving()) })

	log.Info("control plane listening", "grpc", grpcAddr, "http", httpAddr,
		"advertise", cfg.Listen.Advertised(grpcAddr), "tls", tlsCfg.server != nil, "mtls", cfg.TLS.ClientCAFile != "")
	if w.opts.AddrFile != "" {
		if err := writeAddrFile(w.opts.AddrFile, grpcAddr, httpAddr); err != nil {
			grpcLis.Close()
			httpLis.Close()
			return err
		}
	}

	var g errgroup.Group
	g.Go(func() error {
		if err := gs.Serve(grpcLis); err != nil {
			return fmt.Errorf("grpc server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := hs.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})

	// The dashboard samples for its charts until shutdown begins.
	g.Go(func() error { return dash.Run(ctx) })

	// The app runs until ctx is cancelled; its own stop is bounded below.
	appDone := make(chan error, 1)
	go func() { appDone <- a.Run(ctx) }()

	var appErr error
	appReturned := false
	select {
	case appErr = <-appDone:
		// The app failed (or stopped) on its own.
		appReturned = true
		if appErr != nil {
			log.Error("app failed", "err", appErr)
		}
	case <-ctx.Done():
		log.Info("stopping", "reason", stopReason(ctx), "deadline", cfg.ShutdownTimeout.String())
	}
	deadline := time.NewTimer(cfg.ShutdownTimeout.D())
	defer deadline.Stop()
	cancel(errShutdownRequested)

	timedOut := false
	if !appReturned {
		select {
		case appErr = <-appDone:
		case <-deadline.C:
			timedOut = true
		}
	}
	stopGRPC(gs, deadline.C, &timedOut)
	closeErr := srv.Close() // the connections of forwarded table reads
	hctx, hcancel := context.WithTimeout(context.Background(), time.Second)
	defer hcancel()
	_ = hs.Shutdown(hctx)
	serveErr := g.Wait()

	if timedOut {
		return errors.Join(ErrShutdownTimeout, appErr)
	}
	return errors.Join(appErr, serveErr, closeErr)
}

var errShutdownRequested = errors.New("shutdown requested")

func stopReason(ctx context.Context) string {
	if c := context.Cause(ctx); c != nil {
		return c.Error()
	}
	return "context done"
}

// stopGRPC stops the server gracefully, or forcibly at the deadline: open
// agent streams would otherwise hold GracefulStop forever.
func stopGRPC(gs *grpc.Server, deadline <-chan time.Time, timedOut *bool) {
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-deadline:
		*timedOut = true
		gs.Stop()
		<-done
	case <-time.After(5 * time.Second):
		gs.Stop()
		<-done
	}
}

func writeAddrFile(path, grpcAddr, httpAddr string) error {
	b, _ := json.Marshal(map[string]string{"grpc": grpcAddr, "http": httpAddr})
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write addr file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write addr file: %w", err)
	}
	return nil
}
