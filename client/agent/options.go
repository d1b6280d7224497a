package agent

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"time"

	"github.com/eddy-streams/eddy/internal/grpcconn"
	"github.com/eddy-streams/eddy/internal/tlsfiles"
)

// Defaults of the options. They are exported so programs can print them or
// derive their own values from them.
const (
	// DefaultAddr is the worker address used when neither WithAddr nor the
	// EDDY_ADDR environment variable gives one: the worker's default listen
	// address.
	DefaultAddr = "127.0.0.1:6066"
	// DefaultCreditEvents is the event window: at most this many events are
	// delivered and not yet finished at any time.
	DefaultCreditEvents = 1000
	// DefaultCreditBytes is the byte window: at most this many key+value
	// bytes are delivered and not yet finished at any time (8 MiB).
	DefaultCreditBytes = 8 << 20
	// DefaultDrainTimeout bounds how long a graceful stop waits for events in
	// progress.
	DefaultDrainTimeout = 10 * time.Second
	// DefaultBackoffMin and DefaultBackoffMax bound the delay between
	// reconnection attempts.
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
	// DefaultDiscovery is how often the agent reads the app's list of
	// workers again (WithDiscovery).
	DefaultDiscovery = 5 * time.Second
)

// Environment variables read by New for the defaults of WithAddr,
// WithToken and WithApp. The same names are used by workerctl, the Python
// SDK and the worker's docs.
const (
	EnvAddr  = "EDDY_ADDR"
	EnvToken = "EDDY_TOKEN"
	EnvApp   = "EDDY_APP"
)

// Option configures New. Options are applied in order; a later option of the
// same kind replaces an earlier one. Invalid or conflicting values are
// reported together by New. An Option holds no state of its own and may be
// reused for several agents, from any goroutine.
type Option func(*options)

type options struct {
	app           string
	addrs         []string
	discovery     time.Duration
	token         string
	tlsConfig     *tls.Config
	tlsFiles      *tlsfiles.Files
	instanceID    string
	instanceIDSet bool
	creditEvents  int
	creditBytes   int64
	logger        *slog.Logger
	drainTimeout  time.Duration
	backoffMin    time.Duration
	backoffMax    time.Duration
	onCommitted   func(topic string, partition int32, offset int64)
	concurrency   int
}

func defaultOptions(getenv func(string) string) options {
	return options{
		app:          getenv(EnvApp),
		addrs:        splitAddrs(cmp.Or(getenv(EnvAddr), DefaultAddr)),
		discovery:    DefaultDiscovery,
		token:        getenv(EnvToken),
		creditEvents: DefaultCreditEvents,
		creditBytes:  DefaultCreditBytes,
		logger:       slog.New(slog.DiscardHandler),
		drainTimeout: DefaultDrainTimeout,
		backoffMin:   DefaultBackoffMin,
		backoffMax:   DefaultBackoffMax,
	}
}

// WithApp names the app the agent belongs to: the "app" of the worker's app
// file. It is sent in Hello, and a worker of another app refuses the session
// (Run returns a *RejectedError wrapping ErrWrongApp), so an agent pointed
// at the wrong address cannot take over another app's partitions.
//
// Default: the EDDY_APP environment variable. One of the two is required:
// New fails when both are empty.
func WithApp(app string) Option {
	return func(o *options) { o.app = app }
}

// WithAddr sets the gRPC addresses of one or more workers of the app, each
// a host:port such as "127.0.0.1:6066"; an argument may also hold a
// comma-separated list. The agent asks them for the app's workers and
// connects to every one (WithDiscovery); any one worker's address is
// enough, more are tried in turn when one does not answer.
//
// Default: the EDDY_ADDR environment variable (a comma-separated list), else
// DefaultAddr.
func WithAddr(addrs ...string) Option {
	return func(o *options) {
		o.addrs = nil
		for _, a := range addrs {
			o.addrs = append(o.addrs, splitAddrs(a)...)
		}
	}
}

