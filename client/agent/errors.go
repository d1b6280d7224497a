package agent

import (
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrAlreadyStarted is returned by Run when Run has been called before on the
// same Agent. An Agent runs once; create another with New to run again.
var ErrAlreadyStarted = errors.New("agent: Run called more than once")

// Sentinel errors for the reasons a worker refuses a session. Run returns a
// *RejectedError wrapping one of them instead of reconnecting, because
// reconnecting cannot fix them; test with errors.Is.
var (
	// ErrUnknownAgent: the worker's app declares no agent of this name
	// (gRPC NotFound).
	ErrUnknownAgent = errors.New("the worker does not know this agent")
	// ErrUnauthenticated: the token is missing or wrong (gRPC Unauthenticated
	// or PermissionDenied).
	ErrUnauthenticated = errors.New("the worker rejected the token")
	// ErrProtocolVersion: the worker does not speak this SDK's protocol
	// version (gRPC FailedPrecondition).
	ErrProtocolVersion = errors.New("the worker does not support this protocol version")
	// ErrWrongApp: the worker belongs to another app than the one given with
	// WithApp, typically a wrong address (gRPC FailedPrecondition with the
	// ErrorInfo reason APP_MISMATCH, see docs/protocol.md).
	ErrWrongApp = errors.New("the worker belongs to another app")
	// ErrProtocolViolation: the worker says this SDK broke the protocol, for
	// example by not opening with Hello (gRPC InvalidArgument). It is a bug in
	// the SDK or the worker.
	ErrProtocolViolation = errors.New("the worker reports a protocol violation")
	// ErrNotSupported: the worker does not implement the agent protocol at
	// all (gRPC Unimplemented), for example an older worker.
	ErrNotSupported = errors.New("the worker does not support remote agents")
)

// RejectedError reports that the worker refused the session for a reason
// reconnecting cannot fix. It wraps one of the sentinel errors above and the
// gRPC status error, so both errors.Is(err, ErrUnknownAgent) and
// status.Code(err) work. It is not modified after Run returns it: safe for
// concurrent reads.
type RejectedError struct {
	// Agent is the agent name sent in Hello.
	Agent string
	// Addr is the worker address.
	Addr string
	// Code is the gRPC status code the worker ended the stream with.
	Code codes.Code
	// Message is the worker's explanation.
	Message string

	kind  error
	cause error
}

// Error reads, for example,
//
//	worker at 127.0.0.1:6066 rejected agent "router": the worker does not know this agent: unknown agent "router" (NotFound)
func (e *RejectedError) Error() string {
	return fmt.Sprintf("worker at %s rejected agent %q: %v: %s (%s)", e.Addr, e.Agent, e.kind, e.Message, e.Code)
}

// Unwrap returns the sentinel error and the gRPC status error.
func (e *RejectedError) Unwrap() []error { return []error{e.kind, e.cause} }

// permanentKinds maps the status codes that end Run to their sentinel.
var permanentKinds = map[codes.Code]error{
	codes.NotFound:           ErrUnknownAgent,
	codes.Unauthenticated:    ErrUnauthenticated,
	codes.PermissionDenied:   ErrUnauthenticated,
	codes.FailedPrecondition: ErrProtocolVersion,
	codes.InvalidArgument:    ErrProtocolViolation,
	codes.Unimplemented:      ErrNotSupported,
}

// rejection returns a *RejectedError when err is a status that reconnecting
// cannot fix, else nil.
func (a *Agent) rejection(addr string, err error) *RejectedError {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	kind, ok := permanentKinds[st.Code()]
	if !ok {
		return nil
	}
	if st.Code() == codes.FailedPrecondition && hasReason(st, reasonAppMismatch) {
		kind = ErrWrongApp
	}
	return &RejectedError{
		Agent:   a.name,
		Addr:    addr,
		Code:    st.Code(),
		Message: st.Message(),
		kind:    kind,
		cause:   err,
	}
}

// reasonAppMismatch is the google.rpc.ErrorInfo reason, in the domain
// errorDomain, of the worker's refusal of a Hello naming another app
// (docs/protocol.md).
const (
	reasonAppMismatch = "APP_MISMATCH"
	errorDomain       = "eddy.v1"
)

// hasReason reports whether st carries an ErrorInfo of Eddy's domain with
// the given reason.
func hasReason(st *status.Status, reason string) bool {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain && info.GetReason() == reason {
			return true
		}
	}
	return false
}
