// Package grpcconn is what every gRPC client of a worker shares — the Go
// SDKs (client/agent, client/admin) and the worker's own forwarded table
// reads (server/): the check of a worker address and the transport
// credentials. Dial options beyond these (interceptors, keepalives,
// message sizes) are each client's.
package grpcconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/eddy-streams/eddy/internal/tlsfiles"
)

// ValidateAddr checks that addr is a worker address, host:port without a
// scheme; an empty host means the local host, as for net.Dial. The error
// names the address and what is wrong.
func ValidateAddr(addr string) error {
	if addr == "" {
		return errors.New("empty worker address; want host:port")
	}
	if strings.Contains(addr, "/") {
		return fmt.Errorf("invalid worker address %q: want host:port, without a scheme", addr)
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		var addrErr *net.AddrError
		if errors.As(err, &addrErr) {
			return fmt.Errorf("invalid worker address %q: %s; want host:port", addr, addrErr.Err)
		}
		return fmt.Errorf("invalid worker address %q: %w; want host:port", addr, err)
	}
	if port == "" {
		return fmt.Errorf("invalid worker address %q: missing port; want host:port", addr)
	}
	return nil
}

// Credentials are the transport credentials of a client configured with
// cfg: plaintext when cfg is nil, else TLS with a recorder of handshake
// failures (rec; nil without TLS), which gRPC would reduce to UNAVAILABLE.
func Credentials(cfg *tls.Config) (creds credentials.TransportCredentials, rec *tlsfiles.Recorder) {
	if cfg == nil {
		return insecure.NewCredentials(), nil
	}
	rec = tlsfiles.NewRecorder(credentials.NewTLS(cfg))
	return rec, rec
}
