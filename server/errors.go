package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/eddy-streams/eddy/worker/app"
)

// toStatus is the one mapping from runtime errors to gRPC status codes.
// Known errors keep their message, which names what is wrong; anything else
// is logged and becomes a generic Internal error.
func toStatus(log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var unknownAgent *app.UnknownAgentError
	var unknownTable *app.UnknownTableError
	var notOwned *app.NotOwnedError
	var unknownTopic *app.UnknownTopicError
	switch {
	case errors.As(err, &unknownAgent), errors.As(err, &unknownTable), errors.As(err, &unknownTopic), errors.Is(err, app.ErrKeyNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, app.ErrBadPageToken), errors.Is(err, app.ErrBadRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, app.ErrUnavailable), errors.As(err, &notOwned):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, app.ErrNotRunning):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	log.Error("internal error in gRPC handler", "err", err)
	return status.Error(codes.Internal, "internal error (logged by the worker)")
}

// unimplemented answers RPCs whose capability is not built yet.
func unimplemented(what string) error {
	return status.Errorf(codes.Unimplemented, "%s is not implemented in this version of the worker yet", what)
}
