package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/eddy-streams/eddy/client/agent"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/internal/testutil"
)

// waitTimeout bounds every wait of these tests; nothing waits by sleeping.
const waitTimeout = 10 * time.Second

// waitFor is the helper these tests share with other packages
// (internal/testutil).
var waitFor = testutil.WaitFor[string]

// fakeWorker is a fake of the worker's side of eddy.v1.AgentService/Connect,
// served on 127.0.0.1. It records each session and lets the test drive it:
// the test sends Assign, EventBatch, Revoke, ... and inspects what the agent
// sent back. Like the real worker it never sends events beyond the agent's
// credit (a test that tries fails) and ends a session when the agent closes
// its side.
type fakeWorker struct {
	eddyv1.UnsafeAgentServiceServer

	t    testing.TB
	Addr string

	// reject, when set before the agent connects, can refuse a Hello: a
	// non-nil error ends the stream with it instead of Welcome.
	reject func(hello *eddyv1.Hello) error
	limits *eddyv1.Limits

	mu       sync.Mutex
	sessions []*fakeSession
	hellos   int
	srv      *grpc.Server
	// list, when set, answers LifecycleService/ListWorkers (Unimplemented
	// otherwise, as a worker that predates the call).
	list  func() *eddyv1.ListWorkersResponse
	lists int // ListWorkers calls answered
}

// fakeLifecycle serves ListWorkers for a fakeWorker.
type fakeLifecycle struct {
	eddyv1.UnimplementedLifecycleServiceServer
	w *fakeWorker
}

func (l fakeLifecycle) ListWorkers(context.Context, *eddyv1.ListWorkersRequest) (*eddyv1.ListWorkersResponse, error) {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	if l.w.list == nil {
		return nil, status.Error(codes.Unimplemented, "not in the fake")
	}
	l.w.lists++
	return l.w.list(), nil
}

// SetList makes ListWorkers answer with list().
func (w *fakeWorker) SetList(list func() *eddyv1.ListWorkersResponse) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = list
}

// Lists is the number of ListWorkers calls answered.
func (w *fakeWorker) Lists() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lists
}

func startFakeWorker(t testing.TB) *fakeWorker {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	w := &fakeWorker{t: t, Addr: lis.Addr().String(), limits: &eddyv1.Limits{MaxMessageBytes: 4 << 20, MaxRetries: 5}}
	w.srv = grpc.NewServer()
	eddyv1.RegisterAgentServiceServer(w.srv, w)
	eddyv1.RegisterLifecycleServiceServer(w.srv, fakeLifecycle{w: w})
	served := make(chan error, 1)
	go func() { served <- w.srv.Serve(lis) }()
	t.Cleanup(func() {
		w.srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("fake worker: serve: %v", err)
		}
	})
	return w
}

// Stop stops the fake worker's server, closing every connection: a worker
// process that died.
func (w *fakeWorker) Stop() { w.srv.Stop() }

func (w *fakeWorker) ListAgents(context.Context, *eddyv1.ListAgentsRequest) (*eddyv1.ListAgentsResponse, error) {
	return nil, status.Error(codes.Unimplemented, "not in the fake")
}

func (w *fakeWorker) Connect(stream grpc.BidiStreamingServer[eddyv1.ConnectRequest, eddyv1.ConnectResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	w.mu.Lock()
	w.hellos++
	reject := w.reject
	w.mu.Unlock()
	if hello == nil {
		return status.Errorf(codes.InvalidArgument, "first message is %T, want Hello", first.GetMsg())
	}
	if reject != nil {
		if err := reject(hello); err != nil {
			return err
		}
	}
	s := &fakeSession{
		t:            w.t,
		Hello:        hello,
		stream:       stream,
		end:          make(chan error, 1),
		creditEvents: int64(hello.GetCredit().GetEvents()),
		creditBytes:  int64(hello.GetCredit().GetBytes()),
		sent:         map[fakeKey]int{},
	}
	if md, ok := metadata.FromIncomingContext(stream.Context()); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			s.Auth = v[0]
		}
	}
	w.mu.Lock()
	s.ID = fmt.Sprintf("session-%d", len(w.sessions)+1)
	w.mu.Unlock()
	if err := stream.Send(&eddyv1.ConnectResponse{Msg: &eddyv1.ConnectResponse_Welcome{Welcome: &eddyv1.Welcome{
		SessionId: s.ID, Limits: w.limits,
	}}}); err != nil {
		return err
	}
	w.mu.Lock()
	w.sessions = append(w.sessions, s)
	w.mu.Unlock()

	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				s.recvEnded(err)
				return
			}
			s.record(m)
		}
	}()
	select {
	case err := <-s.end:
		return err
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
}

