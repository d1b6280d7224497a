package server

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// mutating lists the calls that change the worker; they need the token
// whenever one is configured.
var mutating = map[string]bool{
	eddyv1.LifecycleService_Pause_FullMethodName:    true,
	eddyv1.LifecycleService_Resume_FullMethodName:   true,
	eddyv1.LifecycleService_Shutdown_FullMethodName: true,
	eddyv1.TopicService_Send_FullMethodName:         true,
}

// exempt lists services that never need the token: health probes and
// reflection (which only describes the API).
var exempt = map[string]bool{
	"grpc.health.v1.Health":                    true,
	"grpc.reflection.v1.ServerReflection":      true,
	"grpc.reflection.v1alpha.ServerReflection": true,
}

// authMatcher selects the calls the auth interceptor checks. Connect is
// checked by the agent service itself, which also accepts the token in Hello.
func authMatcher(enabled, protectReads bool) selector.Matcher {
	return selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		switch {
		case !enabled, exempt[c.Service]:
			return false
		case c.FullMethod() == eddyv1.AgentService_Connect_FullMethodName:
			return false
		case mutating[c.FullMethod()]:
			return true
		default:
			return protectReads
		}
	})
}

// tokenAuth checks "authorization: Bearer <token>" in constant time.
func tokenAuth(token string) auth.AuthFunc {
	return func(ctx context.Context) (context.Context, error) {
		got, err := auth.AuthFromMD(ctx, "bearer")
		if err != nil {
			return nil, status.Error(grpccodes.Unauthenticated, "missing token: send \"authorization: Bearer <token>\" (workerctl --token or EDDY_TOKEN)")
		}
		if !TokenMatches(token, got) {
			return nil, status.Error(grpccodes.Unauthenticated, "bad token")
		}
		return ctx, nil
	}
}

// TokenMatches compares a presented token with the configured one in
// constant time.
func TokenMatches(want, got string) bool {
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// recovered turns a handler panic into codes.Internal; the stack goes to
// the log, never to the caller.
func recovered(log *slog.Logger, p any) error {
	log.Error("panic in gRPC handler", "err", fmt.Sprint(p), "stack", string(debug.Stack()))
	return status.Error(grpccodes.Internal, "internal error (logged by the worker)")
}

func levelFor(c grpccodes.Code) logging.Level {
	switch c {
	case grpccodes.OK, grpccodes.Canceled, grpccodes.NotFound:
		return logging.LevelDebug
	case grpccodes.Internal, grpccodes.Unknown, grpccodes.DataLoss:
		return logging.LevelError
	default:
		return logging.LevelInfo
	}
}

// slogAdapter adapts *slog.Logger to the middleware's logger.
func slogAdapter(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}
