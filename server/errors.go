package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/app"
	"github.com/eddy-streams/eddy/worker/tables/live"
)

// ErrorDomain and the reasons below are the google.rpc.ErrorInfo a status
// carries when its code alone does not say what to do (docs/protocol.md,
// docs/operations.md#errors).
const (
	ErrorDomain = "eddy.v1"
	// ReasonAppMismatch: Hello named another app than the worker's
	// (FAILED_PRECONDITION, like an unsupported protocol version, which
	// carries no reason).
	ReasonAppMismatch = "APP_MISMATCH"
	// ReasonNotRunning: the worker is starting or stopping (UNAVAILABLE:
	// try again, or another worker). It tells a worker's own UNAVAILABLE
	// from a connection that failed.
	ReasonNotRunning = "NOT_RUNNING"
	// ReasonPartitionUnavailable: a table partition cannot be read right
	// now — restoring, between owners, or its owner unreachable
	// (UNAVAILABLE: try again).
	ReasonPartitionUnavailable = "PARTITION_UNAVAILABLE"
)

// toStatus is the one mapping from the runtime's errors to gRPC statuses,
// for every service, the agent sessions included (docs/architecture.md#errors
// lists it). Known errors keep their message, which names what is wrong;
// anything else is logged and becomes a generic Internal error. A status
// error (already mapped, or an owner's answer to a forwarded read) passes
// as it is.
//
//	NotFound            *agents.UnknownAgentError, *app.UnknownTableError,
//	                    *app.UnknownTopicError, live.ErrKeyNotFound
//	InvalidArgument     agents.ErrBadRequest, live.ErrBadPageToken
//	FailedPrecondition  *agents.AppMismatchError (APP_MISMATCH),
//	                    agents.ErrProtocolVersion
//	Unavailable         app.ErrNotRunning, agents.ErrShuttingDown (NOT_RUNNING);
//	                    app.ErrUnavailable, *live.NotOwnedError,
//	                    live.ErrNotOwned, live.ErrRecovering
//	                    (PARTITION_UNAVAILABLE)
//	ResourceExhausted   agents.ErrStalled
//	DeadlineExceeded    agents.ErrProcessingTimeout, context.DeadlineExceeded
//	Aborted             agents.ErrReplaced
//	Canceled            context.Canceled
func toStatus(log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var (
		unknownAgent *agents.UnknownAgentError
		wrongApp     *agents.AppMismatchError
		unknownTable *app.UnknownTableError
		unknownTopic *app.UnknownTopicError
		notOwned     *live.NotOwnedError
	)
	msg := err.Error()
	switch {
	case errors.As(err, &unknownAgent), errors.As(err, &unknownTable), errors.As(err, &unknownTopic),
		errors.Is(err, live.ErrKeyNotFound):
		return status.Error(codes.NotFound, msg)
	case errors.Is(err, agents.ErrBadRequest), errors.Is(err, live.ErrBadPageToken):
		return status.Error(codes.InvalidArgument, msg)
	case errors.As(err, &wrongApp):
		return withReason(status.New(codes.FailedPrecondition, msg), ReasonAppMismatch,
			map[string]string{"hello_app": wrongApp.Hello, "worker_app": wrongApp.Worker})
	case errors.Is(err, agents.ErrProtocolVersion):
		return status.Error(codes.FailedPrecondition, msg)
	case errors.Is(err, app.ErrNotRunning), errors.Is(err, agents.ErrShuttingDown):
		// Transient: the SDKs reconnect, clients try again.
		return withReason(status.New(codes.Unavailable, msg), ReasonNotRunning, nil)
	case errors.Is(err, app.ErrUnavailable), errors.As(err, &notOwned),
		errors.Is(err, live.ErrNotOwned), errors.Is(err, live.ErrRecovering):
		return withReason(status.New(codes.Unavailable, msg), ReasonPartitionUnavailable, nil)
	case errors.Is(err, agents.ErrStalled):
		return status.Error(codes.ResourceExhausted, msg)
	case errors.Is(err, agents.ErrProcessingTimeout):
		// Transient for the SDKs: the instance reconnects, and its
		// events are delivered to another instance meanwhile.
		return status.Error(codes.DeadlineExceeded, msg)
	case errors.Is(err, agents.ErrReplaced):
		return status.Error(codes.Aborted, msg)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg)
	}
	log.Error("internal error in gRPC handler", "err", err)
	return status.Error(codes.Internal, "internal error (logged by the worker)")
}

// withReason returns st with an ErrorInfo of reason, or st alone if it
// cannot be attached.
func withReason(st *status.Status, reason string, md map[string]string) error {
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: md}); err == nil {
		return d.Err()
	}
	return st.Err()
}

// unimplemented answers RPCs whose capability is not built yet.
func unimplemented(what string) error {
	return status.Errorf(codes.Unimplemented, "%s is not implemented in this version of the worker yet", what)
}
