// Package agent is the Go SDK for writing eddy agents: the user's processing
// functions, run in their own process and connected to every worker of the
// app over the agent protocol (eddy.v1.AgentService/Connect, see
// docs/protocol.md); given any one worker's address, it finds the others
// (docs/agents.md, "Several workers").
//
// The worker owns everything Kafka: it consumes the agent's topics, delivers
// events, produces what the agent emits, dead-letters what it rejects and
// commits offsets. An agent is a function from an event to an outcome:
//
//	a, err := agent.New("router", func(ctx context.Context, ev *agent.Event) error {
//		ev.Emit("orders-eu", ev.Key, ev.Value)
//		return nil // OK; agent.Retry(err) or agent.DeadLetter(err) otherwise
//	})
//	if err != nil { ... }
//	err = a.Run(ctx) // until ctx is cancelled; reconnects on its own
//
// Events of one partition are handled one at a time, in offset order; events
// of different partitions concurrently. A disconnect is not a failure: Run
// reconnects with backoff under the same instance id and the worker delivers
// again every event whose result it did not get. Handlers must therefore be
// safe to run more than once for the same event (at-least-once).
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	mathrand "math/rand/v2"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/internal/grpcconn"
	"github.com/eddy-streams/eddy/internal/tlsfiles"
)

// ProtocolVersion is the agent protocol version this SDK speaks; it is sent
// in Hello.
const ProtocolVersion = 1

// Handler processes one event. Its returned error decides the outcome:
//
//   - nil: OK; the records emitted with ev.Emit are produced.
//   - an error from DeadLetter: DEAD_LETTER; the event goes to the agent's
//     dead-letter topic with the error text, and processing moves on.
//   - an error from Retry, or any other error: RETRY; the event is delivered
//     again after a backoff, then dead-lettered after the worker's maximum of
//     retries.
//
// A panic is recovered, logged and becomes RETRY with the error
// "panic: <value>". Records emitted before a non-OK outcome are discarded.
//
// ctx is cancelled when the event's result can no longer be used: the
// partition was revoked and its deadline is near, the session to the worker
// was lost, or a graceful stop ran out of its drain timeout. It carries the
// values of the context given to Run but not its cancellation: a graceful
// stop lets events in progress finish.
//
// Handlers of different partitions run concurrently; a handler is never
// called concurrently for the same partition.
type Handler func(ctx context.Context, ev *Event) error

// Agent is one agent instance: it connects to every worker of the app,
// receives the partitions the workers give it and runs the handler on their
// events. Create it with New and start it with Run. Its methods are safe for
// concurrent use.
type Agent struct {
	name     string
	handler  Handler
	opts     options
	instance string
	log      *slog.Logger
	sem      chan struct{} // nil: no WithConcurrency bound

	started atomic.Bool

	mu       sync.Mutex
	sessions map[string]string // worker address -> id of the live session there
	// reached is the worker id each live connection's worker gave
	// (identify), by address as dialled; absent when it gave none.
	reached map[string]string
}

// New returns an agent named name (an agent declared in the worker's app
// file) that runs handler on its events. It checks the options and returns
// every problem at once; it does not connect: Run does.
func New(name string, handler Handler, opts ...Option) (*Agent, error) {
	var errs []error
	if name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if handler == nil {
		errs = append(errs, errors.New("handler is nil"))
	}
	o := defaultOptions(os.Getenv)
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("agent.New: %w", err)
	}
	a := &Agent{name: name, handler: handler, opts: o, instance: o.instanceID, sessions: map[string]string{}, reached: map[string]string{}}
	if !o.instanceIDSet {
		a.instance = defaultInstanceID()
	}
	a.log = o.logger.With("agent", name, "instance", a.instance)
	if o.concurrency > 0 {
		a.sem = make(chan struct{}, o.concurrency)
	}
	return a, nil
}

// Name returns the agent name given to New.
func (a *Agent) Name() string { return a.name }

// InstanceID returns the instance id sent to the workers: the one from
// WithInstanceID, or the one New chose. It does not change during the life
// of the Agent, and is the same at every worker.
func (a *Agent) InstanceID() string { return a.instance }

// Connected reports whether the agent currently has a session with at least
// one worker (the worker answered Hello with Welcome and the stream is up).
// For readiness probes and tests.
func (a *Agent) Connected() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.sessions) > 0
}

