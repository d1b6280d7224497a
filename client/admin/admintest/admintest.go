// Package admintest runs a fake eddy worker control plane in-process, for
// testing code built on package admin (workerctl, for one). It serves the
// eddy.v1 LifecycleService on a loopback port, answers GetStatus with a
// status the test chooses, applies Pause and Resume to it, records every call
// and, like a real worker, requires the bearer token on mutating calls when a
// token is set.
package admintest

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// Call is one call received by a Worker.
type Call struct {
	// Method is the RPC name: "GetStatus", "ListWorkers", "Pause", "Resume"
	// or "Shutdown".
	Method string
	// Agent is the request's agent for Pause and Resume.
	Agent string
	// Reason is the request's reason for Shutdown.
	Reason string
	// Authorization is the "authorization" metadata value received, if any.
	Authorization string
}

// Worker is a fake worker control plane. Its methods are safe for concurrent
// use, including while calls are being served.
type Worker struct {
	eddyv1.UnsafeLifecycleServiceServer

	// Addr is the host:port the fake listens on, on 127.0.0.1.
	Addr string

	token string

	mu      sync.Mutex
	status  *eddyv1.GetStatusResponse
	workers []*eddyv1.WorkerInfo
	calls   []Call
}

// Start serves a fake worker on 127.0.0.1 on a free port until the test ends.
// GetStatus answers with a copy of status (an empty status if nil). In the
// states STARTING, STOPPING and STOPPED, Pause and Resume fail as a worker's
// do: codes.Unavailable with the google.rpc.ErrorInfo reason NOT_RUNNING
// (domain "eddy.v1"). When
// token is not empty, Pause, Resume and Shutdown fail with
// codes.Unauthenticated unless the call carries "authorization: Bearer
// <token>"; GetStatus never needs it.
func Start(t testing.TB, token string, status *eddyv1.GetStatusResponse) *Worker {
	t.Helper()
	return StartTLS(t, token, status, nil)
}

// StartTLS is Start serving TLS with cfg (plaintext when nil), as a worker
// with tls.cert_file and, for client certificates, tls.client_ca_file does.
func StartTLS(t testing.TB, token string, status *eddyv1.GetStatusResponse, cfg *tls.Config) *Worker {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("admintest: listen: %v", err)
	}
	if status == nil {
		status = &eddyv1.GetStatusResponse{}
	}
	w := &Worker{
		Addr:   lis.Addr().String(),
		token:  token,
		status: proto.CloneOf(status),
	}
	var opts []grpc.ServerOption
	if cfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	srv := grpc.NewServer(opts...)
	eddyv1.RegisterLifecycleServiceServer(srv, w)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("admintest: serve: %v", err)
		}
	})
	return w
}

// Calls returns the calls received so far, oldest first.
func (w *Worker) Calls() []Call {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.calls)
}

// Status returns a copy of the status GetStatus currently answers with,
// including the effect of Pause and Resume calls.
func (w *Worker) Status() *eddyv1.GetStatusResponse {
	w.mu.Lock()
	defer w.mu.Unlock()
	return proto.CloneOf(w.status)
}

// GetStatus implements eddyv1.LifecycleServiceServer.
func (w *Worker) GetStatus(ctx context.Context, _ *eddyv1.GetStatusRequest) (*eddyv1.GetStatusResponse, error) {
	w.record(ctx, Call{Method: "GetStatus"})
	return w.Status(), nil
}

// Pause implements eddyv1.LifecycleServiceServer: it adds the agent (every
// agent of the status when empty) to the paused agents.
func (w *Worker) Pause(ctx context.Context, req *eddyv1.PauseRequest) (*eddyv1.PauseResponse, error) {
	if err := w.authorize(ctx, Call{Method: "Pause", Agent: req.GetAgent()}); err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.setPaused(req.GetAgent(), true); err != nil {
		return nil, err
	}
	return &eddyv1.PauseResponse{State: w.status.GetState(), PausedAgents: slices.Clone(w.status.GetPausedAgents())}, nil
}

// Resume implements eddyv1.LifecycleServiceServer: it removes the agent
// (every agent when empty) from the paused agents.
func (w *Worker) Resume(ctx context.Context, req *eddyv1.ResumeRequest) (*eddyv1.ResumeResponse, error) {
	if err := w.authorize(ctx, Call{Method: "Resume", Agent: req.GetAgent()}); err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.setPaused(req.GetAgent(), false); err != nil {
		return nil, err
	}
	return &eddyv1.ResumeResponse{State: w.status.GetState(), PausedAgents: slices.Clone(w.status.GetPausedAgents())}, nil
}

