package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

const (
	// maxResultsPerMessage bounds the results of one Results message.
	maxResultsPerMessage = 500
	// resultsFlushInterval bounds how long a partition keeps results
	// unsent: the worker's processing_timeout counts from a partition's
	// previous results, so a slow handler with a deep queue must not look
	// hung (docs/protocol.md#events-and-results). Results arriving faster
	// are still batched: about one message per interval, besides the count
	// and empty-queue flushes.
	resultsFlushInterval = 100 * time.Millisecond
	// resultsBudgetBytes is the size a Results message is split at, well
	// under gRPC's default 4 MiB limit.
	resultsBudgetBytes = 1 << 20
	// defaultMaxMessageBytes is the worker's limit when Welcome gives none:
	// gRPC's default.
	defaultMaxMessageBytes = 4 << 20
	// maxRecvMessageBytes is what the SDK accepts from the worker; the
	// worker keeps batches far below it.
	maxRecvMessageBytes = 16 << 20
	// handshakeTimeout bounds the wait for Welcome.
	handshakeTimeout = 30 * time.Second
	// closeTimeout bounds the wait for the worker to end the stream after a
	// graceful stop has closed the agent's side.
	closeTimeout = 5 * time.Second
)

// errWorkerEnded is the reason of a session the worker ended without an
// error status. It is not permanent: Run reconnects.
var errWorkerEnded = errors.New("the worker ended the session")

// errSendClosed is returned by send once the session stopped sending.
var errSendClosed = errors.New("session closed")

type tp struct {
	topic     string
	partition int32
}

// session is one Connect stream. The receive goroutine dispatches the
// worker's messages; each assigned partition has a goroutine processing its
// events; revocations wait in goroutines of their own. Any of them may send,
// one at a time under sendMu.
type session struct {
	a    *Agent
	addr string // the worker's
	log  *slog.Logger

	stream         grpc.BidiStreamingClient[eddyv1.ConnectRequest, eddyv1.ConnectResponse]
	cancelStream   context.CancelFunc
	handlerCtx     context.Context // parent of the partitions' handler contexts
	cancelHandlers context.CancelFunc
	closing        chan struct{} // closed when the session ends: waits stop

	// Set from Welcome, before any event arrives; read-only after.
	id             string
	maxResultBytes int
	budgetBytes    int

	sendMu     sync.Mutex
	sendClosed bool

	mu       sync.Mutex
	parts    map[tp]*partition // latest partition object per topic-partition
	stopping bool              // take no new partitions
	ended    bool              // start no goroutines
	wg       sync.WaitGroup    // partition and revoke goroutines

	creditMu    sync.Mutex
	held        int   // events received and not finished
	doneEvents  int64 // finished events whose credit is not yet returned
	doneBytes   int64
	outEvents   int64 // credit in use from the worker's point of view
	outBytes    int64
	overshotLog bool

	getMu   sync.Mutex
	getSeq  uint64
	getWait map[uint64]chan *eddyv1.StateReply // StateGets waiting for their reply
}

func newSession(a *Agent, addr string) *session {
	return &session{
		a:              a,
		addr:           addr,
		log:            a.log.With("addr", addr),
		closing:        make(chan struct{}),
		parts:          map[tp]*partition{},
		maxResultBytes: defaultMaxMessageBytes - 1024,
		budgetBytes:    resultsBudgetBytes,
	}
}