// WithDiscovery sets how often the agent reads the app's list of workers
// again (eddy.v1.LifecycleService/ListWorkers, asked of a worker it knows):
// it connects to workers that joined and stops its sessions with workers
// that left (absent from two lists in a row). The workers are those of the
// app's consumer group, at the addresses they advertise (listen.advertise
// in the app file), which the agent must be able to dial.
//
// Zero turns discovery off: the agent connects to exactly the WithAddr
// addresses. Until a worker answers the list (one that is still starting,
// or too old to know the call), the agent connects to the WithAddr
// addresses and keeps asking.
//
// Default: DefaultDiscovery (5s). It must not be negative.
func WithDiscovery(every time.Duration) Option {
	return func(o *options) { o.discovery = every }
}

// WithToken sets the bearer token the worker requires when it has one
// configured. It is sent both as the gRPC metadata
// "authorization: Bearer <token>" and in Hello.token.
//
// Default: the EDDY_TOKEN environment variable, else no token. An empty token
// means no token.
//
// Without WithTLS the token crosses the network in clear text, which is only
// safe on loopback (the worker's default listen address).
func WithToken(token string) Option {
	return func(o *options) { o.token = token }
}

// WithTLS connects with TLS using cfg. When cfg.ServerName is empty, the host
// of the address is used. A nil cfg means plaintext.
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
// requires. Under mutual TLS the certificate's subject is the identity
// that holds this agent's instance id (docs/operations.md#security). New
// reads the files and reports one it cannot use, naming it. TLS 1.2 at
// least. It cannot be combined with WithTLS.
//
// Default: plaintext.
func WithTLSFiles(caFile, certFile, keyFile string) Option {
	return func(o *options) { o.tlsFiles = &tlsfiles.Files{CAFile: caFile, CertFile: certFile, KeyFile: keyFile} }
}

// WithInstanceID sets the id this process presents to the worker. The worker
// uses it to give an instance back its partitions when it reconnects, so it
// must be unique among the running instances of the agent. Set it to
// something stable across restarts (a pod name, for example) to keep
// partitions sticky across restarts too.
//
// Default: "<hostname>-<pid>-<random>", chosen once by New and kept for the
// life of the Agent (so reconnects keep it, restarts do not).
func WithInstanceID(id string) Option {
	return func(o *options) { o.instanceID, o.instanceIDSet = id, true }
}

// WithCredit sets the flow-control window: the worker never has more than
// events events, or more than bytes key+value bytes, delivered to this
// instance and not yet finished. Credit is given back to the worker as events
// finish, in chunks of half the window (see docs/protocol.md).
//
// Default: DefaultCreditEvents (1000) events and DefaultCreditBytes (8 MiB).
// events must be 1..4294967295 and bytes positive. A larger window buffers
// more events per instance, which helps throughput with slow handlers and
// costs memory; keep bytes above the largest record the agent will receive.
func WithCredit(events int, bytes int64) Option {
	return func(o *options) { o.creditEvents, o.creditBytes = events, bytes }
}

// WithLogger sets the logger for connection lifecycle (Info), reconnects and
// protocol anomalies (Warn), handler panics (Error) and per-batch detail
// (Debug). Records carry the keys "agent", "instance", "topic", "partition",
// "offset", "epoch" and "err" where they apply.
//
// Default: logs are discarded. A nil logger also discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l == nil {
			l = slog.New(slog.DiscardHandler)
		}
		o.logger = l
	}
}

// WithDrainTimeout bounds how long a graceful stop (the context given to Run
// is cancelled) waits for events in progress to finish. Events still running
// at the end get their context cancelled and their results are not sent: the
// worker delivers them again.
//
// Default: DefaultDrainTimeout (10s). Zero means do not wait. It must not be
// negative.
func WithDrainTimeout(d time.Duration) Option {
	return func(o *options) { o.drainTimeout = d }
}

// WithBackoff bounds the delay between reconnection attempts: it starts at
// minDelay, doubles on each failed attempt up to maxDelay, is randomised by
// ±20% (jitter) and goes back to minDelay once a session is established.
//
// Default: DefaultBackoffMin (100ms) to DefaultBackoffMax (5s). Both must be
// positive and minDelay must not exceed maxDelay.
func WithBackoff(minDelay, maxDelay time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = minDelay, maxDelay }
}

