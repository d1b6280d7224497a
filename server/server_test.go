package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/app"
	"github.com/eddy-streams/eddy/worker/monitor"
)

// fakeCore is a worker runtime for the adapters; panicOnStatus makes
// GetStatus panic to exercise recovery.
type fakeCore struct {
	fakeTables
	panicOnStatus bool
	paused        []string
	members       []app.Member
	dropped       atomic.Uint64
}

func (f *fakeCore) Status() app.Status {
	if f.panicOnStatus {
		panic("boom: secret internals")
	}
	return app.Status{State: app.StateRunning, App: "demo", WorkerID: f.workerID, LastRestores: []app.LastRestore{
		{Table: "counts", Partition: 1, Full: true, Reason: "no local state", To: 50, Records: 50, Duration: time.Second,
			FinishedAt: time.Unix(1700000000, 0)},
		{Table: "counts", Partition: 3, From: 100, To: 1000, Records: 900, Duration: 2 * time.Second,
			FinishedAt: time.Unix(1700000001, 0), Err: "no leader"},
	}}
}

// TestStatusLastRestores: GetStatus carries the last restore of each table
// partition, every field converted.
func TestStatusLastRestores(t *testing.T) {
	conn := serve(t, Config{}, &fakeCore{})
	st, err := eddyv1.NewLifecycleServiceClient(conn).GetStatus(context.Background(), &eddyv1.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := []*eddyv1.LastRestore{
		{Table: "counts", Partition: 1, Full: true, Reason: "no local state", ToOffset: 50, Records: 50,
			Duration: durationpb.New(time.Second), FinishedAt: timestamppb.New(time.Unix(1700000000, 0))},
		{Table: "counts", Partition: 3, FromOffset: 100, ToOffset: 1000, Records: 900,
			Duration: durationpb.New(2 * time.Second), FinishedAt: timestamppb.New(time.Unix(1700000001, 0)), Error: "no leader"},
	}
	got := st.GetLastRestores()
	if len(got) != len(want) {
		t.Fatalf("last_restores: got %v, want %v", got, want)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("last_restores[%d]: got %v, want %v", i, got[i], want[i])
		}
	}
}