// run opens the stream, says Hello, waits for Welcome and serves the session
// until the stream ends (returned as the error) or ctx is cancelled (a
// graceful stop: nil). established reports whether Welcome came.
func (s *session) run(ctx context.Context, client eddyv1.AgentServiceClient) (established bool, err error) {
	// The stream and the handlers outlive ctx during a graceful stop, so
	// they get contexts of their own that keep ctx's values.
	streamCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	s.cancelStream = cancel
	s.handlerCtx, s.cancelHandlers = context.WithCancel(context.WithoutCancel(ctx))
	defer s.cancelHandlers()

	token := s.a.opts.token
	if token != "" {
		streamCtx = metadata.AppendToOutgoingContext(streamCtx, "authorization", "Bearer "+token)
	}
	stream, err := client.Connect(streamCtx)
	if err != nil {
		return false, err
	}
	s.stream = stream
	hello := &eddyv1.Hello{
		App:             s.a.opts.app,
		Agent:           s.a.name,
		InstanceId:      s.a.instance,
		ProtocolVersion: ProtocolVersion,
		Credit:          &eddyv1.Credit{Events: uint32(s.a.opts.creditEvents), Bytes: uint64(s.a.opts.creditBytes)},
		Token:           token,
	}
	if err := s.send(&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Hello{Hello: hello}}); err != nil {
		// A failed Send says only io.EOF; the reason comes from Recv.
		if _, rerr := stream.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
			return false, rerr
		}
		return false, fmt.Errorf("send Hello: %w", err)
	}

	welcomed := make(chan struct{})
	recvDone := make(chan error, 1)
	go func() { recvDone <- s.receive(welcomed) }()

	timer := time.NewTimer(handshakeTimeout)
	defer timer.Stop()
	select {
	case <-welcomed:
	case err := <-recvDone:
		s.abort()
		select {
		case <-welcomed:
			established = true
		default:
		}
		return established, err
	case <-timer.C:
		cancel()
		<-recvDone
		s.abort()
		return false, fmt.Errorf("no Welcome from the worker within %v", handshakeTimeout)
	case <-ctx.Done():
		cancel()
		<-recvDone
		s.abort()
		return false, nil
	}

	s.a.sessionUp(s.addr, s.id)
	defer s.a.sessionDown(s.addr)

	select {
	case err := <-recvDone:
		s.abort()
		s.log.Info("session with the worker ended", "session", s.id, "err", err)
		return true, err
	case <-ctx.Done():
		s.drain(recvDone)
		return true, nil
	}
}

// receive reads the stream until it ends: first Welcome (then closes
// welcomed), then anything. It returns why the stream ended.
func (s *session) receive(welcomed chan<- struct{}) error {
	first, err := s.stream.Recv()
	if err != nil {
		return recvErr(err)
	}
	w := first.GetWelcome()
	if w == nil {
		return fmt.Errorf("protocol: the worker's first message is %T, want Welcome", first.GetMsg())
	}
	s.welcome(w)
	close(welcomed)
	for {
		m, err := s.stream.Recv()
		if err != nil {
			return recvErr(err)
		}
		s.dispatch(m)
	}
}

func recvErr(err error) error {
	if errors.Is(err, io.EOF) {
		return errWorkerEnded
	}
	return err
}

func (s *session) welcome(w *eddyv1.Welcome) {
	s.id = w.GetSessionId()
	limit := defaultMaxMessageBytes
	if l := int(w.GetLimits().GetMaxMessageBytes()); l > 0 {
		limit = l
	}
	// Room for the Results envelope (topic, partition, epoch, tags) around
	// a single result.
	s.maxResultBytes = max(limit-1024, limit/2)
	s.budgetBytes = min(resultsBudgetBytes, limit/2)
	s.log.Info("connected to the worker", "session", s.id,
		"max_message_bytes", w.GetLimits().GetMaxMessageBytes(), "max_retries", w.GetLimits().GetMaxRetries())
}

func (s *session) dispatch(m *eddyv1.ConnectResponse) {
	switch msg := m.GetMsg().(type) {
	case *eddyv1.ConnectResponse_EventBatch:
		s.events(msg.EventBatch)
	case *eddyv1.ConnectResponse_Assign:
		s.assign(msg.Assign)
	case *eddyv1.ConnectResponse_Revoke:
		s.revoke(msg.Revoke)
	case *eddyv1.ConnectResponse_Committed:
		s.committed(msg.Committed)
	case *eddyv1.ConnectResponse_StateReply:
		s.stateReply(msg.StateReply)
	case *eddyv1.ConnectResponse_Welcome:
		s.log.Warn("ignoring a second Welcome from the worker", "session", s.id)
	default:
		// A newer worker may send messages this SDK does not know.
		s.log.Debug("ignoring an unknown message from the worker", "type", fmt.Sprintf("%T", m.GetMsg()))
	}
}

