package admin

import (
	"context"
	"errors"
	"fmt"
	"net"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// ErrUnreachable reports that the worker is not answering: nothing listens at
// the address, the address does not resolve, or no connection could be made
// before the call's deadline. Errors returned by Client wrap it, so test with
// errors.Is(err, ErrUnreachable). The error text names the address and the
// cause, for example
//
//	cannot reach worker at 127.0.0.1:6066: connection refused
//
// When the cause is a network error it stays in the chain, so
// errors.Is(err, syscall.ECONNREFUSED) and errors.As(err, &netOpErr) work.
//
// A worker that answers codes.Unavailable itself — it is starting or
// stopping, or a table partition is being restored or between owners — is
// reachable: that error does not wrap ErrUnreachable, keeps its status
// (status.Code(err) == codes.Unavailable: try again later) and reads like
// "the worker is not running: state is STARTING (Unavailable)". The worker
// marks its own with a google.rpc.ErrorInfo of domain "eddy.v1"
// (docs/operations.md#errors).
var ErrUnreachable = errors.New("cannot reach worker")

// ErrUnauthenticated reports that the worker refused the call because the
// token is missing or wrong (gRPC codes Unauthenticated and PermissionDenied).
// Errors returned by Client wrap it, so test with
// errors.Is(err, ErrUnauthenticated). The gRPC status stays in the chain for
// status.FromError.
var ErrUnauthenticated = errors.New("the worker rejected the token")

// ErrTLS reports that the TLS connection to the worker failed: its
// certificate did not verify (unknown authority, wrong name, expired), it
// does not serve TLS, or it refused this client's certificate (none given,
// or one its tls.client_ca_file does not verify). Errors returned by
// Client wrap it, so test with errors.Is(err, ErrTLS); the message names
// the certificate problem, for example
//
//	TLS handshake with the worker at 127.0.0.1:6066 failed: tls: failed to verify certificate: x509: certificate signed by unknown authority
//
// and a *tlsfiles.HandshakeError is in the chain.
var ErrTLS = errors.New("TLS connection to the worker failed")

// classifiedError carries a sentinel and the underlying cause while printing
// a message written for the user rather than the raw gRPC status text.
type classifiedError struct {
	msg   string
	kind  error // ErrUnreachable, ErrUnauthenticated or ErrTLS
	cause error
}

func (e *classifiedError) Error() string { return e.msg }

func (e *classifiedError) Unwrap() []error { return []error{e.kind, e.cause} }

// classify turns transport and authentication failures of a call into errors
// wrapping ErrUnreachable or ErrUnauthenticated. Other status errors get a
// shorter message but keep their gRPC status in the chain.
//
// When the call's context has ended, its error joins the chain, so
// errors.Is(err, context.DeadlineExceeded) works as it does for local calls.
func (c *Client) classify(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = errors.Join(err, ctxErr)
	}
	switch st.Code() {
	case codes.Unavailable:
		if fromWorker(st) {
			return remote(st, err)
		}
		if tlsErr := c.tlsFailure(err); tlsErr != nil {
			return tlsErr
		}
		return c.unreachable(err, st.Message())
	case codes.DeadlineExceeded:
		// A deadline on a live connection is a slow worker, not a missing one.
		// grpc.NewClient connects lazily, so a deadline before the connection
		// is up is how an unanswering address shows itself.
		if c.conn.GetState() == connectivity.Ready {
			return remote(st, err)
		}
		if tlsErr := c.tlsFailure(err); tlsErr != nil {
			return tlsErr
		}
		return c.unreachable(err, "no connection before the deadline")
	case codes.Unauthenticated, codes.PermissionDenied:
		msg := ErrUnauthenticated.Error()
		if c.opts.token == "" {
			msg = "the worker requires a token and none was given"
		}
		return &classifiedError{msg: msg, kind: ErrUnauthenticated, cause: err}
	default:
		return remote(st, err)
	}
}

// tlsFailure returns the ErrTLS error of the last TLS failure, if the
// connection failed on one.
func (c *Client) tlsFailure(err error) error {
	if c.tlsRec == nil {
		return nil
	}
	h := c.tlsRec.Last()
	if h == nil {
		return nil
	}
	return &classifiedError{msg: h.Error(), kind: ErrTLS, cause: errors.Join(h, err)}
}

// errorDomain is the google.rpc.ErrorInfo domain of the worker's statuses.
const errorDomain = "eddy.v1"

// fromWorker reports whether st is the worker's own answer, which carries an
// ErrorInfo of Eddy's domain, rather than a failure to reach it.
func fromWorker(st *status.Status) bool {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			return true
		}
	}
	return false
}

func remote(st *status.Status, err error) error {
	return &remoteError{msg: fmt.Sprintf("%s (%s)", st.Message(), st.Code()), err: err}
}

// remoteError shows a gRPC status as "unknown agent \"x\" (NotFound)" instead
// of "rpc error: code = NotFound desc = ...". The status error stays in the
// chain, so status.Code and status.FromError still work.
type remoteError struct {
	msg string
	err error
}

func (e *remoteError) Error() string { return e.msg }

func (e *remoteError) Unwrap() error { return e.err }

// unreachable builds the ErrUnreachable error, preferring the last dial
// failure (a typed network error) over the gRPC status text.
func (c *Client) unreachable(err error, fallback string) error {
	if d := c.lastDialErr.Load(); d != nil {
		return &classifiedError{
			msg:   fmt.Sprintf("%v at %s: %s", ErrUnreachable, c.addr, rootCause(d.err)),
			kind:  ErrUnreachable,
			cause: errors.Join(d.err, err),
		}
	}
	return &classifiedError{
		msg:   fmt.Sprintf("%v at %s: %s", ErrUnreachable, c.addr, fallback),
		kind:  ErrUnreachable,
		cause: err,
	}
}

// rootCause returns the text of the innermost error of a dial failure:
// "connection refused" rather than
// "dial tcp 127.0.0.1:6066: connect: connection refused", since the message
// already names the address.
func rootCause(err error) string {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.Err
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