// TestListWorkers: ListWorkers answers with the group's members and their
// advertised addresses, and the answering worker's id; before the worker
// runs it fails with Unavailable, so an SDK falls back to its seeds.
func TestListWorkers(t *testing.T) {
	core := &fakeCore{fakeTables: fakeTables{workerID: "w1"}}
	conn := serve(t, Config{}, core)
	lc := eddyv1.NewLifecycleServiceClient(conn)
	if _, err := lc.ListWorkers(context.Background(), &eddyv1.ListWorkersRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("not running: got %v, want Unavailable", err)
	}
	core.members = []app.Member{
		{WorkerID: "w1", Addr: "10.0.0.1:6066", Assigned: []app.TopicPartition{{Topic: "lines", Partition: 0}}},
		{WorkerID: "w2", Addr: "10.0.0.2:6066"},
	}
	resp, err := lc.ListWorkers(context.Background(), &eddyv1.ListWorkersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &eddyv1.ListWorkersResponse{WorkerId: "w1", Workers: []*eddyv1.WorkerInfo{
		{WorkerId: "w1", GrpcAddress: "10.0.0.1:6066", Assigned: []*eddyv1.TopicPartition{{Topic: "lines", Partition: 0}}},
		{WorkerId: "w2", GrpcAddress: "10.0.0.2:6066"},
	}}
	if !proto.Equal(resp, want) {
		t.Errorf("got %v, want %v", resp, want)
	}
}

func (f *fakeCore) Pause(agent string) (app.State, []string, error) {
	if agent == "nosuch" {
		return app.StateRunning, nil, &agents.UnknownAgentError{Name: agent, Declared: []string{"count"}}
	}
	f.paused = append(f.paused, agent)
	return app.StatePaused, f.paused, nil
}

func (f *fakeCore) Resume(string) (app.State, []string, error) { return app.StateRunning, nil, nil }
func (f *fakeCore) Shutdown(string) time.Time                  { return time.Now() }
func (f *fakeCore) AgentInfos() []app.AgentInfo                { return nil }
func (f *fakeCore) Members(context.Context, bool) ([]app.Member, error) {
	if f.members == nil {
		return nil, fmt.Errorf("%w: state is STARTING", app.ErrNotRunning)
	}
	return f.members, nil
}
func (f *fakeCore) State() app.State { return app.StateRunning }
func (f *fakeCore) Snapshot() monitor.Snapshot {
	// Large snapshots, so a reader that stops fills the stream's flow
	// control window quickly.
	snap := monitor.Snapshot{TakenAt: time.Now()}
	for i := range 2000 {
		snap.Partitions = append(snap.Partitions, monitor.PartitionSnapshot{Agent: "count", Topic: "lines", Partition: int32(i)})
	}
	return snap
}
func (f *fakeCore) WatchDropped() { f.dropped.Add(1) }
func (f *fakeCore) OpenAgentSession(h agents.Hello) (*agents.Session, agents.Welcome, error) {
	if h.App != "" && h.App != "demo" {
		return nil, agents.Welcome{}, &agents.AppMismatchError{Hello: h.App, Worker: "demo"}
	}
	return nil, agents.Welcome{}, &agents.UnknownAgentError{Name: h.Agent, Declared: []string{"count"}}
}

func serve(t *testing.T, cfg Config, core Core) *grpc.ClientConn {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	srv := New(cfg, core)
	s := srv.GRPC
	SetServing(srv.Health, true)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(func() {
		s.Stop()
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func withToken(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

func TestAuth(t *testing.T) {
	tests := []struct {
		name         string
		protectReads bool
		token        string // sent by the client; "" sends none
		call         string
		want         codes.Code
	}{
		{"pause without token", false, "", "pause", codes.Unauthenticated},
		{"pause with wrong token", false, "nope", "pause", codes.Unauthenticated},
		{"pause with token", false, "s3cret", "pause", codes.OK},
		{"shutdown without token", false, "", "shutdown", codes.Unauthenticated},
		{"status without token", false, "", "status", codes.OK},
		{"status without token, reads protected", true, "", "status", codes.Unauthenticated},
		{"status with token, reads protected", true, "s3cret", "status", codes.OK},
		{"health without token, reads protected", true, "", "health", codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := serve(t, Config{Token: "s3cret", ProtectReads: tt.protectReads}, &fakeCore{})
			ctx := context.Background()
			if tt.token != "" {
				ctx = withToken(ctx, tt.token)
			}
			var err error
			lc := eddyv1.NewLifecycleServiceClient(conn)
			switch tt.call {
			case "pause":
				_, err = lc.Pause(ctx, &eddyv1.PauseRequest{})
			case "shutdown":
				_, err = lc.Shutdown(ctx, &eddyv1.ShutdownRequest{})
			case "status":
				_, err = lc.GetStatus(ctx, &eddyv1.GetStatusRequest{})
			case "health":
				_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			}
			if got := status.Code(err); got != tt.want {
				t.Errorf("got %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

func TestPanicBecomesInternal(t *testing.T) {
	conn := serve(t, Config{}, &fakeCore{panicOnStatus: true})
	_, err := eddyv1.NewLifecycleServiceClient(conn).GetStatus(context.Background(), &eddyv1.GetStatusRequest{})
	if got := status.Code(err); got != codes.Internal {
		t.Fatalf("got %v, want Internal", got)
	}
	if msg := status.Convert(err).Message(); strings.Contains(msg, "secret") || strings.Contains(msg, "goroutine") {
		t.Errorf("the caller saw internals: %q", msg)
	}
}

func TestErrorMapping(t *testing.T) {
	conn := serve(t, Config{}, &fakeCore{})
	_, err := eddyv1.NewLifecycleServiceClient(conn).Pause(context.Background(), &eddyv1.PauseRequest{Agent: "nosuch"})
	if got := status.Code(err); got != codes.NotFound || !strings.Contains(err.Error(), `unknown agent "nosuch"`) {
		t.Errorf("got %v, want NotFound naming the agent", err)
	}
	_, err = eddyv1.NewTableServiceClient(conn).Get(context.Background(), &eddyv1.GetRequest{Table: "t", Key: []byte("k")})
	if got := status.Code(err); got != codes.NotFound || !strings.Contains(err.Error(), `unknown table "t"`) {
		t.Errorf("got %v, want NotFound naming the table", err)
	}
}

func TestConnectRejects(t *testing.T) {
	tests := []struct {
		name  string
		token string
		first *eddyv1.ConnectRequest
		want  codes.Code
		msg   string
		// reason is the google.rpc.ErrorInfo reason the status must carry.
		reason string
	}{
		{"credit first", "s3cret", &eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Credit{Credit: &eddyv1.Credit{Events: 1}}},
			codes.InvalidArgument, "first message", ""},
		{"no token", "", &eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Hello{Hello: &eddyv1.Hello{Agent: "x"}}},
			codes.Unauthenticated, "missing token", ""},
		{"bad token", "", &eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Hello{Hello: &eddyv1.Hello{Agent: "x", Token: "nope"}}},
			codes.Unauthenticated, "bad token", ""},
		{"unknown agent", "s3cret", &eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Hello{Hello: &eddyv1.Hello{Agent: "x"}}},
			codes.NotFound, `unknown agent "x"`, ""},
		{"another app", "s3cret", &eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Hello{Hello: &eddyv1.Hello{App: "billing", Agent: "count"}}},
			codes.FailedPrecondition, `hello.app "billing" does not match this worker's app "demo"`, "APP_MISMATCH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := serve(t, Config{Token: "s3cret"}, &fakeCore{})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if tt.token != "" {
				ctx = withToken(ctx, tt.token)
			}
			stream, err := eddyv1.NewAgentServiceClient(conn).Connect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(tt.first); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			if got := status.Code(err); got != tt.want || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, want %v containing %q", err, tt.want, tt.msg)
			}
			if tt.reason != "" {
				var reasons []string
				for _, d := range status.Convert(err).Details() {
					if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == "eddy.v1" {
						reasons = append(reasons, info.GetReason())
					}
				}
				if !slices.Contains(reasons, tt.reason) {
					t.Errorf("ErrorInfo reasons: got %v, want %q", reasons, tt.reason)
				}
			}
		})
	}
}

func TestWatch(t *testing.T) {
	core := &fakeCore{}
	conn := serve(t, Config{}, core)
	mc := eddyv1.NewMonitorServiceClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	_, err := mc.Watch(ctx, &eddyv1.WatchRequest{Interval: durationpb.New(time.Millisecond)})
	if err == nil {
		var stream grpc.ServerStreamingClient[eddyv1.WatchResponse]
		stream, _ = mc.Watch(ctx, &eddyv1.WatchRequest{Interval: durationpb.New(time.Millisecond)})
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("interval 1ms: got %v, want InvalidArgument", err)
	}

	stream, err := mc.Watch(ctx, &eddyv1.WatchRequest{Interval: durationpb.New(100 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	var times []time.Time
	for range 3 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetSnapshot().GetState() != eddyv1.WorkerState_WORKER_STATE_RUNNING {
			t.Errorf("snapshot state: got %v", resp.GetSnapshot().GetState())
		}
		times = append(times, time.Now())
	}
	// Two intervals separate the first and the third; the first may have
	// been received late (a loaded machine), so more than one interval is
	// what pacing guarantees.
	if gap := times[2].Sub(times[0]); gap < 100*time.Millisecond {
		t.Errorf("3 snapshots within %s, want them about 100ms apart", gap)
	}
	// A watcher that stops reading: snapshots are dropped and counted,
	// the server does not block; cancelling ends the stream.
	waitUntil(t, 5*time.Second, func() bool { return core.dropped.Load() >= 3 })
	cancel()
	for {
		if _, err := stream.Recv(); err != nil {
			if status.Code(err) != codes.Canceled {
				t.Errorf("after cancel: got %v, want Canceled", err)
			}
			break
		}
	}
}

func waitUntil(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