func (s *session) assign(m *eddyv1.Assign) {
	key := tp{m.GetTopic(), m.GetPartition()}
	epoch := m.GetEpoch()
	log := s.log.With("topic", key.topic, "partition", key.partition, "epoch", epoch)
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		log.Debug("ignoring Assign: stopping")
		return
	}
	old := s.parts[key]
	switch {
	case old != nil && epoch < old.epoch:
		s.mu.Unlock()
		log.Warn("ignoring Assign older than the current assignment", "current_epoch", old.epoch)
		return
	case old != nil && epoch == old.epoch:
		s.mu.Unlock()
		log.Debug("duplicate Assign; acknowledging again")
		s.sendAssignAck(m)
		return
	}
	var droppedEvents int
	var droppedBytes int64
	if old != nil {
		// A newer epoch without a Revoke first: the old assignment is over.
		// Its event in progress may finish; the new one waits for it.
		droppedEvents, droppedBytes = old.halt()
	}
	p := newPartition(s, key, epoch, old)
	s.parts[key] = p
	s.wg.Add(1)
	go p.run()
	if old != nil {
		// Bound the old assignment's event in progress as a Revoke would.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if !old.finish(time.Now().Add(s.a.opts.drainTimeout), s.closing) {
				old.abandon(true)
			}
		}()
	}
	s.mu.Unlock()

	s.finished(droppedEvents, droppedBytes)
	s.sendAssignAck(m)
	log.Info("partition assigned")
}

func (s *session) sendAssignAck(m *eddyv1.Assign) {
	s.sendLogged(&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_AssignAck{AssignAck: &eddyv1.AssignAck{
		Topic: m.GetTopic(), Partition: m.GetPartition(), Epoch: m.GetEpoch(),
	}}})
}

func (s *session) revoke(m *eddyv1.Revoke) {
	key := tp{m.GetTopic(), m.GetPartition()}
	log := s.log.With("topic", key.topic, "partition", key.partition, "epoch", m.GetEpoch())
	ack := func() {
		s.sendLogged(&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_RevokeAck{RevokeAck: &eddyv1.RevokeAck{
			Topic: m.GetTopic(), Partition: m.GetPartition(), Epoch: m.GetEpoch(),
		}}})
	}
	deadline := time.Now().Add(s.a.opts.drainTimeout)
	if d := m.GetDeadline(); d != nil {
		deadline = d.AsTime()
	}

	s.mu.Lock()
	p := s.parts[key]
	if p == nil || p.epoch > m.GetEpoch() || s.ended {
		// Nothing held for that epoch (never assigned, already revoked, or
		// superseded): acknowledging is all there is to do.
		s.mu.Unlock()
		log.Debug("Revoke for no current work; acknowledging")
		ack()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()

	dropped, droppedBytes := p.halt()
	s.finished(dropped, droppedBytes)
	log.Info("partition revoked", "dropped", dropped, "deadline", deadline)
	go func() {
		defer s.wg.Done()
		if !p.finish(deadline, s.closing) {
			p.abandon(true)
			log.Warn("the event in progress did not finish before the revoke deadline; its result is not sent")
		}
		ack()
		s.mu.Lock()
		if s.parts[key] == p {
			delete(s.parts, key)
		}
		s.mu.Unlock()
	}()
}

func (s *session) events(b *eddyv1.EventBatch) {
	key := tp{b.GetTopic(), b.GetPartition()}
	n := len(b.GetEvents())
	var bytes int64
	for _, e := range b.GetEvents() {
		bytes += eventBytes(e)
	}
	s.received(n, bytes)
	s.mu.Lock()
	p := s.parts[key]
	s.mu.Unlock()
	if p == nil || p.epoch != b.GetEpoch() || !p.enqueue(b.GetEvents()) {
		// Events of a partition not (or no longer) assigned under that
		// epoch: the worker delivers them again to the owner. Their credit
		// comes back all the same.
		s.log.Debug("dropping events of a partition not assigned under their epoch",
			"topic", key.topic, "partition", key.partition, "epoch", b.GetEpoch(), "events", n)
		s.finished(n, bytes)
		return
	}
	s.log.Debug("events received", "topic", key.topic, "partition", key.partition, "epoch", b.GetEpoch(), "events", n)
}

func (s *session) committed(c *eddyv1.Committed) {
	s.log.Debug("committed", "topic", c.GetTopic(), "partition", c.GetPartition(), "offset", c.GetOffset())
	fn := s.a.opts.onCommitted
	if fn == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("WithOnCommitted callback panicked", "err", fmt.Errorf("panic: %v", r))
		}
	}()
	fn(c.GetTopic(), c.GetPartition(), c.GetOffset())
}