// SessionID returns the id of a current session as given by the worker
// (also shown by "workerctl agents"), or "" when not connected. With
// sessions at several workers it is the one at the lowest address; Sessions
// lists them all.
func (a *Agent) SessionID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var addr, id string
	for ad, sid := range a.sessions {
		if addr == "" || ad < addr {
			addr, id = ad, sid
		}
	}
	return id
}

// Sessions returns the live sessions: worker address (as dialled) to
// session id. It is a copy.
func (a *Agent) Sessions() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.sessions)
}

// connected reports whether a session with the worker at addr is up.
func (a *Agent) connected(addr string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.sessions[addr]
	return ok
}

// reachedAt is the id of the worker the connection at addr reached, ""
// unknown (no connection, or a worker that does not list workers).
func (a *Agent) reachedAt(addr string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reached[addr]
}

func (a *Agent) setReached(addr, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if id == "" {
		delete(a.reached, addr)
	} else {
		a.reached[addr] = id
	}
}

func (a *Agent) sessionUp(addr, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sessions[addr] = id
}

func (a *Agent) sessionDown(addr string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.sessions, addr)
}

// Run connects to every worker of the app and processes events until ctx
// is cancelled. The workers are found from the addresses of WithAddr: one of
// them lists the app's workers with their advertised addresses
// (eddy.v1.LifecycleService/ListWorkers), and the list is read again every
// WithDiscovery interval, so the agent follows workers that join and leave
// (docs/agents.md, "Several workers"). Each worker gets a session of its
// own, under the same instance id, reconnected with exponential backoff
// (WithBackoff) whenever the connection or the session is lost.
//
// It returns nil after a graceful stop, and an error without reconnecting
// when a worker refuses the agent for a reason reconnecting cannot fix: a
// *RejectedError wrapping ErrUnknownAgent, ErrUnauthenticated,
// ErrProtocolVersion, ErrProtocolViolation or ErrNotSupported (the sessions
// at the other workers are then stopped gracefully). Run may be called once;
// a second call returns ErrAlreadyStarted.
//
// When ctx is cancelled, each session stops in this order:
//
//  1. It takes no new work: partitions assigned from then on are ignored and
//     events not yet started are dropped (the worker delivers them again).
//  2. It waits for events in progress to finish, up to WithDrainTimeout, and
//     sends their results. Handlers still running then have their context
//     cancelled and their results are not sent.
//  3. It closes its side of the stream and waits, up to 5s, for the worker
//     to end the session.
//  4. It closes the connection.
//
// Run returns nil once every session has stopped. A worker that leaves the
// app's list has its session stopped the same way.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return ErrAlreadyStarted
	}
	a.log.Info("agent starting", "addrs", a.opts.addrs, "discovery", a.opts.discovery)
	err := newWorkers(a).run(ctx)
	a.log.Info("agent stopped")
	return err
}

// runLink runs the sessions with the worker at addr until ctx is cancelled
// (nil) or the worker rejects the agent (the *RejectedError).
func (a *Agent) runLink(ctx context.Context, addr string, expected func() string) error {
	bo := backoff{min: a.opts.backoffMin, max: a.opts.backoffMax}
	for {
		if ctx.Err() != nil { // stopped before (or while) connecting
			return nil
		}
		established, err := a.connectOnce(ctx, addr, expected)
		if ctx.Err() != nil {
			// A stop wins over what the worker said meanwhile: the
			// session's stream does not end with ctx (it drains), so a
			// rejection can still arrive after the caller stopped.
			return nil
		}
		if rej := a.rejection(addr, err); rej != nil {
			a.log.Error("the worker rejected the agent; not reconnecting", "addr", addr, "err", rej)
			return rej
		}
		if established {
			bo.reset()
		}
		delay := bo.next()
		a.log.Warn("not connected to the worker; reconnecting", "addr", addr, "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// dial opens a connection to the worker at addr.
func (a *Agent) dial(addr string) (*grpc.ClientConn, error) {
	conn, _, err := a.dialRecorded(addr)
	return conn, err
}

// dialRecorded is dial, also returning the recorder of TLS handshake
// failures (nil without TLS).
func (a *Agent) dialRecorded(addr string) (*grpc.ClientConn, *tlsfiles.Recorder, error) {
	// The recorder keeps the TLS failure that gRPC would reduce to
	// UNAVAILABLE, so the reconnect log names the certificate problem.
	creds, rec := grpcconn.Credentials(a.opts.tlsConfig)
	// passthrough hands the address to the dialer unresolved, as
	// client/admin does.
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMessageBytes)),
		// Pings find a worker that vanished without closing the connection
		// (a crashed host, a dropped network). 30s is above the worker's
		// keepalive enforcement minimum (10s), which would otherwise end the
		// connection for pinging too often.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to worker at %s: %w", addr, err)
	}
	return conn, rec, nil
}

