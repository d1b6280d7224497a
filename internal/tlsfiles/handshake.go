package tlsfiles

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
)

// HandshakeError is a TLS failure between a client and the worker: the
// worker's certificate did not verify, or the worker refused the client's
// (a TLS alert received after the handshake, as TLS 1.3 sends it).
type HandshakeError struct {
	// Addr is the address dialled.
	Addr string
	// Remote is true when the worker refused the connection (an alert),
	// false when this client refused the worker's certificate.
	Remote bool
	// Err is the TLS error, naming the certificate problem.
	Err error
}

func (e *HandshakeError) Error() string {
	if e.Remote {
		return fmt.Sprintf("the worker at %s refused the TLS connection: %v", e.Addr, e.Err)
	}
	return fmt.Sprintf("TLS handshake with the worker at %s failed: %v", e.Addr, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// Recorder is transport credentials that keep the last TLS failure of
// their connections, which gRPC reduces to an UNAVAILABLE status. Safe for
// concurrent use (a connection's Read is not, as for any net.Conn).
type Recorder struct {
	credentials.TransportCredentials
	last *atomic.Pointer[HandshakeError]
}

// NewRecorder wraps c.
func NewRecorder(c credentials.TransportCredentials) *Recorder {
	return &Recorder{TransportCredentials: c, last: new(atomic.Pointer[HandshakeError])}
}

// Last returns the last TLS failure, or nil when the last handshake
// succeeded and no alert followed.
func (r *Recorder) Last() *HandshakeError { return r.last.Load() }

// ClientHandshake records the outcome of the handshake. Under TLS 1.3 the
// worker checks the client certificate after the client has finished its
// handshake and answers with an alert or its first HTTP/2 frame; this
// waits for that answer, so a refused client certificate fails the
// handshake too, naming the alert, instead of a later write or read.
func (r *Recorder) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	addr := raw.RemoteAddr().String()
	conn, info, err := r.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		if ctx.Err() == nil {
			r.last.Store(&HandshakeError{Addr: addr, Err: err})
		}
		return nil, nil, err
	}
	if ti, ok := info.(credentials.TLSInfo); ok && ti.State.Version >= tls.VersionTLS13 {
		first, err := firstBytes(ctx, conn)
		if err != nil {
			conn.Close()
			h := &HandshakeError{Addr: addr, Err: err}
			var op *net.OpError
			// crypto/tls reports an alert received as a *net.OpError
			// "remote error" (its alert type is not exported).
			h.Remote = errors.As(err, &op) && op.Op == "remote error"
			if ctx.Err() == nil {
				r.last.Store(h)
			}
			return nil, nil, h
		}
		conn = &prefixConn{Conn: conn, first: first}
	}
	r.last.Store(nil)
	return conn, info, nil
}

// firstBytes reads what the worker sends first, within ctx's deadline.
func firstBytes(ctx context.Context, conn net.Conn) ([]byte, error) {
	if d, ok := ctx.Deadline(); ok {
		if err := conn.SetReadDeadline(d); err != nil {
			return nil, err
		}
		defer conn.SetReadDeadline(time.Time{})
	}
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if n > 0 {
		return buf[:n], nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = errors.New("the worker closed the connection right after the TLS handshake")
	}
	return nil, err
}

// Clone returns a copy sharing the record.
func (r *Recorder) Clone() credentials.TransportCredentials {
	return &Recorder{TransportCredentials: r.TransportCredentials.Clone(), last: r.last}
}

// prefixConn serves first before reading on.
type prefixConn struct {
	net.Conn
	first []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
