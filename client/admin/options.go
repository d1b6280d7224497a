package admin

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/eddy-streams/eddy/internal/tlsfiles"
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
	tlsFiles    *tlsfiles.Files
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

// WithTLSFiles connects with TLS configured from PEM files: the worker's
// certificate must verify against the CAs in caFile (the system roots when
// empty) and name the host of the address; certFile and keyFile, both or
// neither, are the client certificate a worker with tls.client_ca_file
// requires. Dial reads the files and reports one it cannot use, naming it.
// TLS 1.2 at least. It cannot be combined with WithTLS.
//
// Default: plaintext.
func WithTLSFiles(caFile, certFile, keyFile string) Option {
	return func(o *options) {
		f := o.files()
		f.CAFile, f.CertFile, f.KeyFile = caFile, certFile, keyFile
	}
}

// WithInsecureSkipVerify connects with TLS without verifying the worker's
// certificate: anyone on the path can then read the token. For tests
// against a throw-away certificate only. It combines with a client
// certificate of WithTLSFiles, not with its caFile.
//
// Default: the worker's certificate is verified.
func WithInsecureSkipVerify() Option {
	return func(o *options) { o.files().InsecureSkipVerify = true }
}

func (o *options) files() *tlsfiles.Files {
	if o.tlsFiles == nil {
		o.tlsFiles = &tlsfiles.Files{}
	}
	return o.tlsFiles
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
	if o.tlsFiles != nil {
		if o.tlsConfig != nil {
			errs = append(errs, errors.New("WithTLS and WithTLSFiles (or WithInsecureSkipVerify) exclude each other: give one TLS configuration"))
		} else if cfg, err := o.tlsFiles.Config("WithTLSFiles"); err != nil {
			errs = append(errs, err)
		} else {
			o.tlsConfig = cfg
		}
	}
	return errors.Join(errs...)
}
