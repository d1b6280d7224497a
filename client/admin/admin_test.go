package admin_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/eddy-streams/eddy/client/admin"
	"github.com/eddy-streams/eddy/client/admin/admintest"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

const testToken = "s3cret"

func testStatus() *eddyv1.GetStatusResponse {
	return &eddyv1.GetStatusResponse{
		State:    eddyv1.WorkerState_WORKER_STATE_RUNNING,
		App:      "orders",
		WorkerId: "w-1",
		Agents: []*eddyv1.AgentSummary{
			{Name: "enricher", Instances: 2, Partitions: 4},
			{Name: "mailer", Instances: 1, Partitions: 4},
		},
	}
}

// dial connects to addr and closes the client when the test ends.
func dial(t *testing.T, addr string, opts ...admin.Option) *admin.Client {
	t.Helper()
	c, err := admin.Dial(t.Context(), addr, opts...)
	if err != nil {
		t.Fatalf("Dial(%q): %v", addr, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// callCtx bounds one call so a broken test fails instead of hanging.
func callCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStatus(t *testing.T) {
	w := admintest.Start(t, testToken, testStatus())
	c := dial(t, w.Addr) // no token: GetStatus is read-only

	got, err := c.Status(callCtx(t))
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if got.GetApp() != "orders" || got.GetState() != eddyv1.WorkerState_WORKER_STATE_RUNNING {
		t.Errorf("Status = app %q state %v, want app %q state %v", got.GetApp(), got.GetState(), "orders", eddyv1.WorkerState_WORKER_STATE_RUNNING)
	}
}

func TestMutatingCalls(t *testing.T) {
	tests := []struct {
		name string
		call func(context.Context, *admin.Client) error
		want admintest.Call
	}{
		{
			name: "pause one agent",
			call: func(ctx context.Context, c *admin.Client) error { _, err := c.Pause(ctx, "enricher"); return err },
			want: admintest.Call{Method: "Pause", Agent: "enricher"},
		},
		{
			name: "pause all agents",
			call: func(ctx context.Context, c *admin.Client) error { _, err := c.Pause(ctx, ""); return err },
			want: admintest.Call{Method: "Pause"},
		},
		{
			name: "resume one agent",
			call: func(ctx context.Context, c *admin.Client) error { _, err := c.Resume(ctx, "mailer"); return err },
			want: admintest.Call{Method: "Resume", Agent: "mailer"},
		},
		{
			name: "shutdown",
			call: func(ctx context.Context, c *admin.Client) error { _, err := c.Shutdown(ctx, "deploy"); return err },
			want: admintest.Call{Method: "Shutdown", Reason: "deploy"},
		},
		{
			name: "raw lifecycle client",
			call: func(ctx context.Context, c *admin.Client) error {
				_, err := c.Lifecycle().Pause(ctx, &eddyv1.PauseRequest{Agent: "mailer"})
				return err
			},
			want: admintest.Call{Method: "Pause", Agent: "mailer"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := admintest.Start(t, testToken, testStatus())
			c := dial(t, w.Addr, admin.WithToken(testToken))
			if err := tt.call(callCtx(t), c); err != nil {
				t.Fatalf("call: %v", err)
			}
			tt.want.Authorization = "Bearer " + testToken
			calls := w.Calls()
			if len(calls) != 1 || calls[0] != tt.want {
				t.Errorf("calls = %+v, want [%+v]", calls, tt.want)
			}
		})
	}
}

func TestPauseUpdatesState(t *testing.T) {
	w := admintest.Start(t, "", testStatus())
	c := dial(t, w.Addr)

	resp, err := c.Pause(callCtx(t), "")
	if err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if got, want := resp.GetState(), eddyv1.WorkerState_WORKER_STATE_PAUSED; got != want {
		t.Errorf("state = %v, want %v", got, want)
	}
	if got, want := strings.Join(resp.GetPausedAgents(), ","), "enricher,mailer"; got != want {
		t.Errorf("paused agents = %v, want %v", got, want)
	}
}

func TestErrorClassification(t *testing.T) {
	w := admintest.Start(t, testToken, testStatus())
	down := admintest.RefusedAddr(t)
	silent := admintest.SilentAddr(t)

	tests := []struct {
		name    string
		addr    string
		opts    []admin.Option
		call    func(context.Context, *admin.Client) error
		wantIs  []error
		wantNot error
		wantMsg string
		timeout time.Duration // call deadline, when shorter than callCtx's
	}{
		{
			name:    "connection refused",
			addr:    down,
			call:    func(ctx context.Context, c *admin.Client) error { _, err := c.Status(ctx); return err },
			wantIs:  []error{admin.ErrUnreachable, syscall.ECONNREFUSED},
			wantNot: admin.ErrUnauthenticated,
			wantMsg: "cannot reach worker at " + down + ": connection refused",
		},
		{
			name: "connection refused on a raw client",
			addr: down,
			call: func(ctx context.Context, c *admin.Client) error {
				_, err := c.Tables().ListTables(ctx, &eddyv1.ListTablesRequest{})
				return err
			},
			wantIs:  []error{admin.ErrUnreachable},
			wantMsg: "cannot reach worker at " + down,
		},
		{
			name:    "no gRPC server answering before the deadline",
			addr:    silent,
			timeout: 200 * time.Millisecond,
			call:    func(ctx context.Context, c *admin.Client) error { _, err := c.Status(ctx); return err },
			wantIs:  []error{admin.ErrUnreachable, context.DeadlineExceeded},
			wantMsg: "cannot reach worker at " + silent + ": no connection before the deadline",
		},
		{
			name: "connection refused on a stream",
			addr: down,
			call: func(ctx context.Context, c *admin.Client) error {
				stream, err := c.Monitor().Watch(ctx, &eddyv1.WatchRequest{})
				if err != nil {
					return err
				}
				_, err = stream.Recv()
				return err
			},
			wantIs:  []error{admin.ErrUnreachable},
			wantMsg: "cannot reach worker at " + down,
		},
		{
			name:    "wrong token",
			addr:    w.Addr,
			opts:    []admin.Option{admin.WithToken("wrong")},
			call:    func(ctx context.Context, c *admin.Client) error { _, err := c.Shutdown(ctx, ""); return err },
			wantIs:  []error{admin.ErrUnauthenticated},
			wantNot: admin.ErrUnreachable,
			wantMsg: "shutdown: the worker rejected the token",
		},
		{
			name:    "missing token",
			addr:    w.Addr,
			call:    func(ctx context.Context, c *admin.Client) error { _, err := c.Resume(ctx, "mailer"); return err },
			wantIs:  []error{admin.ErrUnauthenticated},
			wantMsg: "the worker requires a token and none was given",
		},
		{
			name:    "other errors keep their status",
			addr:    w.Addr,
			opts:    []admin.Option{admin.WithToken(testToken)},
			call:    func(ctx context.Context, c *admin.Client) error { _, err := c.Pause(ctx, "nosuch"); return err },
			wantNot: admin.ErrUnreachable,
			wantMsg: `pause agent "nosuch": unknown agent "nosuch" (NotFound)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, tt.addr, tt.opts...)
			ctx := callCtx(t)
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				t.Cleanup(cancel)
			}
			err := tt.call(ctx, c)
			if err == nil {
				t.Fatal("call succeeded, want an error")
			}
			for _, target := range tt.wantIs {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = false, want true", err, target)
				}
			}
			if tt.wantNot != nil && errors.Is(err, tt.wantNot) {
				t.Errorf("errors.Is(%v, %v) = true, want false", err, tt.wantNot)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestStatusCodeSurvivesClassification(t *testing.T) {
	w := admintest.Start(t, testToken, testStatus())
	tests := []struct {
		name  string
		opts  []admin.Option
		agent string
		want  codes.Code
	}{
		{name: "unauthenticated", agent: "enricher", want: codes.Unauthenticated},
		{name: "not found", opts: []admin.Option{admin.WithToken(testToken)}, agent: "nosuch", want: codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, w.Addr, tt.opts...)
			_, err := c.Pause(callCtx(t), tt.agent)
			if got := status.Code(err); got != tt.want {
				t.Errorf("status.Code(%v): got %v, want %v", err, got, tt.want)
			}
		})
	}
}

// TestWorkerUnavailableIsNotUnreachable: a worker that answers Unavailable
// itself (starting, stopping) was reached; its error keeps its status.
func TestWorkerUnavailableIsNotUnreachable(t *testing.T) {
	st := testStatus()
	st.State = eddyv1.WorkerState_WORKER_STATE_STARTING
	w := admintest.Start(t, testToken, st)
	c := dial(t, w.Addr, admin.WithToken(testToken))
	_, err := c.Pause(callCtx(t), "")
	if errors.Is(err, admin.ErrUnreachable) {
		t.Errorf("errors.Is(%v, ErrUnreachable): got true, want false", err)
	}
	if got := status.Code(err); got != codes.Unavailable {
		t.Errorf("status.Code(%v): got %v, want %v", err, got, codes.Unavailable)
	}
	if want := "pause all agents: the worker is not running: state is STARTING (Unavailable)"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

func TestDialRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		addr string
		opts []admin.Option
		want string
	}{
		{name: "no port", addr: "localhost", want: "missing port in address; want host:port"},
		{name: "empty port", addr: "localhost:", want: "missing port"},
		{name: "scheme", addr: "dns:///localhost:6066", want: "without a scheme"},
		{name: "zero dial timeout", addr: "127.0.0.1:6066", opts: []admin.Option{admin.WithDialTimeout(0)}, want: "WithDialTimeout"},
		{name: "token with newline", addr: "127.0.0.1:6066", opts: []admin.Option{admin.WithToken("abc\n")}, want: "WithToken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := admin.Dial(t.Context(), tt.addr, tt.opts...)
			if err == nil {
				c.Close()
				t.Fatalf("Dial(%q) succeeded, want an error", tt.addr)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	c, err := admin.Dial(t.Context(), "127.0.0.1:6066")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	for i := range 2 {
		if err := c.Close(); err != nil {
			t.Errorf("Close #%d: got %v, want nil", i+1, err)
		}
	}
}

// hungWorker answers GetStatus only when the caller gives up.
type hungWorker struct {
	eddyv1.UnimplementedLifecycleServiceServer
}

func (hungWorker) GetStatus(ctx context.Context, _ *eddyv1.GetStatusRequest) (*eddyv1.GetStatusResponse, error) {
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

func TestSlowWorkerIsNotUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := grpc.NewServer()
	eddyv1.RegisterLifecycleServiceServer(srv, hungWorker{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	c := dial(t, lis.Addr().String())
	// Bring the connection up first, so a slow machine cannot turn this into
	// a connect timeout. Pause is not implemented by hungWorker: it answers.
	if _, err := c.Pause(callCtx(t), ""); status.Code(err) != codes.Unimplemented {
		t.Fatalf("Pause: got %v, want code %v", err, codes.Unimplemented)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err = c.Status(ctx)
	if errors.Is(err, admin.ErrUnreachable) {
		t.Errorf("errors.Is(%v, ErrUnreachable): got true, want false", err)
	}
	// The server may hit the propagated deadline first, so the error need not
	// wrap context.DeadlineExceeded; the code is DeadlineExceeded either way.
	if got, want := status.Code(err), codes.DeadlineExceeded; got != want {
		t.Errorf("status.Code(%v): got %v, want %v", err, got, want)
	}
}
