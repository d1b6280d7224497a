package admin

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// DefaultDialTimeout is how long one connection attempt may take when
// WithDialTimeout is not given. It is gRPC's own default.
const DefaultDialTimeout = 20 * time.Second

// Option configures Dial. Options are applied in order; a later option of the
// same kind replaces an earlier one.
type Option func(*options)

type options struct {
	token       string
	tlsConfig   *tls.Config
	dialTimeout time.Duration
}

func defaultOptions() options {
	return options{dialTimeout: DefaultDialTimeout}
}

// WithToken sends token on every call as the metadata
// "authorization: Bearer <token>". The worker requires it for mutating calls
// (Pause, Resume, Shutdown) once it has a token configured; read-only calls
// work without it.
//
// Default: no token. An empty token also means no token, so a value read from
// an unset environment variable can be passed as is.
//
// The token does not require TLS so that it works against a worker listening
// on loopback in plaintext, which is the worker's default. Over any other
// network, combine it with WithTLS: without TLS the token crosses the network
// in clear text.
func WithToken(token string) Option {
	return func(o *options) { o.token = token }
}

// WithTLS connects with TLS using cfg. The server name is taken from the
// address passed to Dial when cfg.ServerName is empty. A nil cfg means
// plaintext.
//
// Default: plaintext, matching the worker's default of listening on loopback
// without TLS.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tlsConfig = cfg }
}

// WithDialTimeout bounds one attempt to establish the connection (TCP, TLS
// and HTTP/2 handshakes); failed attempts are retried with backoff while calls
// are waiting. It does not bound calls: use the context passed to each method
// for that.
//
// Default: DefaultDialTimeout (20s). It must be positive.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) { o.dialTimeout = d }
}

// validate rejects option values that cannot work, naming the option.
func (o *options) validate() error {
	var errs []error
	if o.dialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("WithDialTimeout: %v is not positive", o.dialTimeout))
	}
	for _, r := range o.token {
		// Header values must be visible ASCII; anything else is a paste
		// mistake (a trailing newline, typically) that gRPC would reject on
		// every call with a less helpful message.
		if r < 0x21 || r > 0x7e {
			errs = append(errs, errors.New("WithToken: token contains whitespace or non-printable characters"))
			break
		}
	}
	return errors.Join(errs...)
}
