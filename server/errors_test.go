package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/app"
	"github.com/eddy-streams/eddy/worker/tables/live"
)

// TestToStatus covers every error value of the runtime that reaches the
// gRPC services, wrapped as the runtime wraps them: its code, the message
// the user sees and, where the code alone does not say what to do, the
// ErrorInfo reason.
func TestToStatus(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   codes.Code
		msg    string // the status message, exactly
		reason string
	}{
		{"unknown agent", &agents.UnknownAgentError{Name: "cnt", Declared: []string{"audit", "count"}},
			codes.NotFound, `unknown agent "cnt": declared agents are "audit", "count"`, ""},
		{"unknown table", &app.UnknownTableError{Name: "cnts", Declared: []string{"counts"}},
			codes.NotFound, `unknown table "cnts": declared tables are "counts"`, ""},
		{"unknown topic", &app.UnknownTopicError{Name: "lins", Declared: []string{"lines"}},
			codes.NotFound, `unknown topic "lins": declared topics are "lines"`, ""},
		{"key not found", fmt.Errorf("key %q in table %q (partition 1): %w", "k", "counts", live.ErrKeyNotFound),
			codes.NotFound, `key "k" in table "counts" (partition 1): key not found`, ""},
		{"bad request", fmt.Errorf("limit 20000 out of range: at most 10000: %w", agents.ErrBadRequest),
			codes.InvalidArgument, "limit 20000 out of range: at most 10000: bad request", ""},
		{"protocol violation", fmt.Errorf("%w: result for offset 7, never delivered", agents.ErrBadRequest),
			codes.InvalidArgument, "bad request: result for offset 7, never delivered", ""},
		{"bad page token", fmt.Errorf("%w: %q is not a page token returned by Scan", live.ErrBadPageToken, "x"),
			codes.InvalidArgument, `bad page token: "x" is not a page token returned by Scan`, ""},
		{"another app", &agents.AppMismatchError{Hello: "billing", Worker: "demo"},
			codes.FailedPrecondition, `hello.app "billing" does not match this worker's app "demo"`, ReasonAppMismatch},
		{"protocol version", fmt.Errorf("%w 7: this worker speaks version 1", agents.ErrProtocolVersion),
			codes.FailedPrecondition, "unsupported agent protocol version 7: this worker speaks version 1", ""},
		{"not running", fmt.Errorf("%w: state is STARTING", app.ErrNotRunning),
			codes.Unavailable, "the worker is not running: state is STARTING", ReasonNotRunning},
		{"shutting down", agents.ErrShuttingDown,
			codes.Unavailable, "the worker is shutting down", ReasonNotRunning},
		{"partition unavailable", fmt.Errorf("%w: table %q partition 2 (topic %q) is assigned to no worker right now (rebalancing?)", app.ErrUnavailable, "counts", "words"),
			codes.Unavailable, `table partition unavailable: table "counts" partition 2 (topic "words") is assigned to no worker right now (rebalancing?)`, ReasonPartitionUnavailable},
		{"not owned here", &live.NotOwnedError{Table: "counts", Partition: 3, WorkerID: "w2", Addr: "10.0.0.2:6066"},
			codes.Unavailable, `table "counts" partition 3 is owned by worker "w2" at 10.0.0.2:6066`, ReasonPartitionUnavailable},
		{"agents: not owned", fmt.Errorf("table %q partition %d: %w", "counts", 3, live.ErrNotOwned),
			codes.Unavailable, `table "counts" partition 3: table partition not owned by this worker`, ReasonPartitionUnavailable},
		{"agents: recovering", fmt.Errorf("table %q partition %d: %w", "counts", 3, live.ErrRecovering),
			codes.Unavailable, `table "counts" partition 3: table partition is being restored`, ReasonPartitionUnavailable},
		{"stalled", fmt.Errorf("%w: a message waited 30s to be sent (the agent stopped reading its stream)", agents.ErrStalled),
			codes.ResourceExhausted, "the agent does not read its stream: a message waited 30s to be sent (the agent stopped reading its stream)", ""},
		{"processing timeout", agents.ErrProcessingTimeout,
			codes.DeadlineExceeded, "the agent instance did not answer within its processing_timeout", ""},
		{"replaced", fmt.Errorf("%w %q", agents.ErrReplaced, "i1"),
			codes.Aborted, `replaced by a new session of the same instance "i1"`, ""},
		{"canceled", context.Canceled, codes.Canceled, "context canceled", ""},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, "context deadline exceeded", ""},
		{"a status passes as it is", status.Error(codes.NotFound, "the owner's answer"), codes.NotFound, "the owner's answer", ""},
		{"anything else", errors.New("disk on fire"), codes.Internal, "internal error (logged by the worker)", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logged bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logged, nil))
			st := status.Convert(toStatus(log, tt.err))
			if st.Code() != tt.code || st.Message() != tt.msg {
				t.Errorf("got %v %q, want %v %q", st.Code(), st.Message(), tt.code, tt.msg)
			}
			var reason string
			for _, d := range st.Details() {
				if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
					reason = info.GetReason()
				}
			}
			if reason != tt.reason {
				t.Errorf("got reason %q, want %q", reason, tt.reason)
			}
			if internal := tt.code == codes.Internal; internal != strings.Contains(logged.String(), "disk on fire") {
				t.Errorf("got log %q; want the detail logged only for Internal", logged.String())
			}
		})
	}
	if toStatus(slog.New(slog.DiscardHandler), nil) != nil {
		t.Errorf("got a status for nil, want nil")
	}
}