// WithOnCommitted sets a function called when the worker reports that the
// events of a partition below offset are done and durable in Kafka (a
// Committed notice). It is informational: nothing needs to be done with it.
// It is called on the goroutine that receives from the worker, one call at a
// time, so it must return quickly.
//
// Default: none.
func WithOnCommitted(fn func(topic string, partition int32, offset int64)) Option {
	return func(o *options) { o.onCommitted = fn }
}

// WithConcurrency bounds how many events are processed at the same time
// across all partitions of this instance. Events of one partition are always
// processed one at a time, in offset order, whatever the value.
//
// Default: 0, no bound beyond one event per assigned partition. It must not
// be negative.
func WithConcurrency(n int) Option {
	return func(o *options) { o.concurrency = n }
}

// validate rejects option values that cannot work, naming the option. All
// problems are reported at once.
func (o *options) validate() error {
	var errs []error
	if o.app == "" {
		errs = append(errs, errors.New("WithApp: the app name is empty: pass WithApp or set "+EnvApp))
	} else if !printable(o.app) {
		errs = append(errs, fmt.Errorf("WithApp: %q contains whitespace or non-printable characters", o.app))
	}
	if len(o.addrs) == 0 {
		errs = append(errs, errors.New("WithAddr: no worker address"))
	}
	for _, addr := range o.addrs {
		if err := grpcconn.ValidateAddr(addr); err != nil {
			errs = append(errs, fmt.Errorf("WithAddr: %w", err))
		}
	}
	if o.discovery < 0 {
		errs = append(errs, fmt.Errorf("WithDiscovery: %v is negative", o.discovery))
	}
	if !printable(o.token) {
		// Header values must be visible ASCII; anything else is a paste
		// mistake (a trailing newline, typically) that gRPC would reject with
		// a less helpful message.
		errs = append(errs, errors.New("WithToken: token contains whitespace or non-printable characters"))
	}
	if o.instanceIDSet && o.instanceID == "" {
		errs = append(errs, errors.New("WithInstanceID: id is empty"))
	} else if !printable(o.instanceID) {
		errs = append(errs, fmt.Errorf("WithInstanceID: %q contains whitespace or non-printable characters", o.instanceID))
	}
	if o.tlsFiles != nil {
		if o.tlsConfig != nil {
			errs = append(errs, errors.New("WithTLS and WithTLSFiles exclude each other: give one TLS configuration"))
		} else if cfg, err := o.tlsFiles.Config("WithTLSFiles"); err != nil {
			errs = append(errs, err)
		} else {
			o.tlsConfig = cfg
		}
	}
	if o.creditEvents < 1 || int64(o.creditEvents) > math.MaxUint32 {
		errs = append(errs, fmt.Errorf("WithCredit: events %d is not in 1..%d", o.creditEvents, uint32(math.MaxUint32)))
	}
	if o.creditBytes < 1 {
		errs = append(errs, fmt.Errorf("WithCredit: bytes %d is not positive", o.creditBytes))
	}
	if o.drainTimeout < 0 {
		errs = append(errs, fmt.Errorf("WithDrainTimeout: %v is negative", o.drainTimeout))
	}
	switch {
	case o.backoffMin <= 0 || o.backoffMax <= 0:
		errs = append(errs, fmt.Errorf("WithBackoff: %v and %v must both be positive", o.backoffMin, o.backoffMax))
	case o.backoffMin > o.backoffMax:
		errs = append(errs, fmt.Errorf("WithBackoff: minimum %v exceeds maximum %v", o.backoffMin, o.backoffMax))
	}
	if o.concurrency < 0 {
		errs = append(errs, fmt.Errorf("WithConcurrency: %d is negative", o.concurrency))
	}
	return errors.Join(errs...)
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return false
		}
	}
	return true
}

// splitAddrs splits a comma-separated list of addresses, dropping
// surrounding spaces; an empty entry is kept, for validate to name.
func splitAddrs(list string) []string {
	var out []string
	for a := range strings.SplitSeq(list, ",") {
		out = append(out, strings.TrimSpace(a))
	}
	return out
}

// defaultInstanceID is "<hostname>-<pid>-<random>".
func defaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "agent"
	}
	// Keep it a valid header-ish token: hostnames are, but be safe.
	host = strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e {
			return '_'
		}
		return r
	}, host)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), randomHex(3))
}