// Hellos is the number of Connect streams opened, rejected ones included.
func (w *fakeWorker) Hellos() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hellos
}

// Sessions returns the welcomed sessions, oldest first.
func (w *fakeWorker) Sessions() []*fakeSession {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.sessions)
}

// session waits for the n-th (from 1) welcomed session.
func (w *fakeWorker) session(t testing.TB, n int) *fakeSession {
	t.Helper()
	waitFor(t, waitTimeout, fmt.Sprintf("session %d", n), func() bool { return len(w.Sessions()) >= n })
	return w.Sessions()[n-1]
}

type fakeKey struct {
	topic     string
	partition int32
}

// fakeSession is one Connect stream seen by the fake worker.
type fakeSession struct {
	t      testing.TB
	ID     string
	Hello  *eddyv1.Hello
	Auth   string // the "authorization" metadata
	stream grpc.BidiStreamingServer[eddyv1.ConnectRequest, eddyv1.ConnectResponse]
	end    chan error

	sendMu sync.Mutex

	mu           sync.Mutex
	msgs         []*eddyv1.ConnectRequest // after Hello, in order
	closedByPeer bool                     // the agent half-closed
	recvErr      error
	creditEvents int64 // balance: granted and not used
	creditBytes  int64
	sent         map[fakeKey]int // events sent per partition
	inFlight     int             // events sent without a result
	maxInFlight  int
}

func (s *fakeSession) record(m *eddyv1.ConnectRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	switch msg := m.GetMsg().(type) {
	case *eddyv1.ConnectRequest_Credit:
		s.creditEvents += int64(msg.Credit.GetEvents())
		s.creditBytes += int64(msg.Credit.GetBytes())
	case *eddyv1.ConnectRequest_Results:
		s.inFlight -= len(msg.Results.GetResults())
	}
}

func (s *fakeSession) recvEnded(err error) {
	s.mu.Lock()
	if errors.Is(err, io.EOF) {
		s.closedByPeer = true
	} else {
		s.recvErr = err
	}
	s.mu.Unlock()
	if errors.Is(err, io.EOF) {
		// Like the worker: the agent is done, end the session.
		s.End(nil)
	}
}

// End ends the stream with err (nil: OK status).
func (s *fakeSession) End(err error) {
	select {
	case s.end <- err:
	default:
	}
}

// ClosedByPeer reports whether the agent half-closed the stream.
func (s *fakeSession) ClosedByPeer() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closedByPeer
}

// Msgs returns what the agent sent after Hello, in order.
func (s *fakeSession) Msgs() []*eddyv1.ConnectRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// Credit returns the unused credit.
func (s *fakeSession) Credit() (events, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creditEvents, s.creditBytes
}

func (s *fakeSession) send(m *eddyv1.ConnectResponse) {
	s.t.Helper()
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if err := s.stream.Send(m); err != nil {
		s.t.Errorf("fake worker: send %T: %v", m.GetMsg(), err)
	}
}

// Assign sends Assign and waits for its AssignAck.
func (s *fakeSession) Assign(t testing.TB, topic string, partition int32, epoch uint64) {
	t.Helper()
	s.send(&eddyv1.ConnectResponse{Msg: &eddyv1.ConnectResponse_Assign{Assign: &eddyv1.Assign{
		Topic: topic, Partition: partition, Epoch: epoch,
	}}})
	want := &eddyv1.AssignAck{Topic: topic, Partition: partition, Epoch: epoch}
	waitFor(t, waitTimeout, fmt.Sprintf("AssignAck %v", want), func() bool {
		return slices.ContainsFunc(s.Msgs(), func(m *eddyv1.ConnectRequest) bool {
			return proto.Equal(m.GetAssignAck(), want)
		})
	})
}

// Revoke sends Revoke with a deadline d from now.
func (s *fakeSession) Revoke(topic string, partition int32, epoch uint64, d time.Duration) {
	s.send(&eddyv1.ConnectResponse{Msg: &eddyv1.ConnectResponse_Revoke{Revoke: &eddyv1.Revoke{
		Topic: topic, Partition: partition, Epoch: epoch, Deadline: timestamppb.New(time.Now().Add(d)),
	}}})
}

// Committed sends a Committed notice.
func (s *fakeSession) Committed(topic string, partition int32, offset int64) {
	s.send(&eddyv1.ConnectResponse{Msg: &eddyv1.ConnectResponse_Committed{Committed: &eddyv1.Committed{
		Topic: topic, Partition: partition, Offset: offset,
	}}})
}