// SetWorkers sets the workers ListWorkers answers with (none at first).
func (w *Worker) SetWorkers(workers ...*eddyv1.WorkerInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.workers = workers
}

// ListWorkers implements eddyv1.LifecycleServiceServer: the workers of
// SetWorkers, and the status's worker id as the one that answered.
func (w *Worker) ListWorkers(ctx context.Context, _ *eddyv1.ListWorkersRequest) (*eddyv1.ListWorkersResponse, error) {
	w.record(ctx, Call{Method: "ListWorkers"})
	w.mu.Lock()
	defer w.mu.Unlock()
	resp := &eddyv1.ListWorkersResponse{WorkerId: w.status.GetWorkerId()}
	for _, x := range w.workers {
		resp.Workers = append(resp.Workers, proto.CloneOf(x))
	}
	return resp, nil
}

// Shutdown implements eddyv1.LifecycleServiceServer: it moves the state to
// STOPPING and answers with a deadline 30s ahead. The fake keeps serving.
func (w *Worker) Shutdown(ctx context.Context, req *eddyv1.ShutdownRequest) (*eddyv1.ShutdownResponse, error) {
	if err := w.authorize(ctx, Call{Method: "Shutdown", Reason: req.GetReason()}); err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status.State = eddyv1.WorkerState_WORKER_STATE_STOPPING
	return &eddyv1.ShutdownResponse{Deadline: timestamppb.New(time.Now().Add(30 * time.Second))}, nil
}

// setPaused must be called with w.mu held.
func (w *Worker) setPaused(agent string, paused bool) error {
	switch state := w.status.GetState(); state {
	case eddyv1.WorkerState_WORKER_STATE_STARTING, eddyv1.WorkerState_WORKER_STATE_STOPPING, eddyv1.WorkerState_WORKER_STATE_STOPPED:
		st, err := status.New(codes.Unavailable, "the worker is not running: state is "+strings.TrimPrefix(state.String(), "WORKER_STATE_")).
			WithDetails(&errdetails.ErrorInfo{Domain: "eddy.v1", Reason: "NOT_RUNNING"})
		if err != nil {
			return err
		}
		return st.Err()
	}
	var names []string
	for _, a := range w.status.GetAgents() {
		names = append(names, a.GetName())
	}
	switch {
	case agent == "":
	case slices.Contains(names, agent):
		names = []string{agent}
	default:
		return status.Errorf(codes.NotFound, "unknown agent %q", agent)
	}
	for _, a := range w.status.GetAgents() {
		if slices.Contains(names, a.GetName()) {
			a.Paused = paused
		}
	}
	pausedAgents := w.status.GetPausedAgents()
	for _, name := range names {
		i := slices.Index(pausedAgents, name)
		switch {
		case paused && i < 0:
			pausedAgents = append(pausedAgents, name)
		case !paused && i >= 0:
			pausedAgents = slices.Delete(pausedAgents, i, i+1)
		}
	}
	slices.Sort(pausedAgents)
	w.status.PausedAgents = pausedAgents
	if agent == "" {
		if paused {
			w.status.State = eddyv1.WorkerState_WORKER_STATE_PAUSED
		} else {
			w.status.State = eddyv1.WorkerState_WORKER_STATE_RUNNING
		}
	}
	return nil
}

// record stores call, filling in its Authorization from ctx.
func (w *Worker) record(ctx context.Context, call Call) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			call.Authorization = v[0]
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, call)
	return call.Authorization
}

// authorize records call and checks its token, as a real worker does for
// mutating calls.
func (w *Worker) authorize(ctx context.Context, call Call) error {
	got := w.record(ctx, call)
	switch {
	case w.token == "":
		return nil
	case got == "":
		return status.Error(codes.Unauthenticated, "missing bearer token")
	case got != "Bearer "+w.token:
		return status.Error(codes.Unauthenticated, "invalid bearer token")
	}
	return nil
}

// RefusedAddr returns a loopback address nothing listens on, so connecting
// to it is refused: a worker that is not running.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("admintest: listen: %v", err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatalf("admintest: close listener: %v", err)
	}
	return addr
}

// SilentAddr returns a loopback address that accepts TCP connections until
// the test ends but never answers: a hung worker, or a port that is not a
// worker's.
func SilentAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("admintest: listen: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := lis.Accept()
			if err != nil {
				return // listener closed by Cleanup
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		<-done
	})
	return lis.Addr().String()
}