// connectOnce runs one session on a fresh connection. It returns whether the
// worker welcomed the agent, and why the session ended: nil after a graceful
// stop, else the error as received (a gRPC status error when the worker
// ended the stream), so that rejection can classify it.
func (a *Agent) connectOnce(ctx context.Context, addr string, expected func() string) (established bool, err error) {
	// A connection per session: the reconnection backoff is then ours alone
	// (grpc's own would add up to two minutes), and a session never inherits
	// a half-broken transport.
	conn, rec, err := a.dialRecorded(addr)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	// Which worker this connection reached, asked on the connection
	// itself: an address of WithAddr may be a load balancer, whose next
	// connection reaches another worker (discovery matches links to
	// workers by it, workers.go).
	reached := a.identify(ctx, conn)
	if want := expected(); reached != "" && want != "" && reached != want {
		// A load balancer sent this connection to another worker than
		// the link's: a Hello there could make a second session of this
		// instance at that worker. Try again (discovery moves the link).
		return false, fmt.Errorf("the connection to %s reached worker %s, not %s", addr, reached, want)
	}
	a.setReached(addr, reached)
	defer a.setReached(addr, "")
	s := newSession(a, addr)
	established, err = s.run(ctx, eddyv1.NewAgentServiceClient(conn))
	if rec != nil && !established && status.Code(err) == codes.Unavailable {
		if h := rec.Last(); h != nil {
			err = fmt.Errorf("%w (%w)", h, err)
		}
	}
	return established, err
}

// process runs the handler on one event and builds its result.
func (a *Agent) process(ctx context.Context, s *session, topic string, partition int32, epoch uint64, pe *eddyv1.Event, ov *stateOverlay) *eddyv1.Result {
	ev := newEvent(topic, partition, pe)
	ov.apply(ev)
	ev.get = func(ctx context.Context, table string, key []byte) ([]byte, bool, error) {
		return s.stateGet(ctx, topic, partition, epoch, table, key)
	}
	ev.onLate = func(what string) {
		a.log.Warn(what+" called after the handler returned; ignored", "topic", topic, "partition", partition, "offset", pe.GetOffset())
	}
	err := a.call(ctx, ev)
	produced, mutations, useErr := ev.close()
	if err == nil && useErr != nil {
		err = Retry(useErr)
	}
	st := StatusOf(err)
	res := &eddyv1.Result{Offset: pe.GetOffset(), Status: st.proto()}
	if st == StatusOK {
		res.Produced, res.Mutations = produced, mutations
	} else {
		mutations = nil // not applied: later events must not see them
		res.Error = err.Error()
		a.log.Debug("event not OK", "topic", topic, "partition", partition, "offset", pe.GetOffset(),
			"status", st.String(), "err", err)
	}
	if size := proto.Size(res); size > s.maxResultBytes {
		a.log.Error("result too large for one message to the worker; the event will be retried",
			"topic", topic, "partition", partition, "offset", pe.GetOffset(), "bytes", size, "max_bytes", s.maxResultBytes)
		res = &eddyv1.Result{
			Offset: pe.GetOffset(),
			Status: eddyv1.ResultStatus_RESULT_STATUS_RETRY,
			Error: fmt.Sprintf("result of %d bytes exceeds the %d bytes one message to the worker may carry; emit fewer or smaller records",
				size, s.maxResultBytes),
		}
		mutations = nil
	}
	ov.record(pe.GetKey(), mutations)
	return res
}

// call runs the handler, turning a panic into a RETRY outcome.
func (a *Agent) call(ctx context.Context, ev *Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Retry(fmt.Errorf("panic: %v", r))
			a.log.Error("handler panicked; the event will be retried", "topic", ev.Topic, "partition", ev.Partition,
				"offset", ev.Offset, "err", err, "stack", string(debug.Stack()))
		}
	}()
	return a.handler(ctx, ev)
}

// backoff is exponential with ±20% jitter, capped at max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) reset() { b.cur = 0 }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	d := time.Duration(float64(b.cur) * (0.8 + 0.4*mathrand.Float64()))
	return min(d, b.max)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
