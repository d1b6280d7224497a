package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/eddy-streams/eddy/client/agent"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

func TestRoute(t *testing.T) {
	tests := []struct {
		name      string
		value     string
		want      agent.Status
		wantTopic string
		wantKey   string
		wantErr   string
	}{
		{name: "eu", value: `{"id": "o-1", "region": "eu", "amount": 12.5}`, want: agent.StatusOK, wantTopic: "orders-eu", wantKey: "o-1"},
		{name: "us", value: `{"id": "o-2", "region": "us", "amount": 3}`, want: agent.StatusOK, wantTopic: "orders-us", wantKey: "o-2"},
		{name: "unknown region", value: `{"id": "o-3", "region": "mars", "amount": 1}`, want: agent.StatusDeadLetter, wantErr: `order o-3: unknown region "mars", want eu or us`},
		{name: "no region", value: `{"id": "o-4"}`, want: agent.StatusDeadLetter, wantErr: `unknown region ""`},
		{name: "no id", value: `{"region": "eu"}`, want: agent.StatusDeadLetter, wantErr: `no "id"`},
		{name: "invalid JSON", value: `{"id": `, want: agent.StatusDeadLetter, wantErr: "invalid order JSON"},
		{name: "wrong type", value: `{"id": 7, "region": "eu"}`, want: agent.StatusDeadLetter, wantErr: "invalid order JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &agent.Event{Topic: "orders", Key: []byte("ignored"), Value: []byte(tt.value),
				Headers: []agent.Header{{Key: "trace", Value: []byte("t1")}}}
			err := route(context.Background(), ev)
			if got := agent.StatusOf(err); got != tt.want {
				t.Fatalf("outcome: got %v (%v), want %v", got, err, tt.want)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("error: got %v, want it to contain %q", err, tt.wantErr)
			}
			got := ev.Emitted()
			if tt.want != agent.StatusOK {
				if len(got) != 0 {
					t.Errorf("emitted %v for a dead letter, want nothing", got)
				}
				return
			}
			if len(got) != 1 || got[0].Topic != tt.wantTopic || string(got[0].Key) != tt.wantKey ||
				string(got[0].Value) != tt.value || len(got[0].Headers) != 1 {
				t.Errorf("emitted: got %+v, want one record to %s keyed %s with the order and its headers", got, tt.wantTopic, tt.wantKey)
			}
		})
	}
}

// rejectingWorker ends every agent session with a status, like a worker
// that does not know the agent.
type rejectingWorker struct {
	eddyv1.UnsafeAgentServiceServer
	err error
}

func (w *rejectingWorker) Connect(grpc.BidiStreamingServer[eddyv1.ConnectRequest, eddyv1.ConnectResponse]) error {
	return w.err
}

func (w *rejectingWorker) ListAgents(context.Context, *eddyv1.ListAgentsRequest) (*eddyv1.ListAgentsResponse, error) {
	return &eddyv1.ListAgentsResponse{}, nil
}

func startRejectingWorker(t *testing.T, err error) string {
	t.Helper()
	lis, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		t.Fatal(lerr)
	}
	srv := grpc.NewServer()
	eddyv1.RegisterAgentServiceServer(srv, &rejectingWorker{err: err})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return lis.Addr().String()
}

func TestRun(t *testing.T) {
	unknown := startRejectingWorker(t, status.Error(codes.NotFound, `unknown agent "router"`))
	badToken := startRejectingWorker(t, status.Error(codes.Unauthenticated, "invalid bearer token"))
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		cancelled  bool
		wantCode   int
		wantStderr string
	}{
		{name: "help", args: []string{"-help"}, wantCode: exitOK, wantStderr: "-name"},
		{name: "bad flag", args: []string{"--bogus"}, wantCode: exitUsage, wantStderr: "bogus"},
		{name: "bad address", args: []string{"--addr", "nohost"}, wantCode: exitUsage, wantStderr: `invalid worker address "nohost"`},
		{name: "unknown agent", args: []string{"--addr", unknown}, wantCode: exitRejected, wantStderr: "declared in the worker's app file"},
		{name: "bad token from the environment", env: map[string]string{agent.EnvAddr: badToken, agent.EnvToken: "x"}, wantCode: exitRejected, wantStderr: "Pass --token"},
		{name: "stopped", args: []string{"--addr", unknown}, cancelled: true, wantCode: exitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tt.cancelled {
				cancel()
			}
			var stderr bytes.Buffer
			code := run(ctx, tt.args, &stderr, func(k string) string { return tt.env[k] })
			if code != tt.wantCode {
				t.Errorf("exit code: got %v, want %v (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr lacks %q; got %q", tt.wantStderr, stderr.String())
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				t.Error("run did not return in time")
			}
		})
	}
}