// received accounts for events from the worker.
func (s *session) received(n int, bytes int64) {
	s.creditMu.Lock()
	defer s.creditMu.Unlock()
	s.held += n
	s.outEvents += int64(n)
	s.outBytes += bytes
	if !s.overshotLog && (s.outEvents > int64(s.a.opts.creditEvents) || s.outBytes > s.a.opts.creditBytes) {
		s.overshotLog = true
		s.log.Warn("the worker sent more than the credit allows (reported once per session)",
			"events", s.outEvents, "credit_events", s.a.opts.creditEvents, "bytes", s.outBytes, "credit_bytes", s.a.opts.creditBytes)
	}
}

// finished accounts for events the agent no longer holds (results sent,
// or dropped), and gives their credit back once half of either window is
// done, or when nothing is held any more. The latter keeps a worker from
// waiting forever for byte credit when single events are larger than half
// the byte window.
func (s *session) finished(n int, bytes int64) {
	if n == 0 && bytes == 0 {
		return
	}
	s.creditMu.Lock()
	s.held -= n
	s.doneEvents += int64(n)
	s.doneBytes += bytes
	if s.doneEvents*2 < int64(s.a.opts.creditEvents) && s.doneBytes*2 < s.a.opts.creditBytes && s.held > 0 {
		s.creditMu.Unlock()
		return
	}
	c := &eddyv1.Credit{Events: uint32(s.doneEvents), Bytes: uint64(s.doneBytes)}
	s.outEvents -= s.doneEvents
	s.outBytes -= s.doneBytes
	s.doneEvents, s.doneBytes = 0, 0
	s.creditMu.Unlock()

	s.mu.Lock()
	stopping := s.stopping
	s.mu.Unlock()
	if stopping {
		return // more events would only be dropped
	}
	s.log.Debug("returning credit", "events", c.GetEvents(), "bytes", c.GetBytes())
	s.sendLogged(&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Credit{Credit: c}})
}

// sendResults sends results of one partition, split into messages under the
// size budget, in order.
func (s *session) sendResults(key tp, epoch uint64, results []*eddyv1.Result) {
	start, size := 0, 0
	for i, r := range results {
		rs := proto.Size(r) + 8 // field tag and length prefix
		if i > start && size+rs > s.budgetBytes {
			s.sendResultsMsg(key, epoch, results[start:i])
			start, size = i, 0
		}
		size += rs
	}
	s.sendResultsMsg(key, epoch, results[start:])
}

func (s *session) sendResultsMsg(key tp, epoch uint64, results []*eddyv1.Result) {
	if len(results) == 0 {
		return
	}
	s.log.Debug("sending results", "topic", key.topic, "partition", key.partition, "epoch", epoch, "results", len(results))
	s.sendLogged(&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Results{Results: &eddyv1.Results{
		Topic: key.topic, Partition: key.partition, Epoch: epoch, Results: results,
	}}})
}

// send sends m unless the session stopped sending. Safe for concurrent use.
func (s *session) send(m *eddyv1.ConnectRequest) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.sendClosed {
		return errSendClosed
	}
	return s.stream.Send(m)
}

// sendLogged sends m; a failure means the stream is gone, which the receive
// goroutine reports, so it is only logged.
func (s *session) sendLogged(m *eddyv1.ConnectRequest) {
	if err := s.send(m); err != nil && !errors.Is(err, errSendClosed) {
		s.log.Debug("send to the worker failed; the session is ending", "err", err)
	}
}

// stopAll makes the session take no new partitions, halts every partition
// (dropping queued events) and returns them.
func (s *session) stopAll() []*partition {
	s.mu.Lock()
	s.stopping = true
	parts := make([]*partition, 0, len(s.parts))
	for _, p := range s.parts {
		parts = append(parts, p)
	}
	s.mu.Unlock()
	for _, p := range parts {
		p.halt()
	}
	return parts
}