// Batch sends events as one EventBatch. Like the worker, it never exceeds
// the credit: a test that tries is wrong and fails.
func (s *fakeSession) Batch(t testing.TB, topic string, partition int32, epoch uint64, events ...*eddyv1.Event) {
	t.Helper()
	var bytes int64
	for _, e := range events {
		bytes += int64(len(e.GetKey()) + len(e.GetValue()))
	}
	s.mu.Lock()
	if int64(len(events)) > s.creditEvents || bytes > s.creditBytes {
		s.mu.Unlock()
		t.Fatalf("test bug: batch of %d events, %d bytes exceeds the credit (%d events, %d bytes)",
			len(events), bytes, s.creditEvents, s.creditBytes)
	}
	s.creditEvents -= int64(len(events))
	s.creditBytes -= bytes
	s.sent[fakeKey{topic, partition}] += len(events)
	s.inFlight += len(events)
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	s.mu.Unlock()
	s.send(&eddyv1.ConnectResponse{Msg: &eddyv1.ConnectResponse_EventBatch{EventBatch: &eddyv1.EventBatch{
		Topic: topic, Partition: partition, Epoch: epoch, Events: events,
	}}})
}

// waitCredit waits until at least events and bytes of credit are available.
func (s *fakeSession) waitCredit(t testing.TB, events, bytes int64) {
	t.Helper()
	waitFor(t, waitTimeout, fmt.Sprintf("credit for %d events, %d bytes", events, bytes), func() bool {
		e, b := s.Credit()
		return e >= events && b >= bytes
	})
}

// resultEntry is one Result with the Results message it came in.
type resultEntry struct {
	topic     string
	partition int32
	epoch     uint64
	msgIndex  int // index in Msgs
	*eddyv1.Result
}

// Results returns every result received, in order, for topic and partition
// (all when topic is "").
func (s *fakeSession) Results(topic string, partition int32) []resultEntry {
	var out []resultEntry
	for i, m := range s.Msgs() {
		r := m.GetResults()
		if r == nil || (topic != "" && (r.GetTopic() != topic || r.GetPartition() != partition)) {
			continue
		}
		for _, res := range r.GetResults() {
			out = append(out, resultEntry{r.GetTopic(), r.GetPartition(), r.GetEpoch(), i, res})
		}
	}
	return out
}

// waitResults waits until n results arrived for the partition.
func (s *fakeSession) waitResults(t testing.TB, topic string, partition int32, n int) []resultEntry {
	t.Helper()
	waitFor(t, waitTimeout, fmt.Sprintf("%d results for %s[%d]", n, topic, partition), func() bool {
		return len(s.Results(topic, partition)) >= n
	})
	return s.Results(topic, partition)
}

// indexOf returns the index in Msgs of the first message matching, or -1.
func (s *fakeSession) indexOf(match func(*eddyv1.ConnectRequest) bool) int {
	return slices.IndexFunc(s.Msgs(), match)
}

// ev builds an event at offset with a key and value.
func ev(offset int64, key, value string) *eddyv1.Event {
	return &eddyv1.Event{Offset: offset, Key: []byte(key), Value: []byte(value), Attempt: 1}
}

// running is an Agent's Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	errc   chan error

	mu     sync.Mutex
	done   bool
	err    error
	reader bool // the test looked at the error
}

// runAgent runs a until the test ends (or stop). At the end of the test,
// Run must have returned nil unless the test read its error itself.
func runAgent(t testing.TB, a *agent.Agent) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		err := r.wait(t, waitTimeout+agent.DefaultDrainTimeout, false)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil && !r.reader {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

// wait waits up to timeout for Run to return and returns its error.
func (r *running) wait(t testing.TB, timeout time.Duration, read bool) error {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reader = r.reader || read
	if r.done {
		return r.err
	}
	select {
	case r.err = <-r.errc:
		r.done = true
	case <-time.After(timeout):
		t.Fatalf("Run did not return within %v", timeout)
	}
	return r.err
}

// Err waits for Run to return by itself and returns its error.
func (r *running) Err(t testing.TB) error {
	t.Helper()
	return r.wait(t, waitTimeout, true)
}

// Stop cancels Run's context and returns Run's error.
func (r *running) Stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	return r.wait(t, waitTimeout+agent.DefaultDrainTimeout, true)
}

// Returned reports whether Run has returned, without waiting.
func (r *running) Returned() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return true
	}
	select {
	case r.err = <-r.errc:
		r.done = true
	default:
	}
	return r.done
}

// newAgent creates an agent for the fake worker, failing the test on error.
func newAgent(t testing.TB, w *fakeWorker, h agent.Handler, opts ...agent.Option) *agent.Agent {
	t.Helper()
	opts = append([]agent.Option{agent.WithAddr(w.Addr), agent.WithApp("app"), agent.WithBackoff(5*time.Millisecond, 50*time.Millisecond)}, opts...)
	a, err := agent.New("router", h, opts...)
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	return a
}