// drain is the graceful stop of a live session; see Agent.Run.
func (s *session) drain(recvDone <-chan error) {
	parts := s.stopAll()
	s.log.Info("stopping: finishing events in progress", "session", s.id, "partitions", len(parts),
		"drain_timeout", s.a.opts.drainTimeout)
	deadline := time.Now().Add(s.a.opts.drainTimeout)
	for _, p := range parts {
		if !p.finish(deadline, nil) {
			// No wait for a send in progress: CloseSend below is bounded,
			// a wait here would not be.
			p.abandon(false)
			s.log.Warn("events still in progress at the drain timeout; their results are not sent",
				"topic", p.key.topic, "partition", p.key.partition, "epoch", p.epoch)
		}
	}
	// Half-close: the worker sees the end of the agent's messages and ends
	// the session. CloseSend may wait behind a Send stuck on flow control,
	// hence the bound.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		s.sendMu.Lock()
		defer s.sendMu.Unlock()
		s.sendClosed = true
		_ = s.stream.CloseSend()
	}()
	timer := time.NewTimer(closeTimeout)
	defer timer.Stop()
	select {
	case <-closed:
		select {
		case err := <-recvDone:
			s.log.Debug("the worker ended the session", "err", err)
		case <-timer.C:
			s.log.Warn("the worker did not end the session in time; closing", "timeout", closeTimeout)
			s.cancelStream()
			<-recvDone
		}
	case <-timer.C:
		s.log.Warn("could not close the stream in time; closing", "timeout", closeTimeout)
		s.cancelStream()
		<-recvDone
	}
	// Handlers had their time: wait only for what is left of it.
	s.end(max(0, time.Until(deadline)))
	s.log.Info("session closed", "session", s.id)
}

// abort ends a session whose stream is gone: nothing can be sent, every
// partition is dropped (the worker reassigns them with new epochs) and
// handlers in progress are cancelled.
func (s *session) abort() {
	s.cancelStream()
	s.sendMu.Lock()
	s.sendClosed = true
	s.sendMu.Unlock()
	for _, p := range s.stopAll() {
		p.abandon(true) // sends fail fast: the stream is cancelled
	}
	s.end(s.a.opts.drainTimeout)
}

// end cancels every handler, stops starting goroutines and waits for the
// running ones, up to wait: a handler that ignores its context cannot be
// stopped.
func (s *session) end(wait time.Duration) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.mu.Unlock()
	close(s.closing)
	s.cancelHandlers()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		s.log.Warn("handlers still running after the session ended; they ignore their context",
			"session", s.id)
	}
}

// errStateGetEnded is returned by a StateGet whose session ended first.
var errStateGetEnded = errors.New("state get: the session with the worker ended before the reply")

// stateGet sends a StateGet with a fresh request id and waits for its
// StateReply (routed by stateReply), for ctx or for the session's end.
func (s *session) stateGet(ctx context.Context, topic string, partition int32, epoch uint64, table string, key []byte) ([]byte, bool, error) {
	ch := make(chan *eddyv1.StateReply, 1)
	s.getMu.Lock()
	s.getSeq++
	id := s.getSeq
	if s.getWait == nil {
		s.getWait = map[uint64]chan *eddyv1.StateReply{}
	}
	s.getWait[id] = ch
	s.getMu.Unlock()
	defer func() {
		s.getMu.Lock()
		delete(s.getWait, id)
		s.getMu.Unlock()
	}()
	err := s.send(&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_StateGet{StateGet: &eddyv1.StateGet{
		RequestId: id, Topic: topic, Partition: partition, Epoch: epoch, Table: table, Key: key,
	}}})
	if err != nil {
		return nil, false, fmt.Errorf("state get: send: %w", err)
	}
	select {
	case r := <-ch:
		if e := r.GetError(); e != "" {
			return nil, false, fmt.Errorf("state get: table %q: %s", table, e)
		}
		return r.GetValue(), r.GetHasValue(), nil
	case <-ctx.Done():
		return nil, false, ctx.Err()
	case <-s.closing:
		return nil, false, errStateGetEnded
	}
}

// stateReply hands a StateReply to the StateGet waiting for it; a reply
// nobody waits for (its caller gave up) is dropped.
func (s *session) stateReply(r *eddyv1.StateReply) {
	s.getMu.Lock()
	ch := s.getWait[r.GetRequestId()]
	delete(s.getWait, r.GetRequestId())
	s.getMu.Unlock()
	if ch == nil {
		s.log.Debug("ignoring a StateReply nobody waits for", "request_id", r.GetRequestId())
		return
	}
	ch <- r // buffered, one reply per id
}

func eventBytes(e *eddyv1.Event) int64 { return int64(len(e.GetKey()) + len(e.GetValue())) }
