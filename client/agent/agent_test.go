package agent_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/eddy-streams/eddy/client/agent"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// ok is a handler that passes events on unchanged.
func ok(_ context.Context, ev *agent.Event) error {
	ev.Emit("out", ev.Key, ev.Value)
	return nil
}

// logSink is a slog.Handler that keeps messages, for waiting on lifecycle
// steps the protocol does not make visible.
type logSink struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logSink) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logSink) WithGroup(string) slog.Handler      { return l }

func (l *logSink) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

func TestHello(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		opts       []agent.Option
		useEnvAddr bool
		wantCredit *eddyv1.Credit
		wantToken  string
		wantID     *regexp.Regexp
		wantApp    string
	}{
		{
			name:       "defaults",
			opts:       []agent.Option{agent.WithApp("shop")},
			wantCredit: &eddyv1.Credit{Events: agent.DefaultCreditEvents, Bytes: agent.DefaultCreditBytes},
			wantID:     regexp.MustCompile(`^.+-\d+-[0-9a-f]{6}$`),
			wantApp:    "shop",
		},
		{
			name: "options",
			opts: []agent.Option{agent.WithApp("shop"), agent.WithToken("s3cret"), agent.WithCredit(50, 4096),
				agent.WithInstanceID("router-0")},
			wantCredit: &eddyv1.Credit{Events: 50, Bytes: 4096},
			wantToken:  "s3cret",
			wantID:     regexp.MustCompile(`^router-0$`),
			wantApp:    "shop",
		},
		{
			name:       "environment",
			env:        map[string]string{agent.EnvToken: "from-env", agent.EnvApp: "shop-env"},
			useEnvAddr: true,
			wantCredit: &eddyv1.Credit{Events: agent.DefaultCreditEvents, Bytes: agent.DefaultCreditBytes},
			wantToken:  "from-env",
			wantID:     regexp.MustCompile(`-\d+-`),
			wantApp:    "shop-env",
		},
		{
			name:       "option over environment",
			env:        map[string]string{agent.EnvApp: "shop-env"},
			opts:       []agent.Option{agent.WithApp("shop")},
			wantCredit: &eddyv1.Credit{Events: agent.DefaultCreditEvents, Bytes: agent.DefaultCreditBytes},
			wantID:     regexp.MustCompile(`-\d+-`),
			wantApp:    "shop",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startFakeWorker(t)
			t.Setenv(agent.EnvToken, "")
			t.Setenv(agent.EnvAddr, "")
			t.Setenv(agent.EnvApp, "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			opts := append([]agent.Option{agent.WithAddr(w.Addr)}, tt.opts...)
			if tt.useEnvAddr {
				t.Setenv(agent.EnvAddr, w.Addr)
				opts = tt.opts
			}
			a, err := agent.New("router", ok, opts...)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if a.Connected() {
				t.Errorf("Connected before Run: got true, want false")
			}
			runAgent(t, a)
			s := w.session(t, 1)
			h := s.Hello
			wantAuth := ""
			if tt.wantToken != "" {
				wantAuth = "Bearer " + tt.wantToken
			}
			checks := []struct {
				name      string
				got, want any
			}{
				{"authorization metadata", s.Auth, wantAuth},
				{"agent", h.GetAgent(), "router"},
				{"app", h.GetApp(), tt.wantApp},
				{"protocol_version", h.GetProtocolVersion(), uint32(1)},
				{"credit", proto.Equal(h.GetCredit(), tt.wantCredit), true},
				{"token", h.GetToken(), tt.wantToken},
				{"instance_id matches InstanceID()", h.GetInstanceId(), a.InstanceID()},
				{"instance_id format", tt.wantID.MatchString(h.GetInstanceId()), true},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: got %v, want %v (hello %v)", c.name, c.got, c.want, h)
				}
			}
			waitFor(t, waitTimeout, "Connected", a.Connected)
			if got, want := a.SessionID(), s.ID; got != want {
				t.Errorf("SessionID: got %q, want %q", got, want)
			}
		})
	}
}

func TestOutcomes(t *testing.T) {
	w := startFakeWorker(t)
	seen := make(chan *agent.Event, 16)
	handler := func(_ context.Context, ev *agent.Event) error {
		seen <- ev
		switch string(ev.Key) {
		case "ok":
			ev.Emit("out-a", []byte("k1"), []byte("v1"))
			ev.EmitRecord(agent.Record{Topic: "out-b", Value: []byte("v2"), Headers: []agent.Header{{Key: "h", Value: []byte("x")}},
				Timestamp: time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)})
			return nil
		case "retry":
			return agent.Retry(errors.New("database down"))
		case "dead":
			ev.Emit("out-a", nil, []byte("discarded"))
			return agent.DeadLetter(errors.New("invalid JSON"))
		case "wrapped-dead":
			return fmt.Errorf("parse order: %w", agent.DeadLetter(errors.New("unknown region")))
		case "plain":
			ev.Emit("out-a", nil, []byte("discarded"))
			return errors.New("boom")
		case "panic":
			ev.Emit("out-a", nil, []byte("discarded"))
			panic("kaput")
		case "empty-topic":
			ev.Emit("", nil, []byte("x"))
			return nil
		}
		return fmt.Errorf("test bug: unexpected key %q", ev.Key)
	}
	a := newAgent(t, w, handler)
	runAgent(t, a)
	s := w.session(t, 1)
	s.Assign(t, "orders", 3, 7)

	ts := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	first := &eddyv1.Event{
		Offset: 100, Key: []byte("ok"), Value: []byte("payload"), Attempt: 2,
		Headers: []*eddyv1.Header{{Key: "trace", Value: []byte("abc")}}, Timestamp: timestamppb.New(ts),
	}
	keys := []string{"retry", "dead", "wrapped-dead", "plain", "panic", "empty-topic"}
	events := []*eddyv1.Event{first}
	for i, k := range keys {
		events = append(events, ev(int64(101+i), k, "v"))
	}
	s.Batch(t, "orders", 3, 7, events...)
	results := s.waitResults(t, "orders", 3, len(events))

	got := <-seen
	if got.Topic != "orders" || got.Partition != 3 || got.Offset != 100 || string(got.Value) != "payload" ||
		got.Attempt != 2 || !got.Timestamp.Equal(ts) || len(got.Headers) != 1 ||
		got.Headers[0].Key != "trace" || string(got.Headers[0].Value) != "abc" {
		t.Errorf("event passed to the handler: got %+v", got)
	}

	wantOK := []*eddyv1.Record{
		{Topic: "out-a", Key: []byte("k1"), Value: []byte("v1")},
		{Topic: "out-b", Value: []byte("v2"), Headers: []*eddyv1.Header{{Key: "h", Value: []byte("x")}},
			Timestamp: timestamppb.New(time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC))},
	}
	tests := []struct {
		offset   int64
		status   eddyv1.ResultStatus
		errText  string
		produced []*eddyv1.Record
	}{
		{100, eddyv1.ResultStatus_RESULT_STATUS_OK, "", wantOK},
		{101, eddyv1.ResultStatus_RESULT_STATUS_RETRY, "database down", nil},
		{102, eddyv1.ResultStatus_RESULT_STATUS_DEAD_LETTER, "invalid JSON", nil},
		{103, eddyv1.ResultStatus_RESULT_STATUS_DEAD_LETTER, "parse order: unknown region", nil},
		{104, eddyv1.ResultStatus_RESULT_STATUS_RETRY, "boom", nil},
		{105, eddyv1.ResultStatus_RESULT_STATUS_RETRY, "panic: kaput", nil},
		{106, eddyv1.ResultStatus_RESULT_STATUS_RETRY, "Emit: empty topic", nil},
	}
	for i, tt := range tests {
		r := results[i]
		if r.GetOffset() != tt.offset || r.GetStatus() != tt.status || r.GetError() != tt.errText || r.epoch != 7 {
			t.Errorf("result %d: got offset %d status %v error %q epoch %d, want offset %d status %v error %q epoch 7",
				i, r.GetOffset(), r.GetStatus(), r.GetError(), r.epoch, tt.offset, tt.status, tt.errText)
		}
		if len(r.GetProduced()) != len(tt.produced) {
			t.Errorf("result %d: got %d produced records, want %d", i, len(r.GetProduced()), len(tt.produced))
			continue
		}
		for j := range tt.produced {
			if !proto.Equal(r.GetProduced()[j], tt.produced[j]) {
				t.Errorf("result %d record %d: got %v, want %v", i, j, r.GetProduced()[j], tt.produced[j])
			}
		}
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		err  error
		want agent.Status
	}{
		{nil, agent.StatusOK},
		{errors.New("x"), agent.StatusRetry},
		{agent.Retry(nil), agent.StatusRetry},
		{agent.DeadLetter(nil), agent.StatusDeadLetter},
		{fmt.Errorf("wrapped: %w", agent.DeadLetter(errors.New("x"))), agent.StatusDeadLetter},
	}
	for _, tt := range tests {
		if got := agent.StatusOf(tt.err); got != tt.want {
			t.Errorf("StatusOf(%v): got %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestPartitionOrderAndConcurrency(t *testing.T) {
	const parts, perPart, batch = 3, 200, 20
	w := startFakeWorker(t)

	var mu sync.Mutex
	order := map[int32][]int64{}
	var active [parts]atomic.Int32
	var overlap atomic.Bool
	// The first event of every partition waits until all partitions have
	// one in progress: partitions run concurrently.
	var entered sync.WaitGroup
	entered.Add(parts)
	allIn := make(chan struct{})
	go func() { entered.Wait(); close(allIn) }()

	handler := func(_ context.Context, ev *agent.Event) error {
		if active[ev.Partition].Add(1) > 1 {
			overlap.Store(true)
		}
		defer active[ev.Partition].Add(-1)
		if ev.Offset == 0 {
			entered.Done()
			select {
			case <-allIn:
			case <-time.After(waitTimeout):
				return errors.New("partitions are not processed concurrently")
			}
		}
		mu.Lock()
		order[ev.Partition] = append(order[ev.Partition], ev.Offset)
		mu.Unlock()
		return nil
	}
	a := newAgent(t, w, handler)
	runAgent(t, a)
	s := w.session(t, 1)
	for p := range int32(parts) {
		s.Assign(t, "orders", p, uint64(10+p))
	}
	for off := 0; off < perPart; off += batch {
		for p := range int32(parts) {
			var evs []*eddyv1.Event
			for i := off; i < off+batch; i++ {
				evs = append(evs, ev(int64(i), "k", "v"))
			}
			s.Batch(t, "orders", p, uint64(10+p), evs...)
		}
	}
	for p := range int32(parts) {
		results := s.waitResults(t, "orders", p, perPart)
		for i, r := range results {
			if r.GetOffset() != int64(i) || r.epoch != uint64(10+p) || r.GetStatus() != eddyv1.ResultStatus_RESULT_STATUS_OK {
				t.Fatalf("partition %d result %d: got offset %d epoch %d status %v, want offset %d epoch %d OK",
					p, i, r.GetOffset(), r.epoch, r.GetStatus(), i, 10+p)
			}
		}
		mu.Lock()
		got := slices.Clone(order[p])
		mu.Unlock()
		if !slices.IsSorted(got) || len(got) != perPart {
			t.Errorf("partition %d: handler saw offsets %v, want 0..%d in order", p, got, perPart-1)
		}
	}
	if overlap.Load() {
		t.Error("two events of one partition were processed at the same time")
	}
}

func TestConcurrencyLimit(t *testing.T) {
	w := startFakeWorker(t)
	var active, peak atomic.Int32
	handler := func(_ context.Context, ev *agent.Event) error {
		n := active.Add(1)
		defer active.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(time.Millisecond) // widen the window for overlap; not synchronisation
		return nil
	}
	a := newAgent(t, w, handler, agent.WithConcurrency(1))
	runAgent(t, a)
	s := w.session(t, 1)
	for p := range int32(4) {
		s.Assign(t, "orders", p, 1)
	}
	for p := range int32(4) {
		s.Batch(t, "orders", p, 1, ev(0, "a", "v"), ev(1, "b", "v"), ev(2, "c", "v"))
	}
	for p := range int32(4) {
		s.waitResults(t, "orders", p, 3)
	}
	if got := peak.Load(); got != 1 {
		t.Errorf("peak concurrent handlers: got %v, want 1", got)
	}
}

// gate is a handler step the test controls: entered is signalled when the
// handler reaches it, and it returns when the test releases it.
type gate struct {
	entered chan int64
	release chan struct{}
}

func newGate() *gate { return &gate{entered: make(chan int64, 16), release: make(chan struct{})} }

func (g *gate) wait(ctx context.Context, offset int64) error {
	g.entered <- offset
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) waitEntered(t testing.TB) int64 {
	t.Helper()
	select {
	case off := <-g.entered:
		return off
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for the handler")
		return 0
	}
}

func credits(s *fakeSession) []*eddyv1.Credit {
	var out []*eddyv1.Credit
	for _, m := range s.Msgs() {
		if c := m.GetCredit(); c != nil {
			out = append(out, c)
		}
	}
	return out
}

func TestCreditReturnedAtHalfWindow(t *testing.T) {
	tests := []struct {
		name        string
		events      int
		bytes       int64
		value       string
		fast        int // events sent to the fast partition
		wantCredits []*eddyv1.Credit
	}{
		{
			// Window 10: one event held in progress on partition 1; 5
			// finished on partition 0 reach half the window.
			name: "events", events: 10, bytes: 1 << 20, value: "v", fast: 5,
			wantCredits: []*eddyv1.Credit{{Events: 5, Bytes: 10}},
		},
		{
			// Window 100 bytes: 3 events of 20 bytes reach half the bytes
			// long before half the events.
			name: "bytes", events: 1000, bytes: 100, value: "0123456789012345678k", fast: 3,
			wantCredits: []*eddyv1.Credit{{Events: 3, Bytes: 63}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startFakeWorker(t)
			g := newGate()
			handler := func(ctx context.Context, ev *agent.Event) error {
				if ev.Partition == 1 {
					return g.wait(ctx, ev.Offset)
				}
				return nil
			}
			a := newAgent(t, w, handler, agent.WithCredit(tt.events, tt.bytes))
			runAgent(t, a)
			s := w.session(t, 1)
			s.Assign(t, "orders", 0, 1)
			s.Assign(t, "orders", 1, 1)
			s.Batch(t, "orders", 1, 1, ev(0, "k", "held"))
			g.waitEntered(t)
			var evs []*eddyv1.Event
			for i := range tt.fast {
				evs = append(evs, ev(int64(i), "k", tt.value))
			}
			s.Batch(t, "orders", 0, 1, evs...)
			s.waitResults(t, "orders", 0, tt.fast)
			waitFor(t, waitTimeout, "credit", func() bool { return len(credits(s)) >= 1 })
			got := credits(s)
			if len(got) != len(tt.wantCredits) || !proto.Equal(got[0], tt.wantCredits[0]) {
				t.Errorf("credits: got %v, want %v", got, tt.wantCredits)
			}
			// Credit follows the results it returns.
			if ri, ci := s.indexOf(func(m *eddyv1.ConnectRequest) bool { return m.GetResults() != nil }),
				s.indexOf(func(m *eddyv1.ConnectRequest) bool { return m.GetCredit() != nil }); ci < ri {
				t.Errorf("Credit (message %d) sent before the Results it returns (message %d)", ci, ri)
			}
			close(g.release)
		})
	}
}

func TestCreditNotReturnedEarly(t *testing.T) {
	w := startFakeWorker(t)
	g := newGate()
	handler := func(ctx context.Context, ev *agent.Event) error {
		if ev.Partition == 1 {
			return g.wait(ctx, ev.Offset)
		}
		return nil
	}
	a := newAgent(t, w, handler, agent.WithCredit(10, 1<<20))
	runAgent(t, a)
	s := w.session(t, 1)
	s.Assign(t, "orders", 0, 1)
	s.Assign(t, "orders", 1, 1)
	s.Batch(t, "orders", 1, 1, ev(0, "k", "v"))
	g.waitEntered(t)
	// 4 finished + 1 in progress: under half, and not idle.
	s.Batch(t, "orders", 0, 1, ev(0, "k", "v"), ev(1, "k", "v"), ev(2, "k", "v"), ev(3, "k", "v"))
	s.waitResults(t, "orders", 0, 4)
	close(g.release)
	s.waitResults(t, "orders", 1, 1)
	// The held event finishing makes 5: now the credit comes, in one piece.
	waitFor(t, waitTimeout, "credit", func() bool { return len(credits(s)) >= 1 })
	if got, want := credits(s), []*eddyv1.Credit{{Events: 5, Bytes: 10}}; len(got) != 1 || !proto.Equal(got[0], want[0]) {
		t.Errorf("credits: got %v, want %v", got, want)
	}
}

func TestCreditRefillUnderLoad(t *testing.T) {
	const window, total = 10, 300
	w := startFakeWorker(t)
	var processed atomic.Int64
	handler := func(_ context.Context, ev *agent.Event) error {
		processed.Add(1)
		return nil
	}
	a := newAgent(t, w, handler, agent.WithCredit(window, 1<<20))
	runAgent(t, a)
	s := w.session(t, 1)
	s.Assign(t, "orders", 0, 1)
	for off := 0; off < total; {
		s.waitCredit(t, 1, 1)
		e, _ := s.Credit()
		n := min(int(e), total-off, 4)
		var evs []*eddyv1.Event
		for i := range n {
			evs = append(evs, ev(int64(off+i), "k", "v"))
		}
		s.Batch(t, "orders", 0, 1, evs...)
		off += n
	}
	results := s.waitResults(t, "orders", 0, total)
	for i, r := range results {
		if r.GetOffset() != int64(i) {
			t.Fatalf("result %d: got offset %d, want %d", i, r.GetOffset(), i)
		}
	}
	// The agent never grants more than it has finished: at every Credit, the
	// events returned so far are at most the results sent before it.
	var returned, finished int64
	for i, m := range s.Msgs() {
		finished += int64(len(m.GetResults().GetResults()))
		if c := m.GetCredit(); c != nil {
			returned += int64(c.GetEvents())
			if returned > finished {
				t.Fatalf("message %d: %d events of credit returned for %d finished", i, returned, finished)
			}
		}
	}
	waitFor(t, waitTimeout, "all credit back", func() bool {
		e, _ := s.Credit()
		return e == window
	})
	if got := processed.Load(); got != total {
		t.Errorf("events processed: got %v, want %v", got, total)
	}
}

func TestRevoke(t *testing.T) {
	w := startFakeWorker(t)
	g := newGate()
	var mu sync.Mutex
	var seen []string
	handler := func(ctx context.Context, ev *agent.Event) error {
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%d@%d", ev.Offset, ev.Attempt))
		mu.Unlock()
		if ev.Offset == 0 && ev.Attempt == 1 {
			return g.wait(ctx, ev.Offset)
		}
		return nil
	}
	// Window 8: the 4 dropped events are half of it, so their credit comes
	// back at once, which shows the queue was dropped.
	a := newAgent(t, w, handler, agent.WithCredit(8, 1<<20))
	runAgent(t, a)
	s := w.session(t, 1)
	s.Assign(t, "orders", 0, 1)
	s.Batch(t, "orders", 0, 1, ev(0, "k", "v"), ev(1, "k", "v"), ev(2, "k", "v"), ev(3, "k", "v"), ev(4, "k", "v"))
	g.waitEntered(t)

	s.Revoke("orders", 0, 1, waitTimeout)
	waitFor(t, waitTimeout, "credit for the dropped events", func() bool { return len(credits(s)) >= 1 })
	if got, want := credits(s)[0], (&eddyv1.Credit{Events: 4, Bytes: 8}); !proto.Equal(got, want) {
		t.Errorf("credit after revoke: got %v, want %v", got, want)
	}
	if i := s.indexOf(func(m *eddyv1.ConnectRequest) bool { return m.GetRevokeAck() != nil }); i >= 0 {
		t.Fatalf("RevokeAck sent while an event is in progress")
	}
	close(g.release)

	wantAck := &eddyv1.RevokeAck{Topic: "orders", Partition: 0, Epoch: 1}
	waitFor(t, waitTimeout, "RevokeAck", func() bool {
		return s.indexOf(func(m *eddyv1.ConnectRequest) bool { return proto.Equal(m.GetRevokeAck(), wantAck) }) >= 0
	})
	results := s.Results("orders", 0)
	ackAt := s.indexOf(func(m *eddyv1.ConnectRequest) bool { return m.GetRevokeAck() != nil })
	if len(results) != 1 || results[0].GetOffset() != 0 || results[0].epoch != 1 || results[0].msgIndex > ackAt {
		t.Fatalf("results before RevokeAck (message %d): got %v, want only offset 0, epoch 1, before the ack", ackAt, results)
	}

	// A later assignment gets the dropped events again, under its epoch.
	s.Assign(t, "orders", 0, 2)
	redelivered := []*eddyv1.Event{ev(1, "k", "v"), ev(2, "k", "v"), ev(3, "k", "v"), ev(4, "k", "v")}
	s.Batch(t, "orders", 0, 2, redelivered...)
	results = s.waitResults(t, "orders", 0, 5)
	for i, r := range results[1:] {
		if r.GetOffset() != int64(i+1) || r.epoch != 2 {
			t.Errorf("result %d after reassignment: got offset %d epoch %d, want offset %d epoch 2", i+1, r.GetOffset(), r.epoch, i+1)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"0@1", "1@1", "2@1", "3@1", "4@1"}; !slices.Equal(seen, want) {
		t.Errorf("handler calls: got %v, want %v (queued events must not run after the revoke)", seen, want)
	}
}

func TestRevokeDeadline(t *testing.T) {
	w := startFakeWorker(t)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	handler := func(ctx context.Context, ev *agent.Event) error {
		if ev.Offset == 0 {
			entered <- struct{}{}
			<-release // ignores ctx on purpose
		}
		return nil
	}
	a := newAgent(t, w, handler)
	runAgent(t, a)
	t.Cleanup(func() { close(release) }) // before the agent's cleanup stops it
	s := w.session(t, 1)
	s.Assign(t, "orders", 0, 1)
	s.Batch(t, "orders", 0, 1, ev(0, "k", "v"))
	<-entered
	start := time.Now()
	s.Revoke("orders", 0, 1, 200*time.Millisecond)
	waitFor(t, waitTimeout, "RevokeAck", func() bool {
		return s.indexOf(func(m *eddyv1.ConnectRequest) bool { return m.GetRevokeAck() != nil }) >= 0
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("RevokeAck after %v, want about the 200ms deadline", d)
	}
	// The handler is stuck: nothing was sent for it, and nothing may be sent
	// later either, since the ack said the agent holds no more work.
	if r := s.Results("orders", 0); len(r) != 0 {
		t.Errorf("results: got %v, want none", r)
	}
}

func TestRevokeUnknownPartitionIsAcknowledged(t *testing.T) {
	w := startFakeWorker(t)
	a := newAgent(t, w, ok)
	runAgent(t, a)
	s := w.session(t, 1)
	s.Revoke("orders", 9, 4, time.Second)
	want := &eddyv1.RevokeAck{Topic: "orders", Partition: 9, Epoch: 4}
	waitFor(t, waitTimeout, "RevokeAck", func() bool {
		return s.indexOf(func(m *eddyv1.ConnectRequest) bool { return proto.Equal(m.GetRevokeAck(), want) }) >= 0
	})
}

func TestStaleEventsDropped(t *testing.T) {
	w := startFakeWorker(t)
	var calls atomic.Int32
	handler := func(context.Context, *agent.Event) error { calls.Add(1); return nil }
	a := newAgent(t, w, handler, agent.WithCredit(4, 1<<20))
	runAgent(t, a)
	s := w.session(t, 1)
	s.Assign(t, "orders", 0, 5)
	// Wrong epoch, and a partition never assigned.
	s.Batch(t, "orders", 0, 4, ev(0, "k", "v"), ev(1, "k", "v"))
	s.Batch(t, "orders", 1, 5, ev(0, "k", "v"), ev(1, "k", "v"))
	waitFor(t, waitTimeout, "credit back for the dropped events", func() bool {
		e, _ := s.Credit()
		return e == 4
	})
	if n := calls.Load(); n != 0 {
		t.Errorf("handler calls: got %d, want 0", n)
	}
	if r := s.Results("", 0); len(r) != 0 {
		t.Errorf("results: got %v, want none", r)
	}
}

func TestAssignNewerEpochReplacesOld(t *testing.T) {
	w := startFakeWorker(t)
	g := newGate()
	handler := func(ctx context.Context, ev *agent.Event) error {
		if ev.Offset == 0 && ev.Attempt == 1 {
			return g.wait(ctx, ev.Offset)
		}
		return nil
	}
	a := newAgent(t, w, handler)
	runAgent(t, a)
	s := w.session(t, 1)
	s.Assign(t, "orders", 0, 1)
	s.Batch(t, "orders", 0, 1, ev(0, "k", "v"), ev(1, "k", "v"))
	g.waitEntered(t)
	s.Assign(t, "orders", 0, 2)
	s.Batch(t, "orders", 0, 2, ev(1, "k", "v"))
	close(g.release)
	results := s.waitResults(t, "orders", 0, 2)
	if results[0].GetOffset() != 0 || results[0].epoch != 1 || results[1].GetOffset() != 1 || results[1].epoch != 2 {
		t.Errorf("results: got %v, want offset 0 under epoch 1 then offset 1 under epoch 2", results)
	}
}

func TestPermanentErrors(t *testing.T) {
	wrongApp, err := status.New(codes.FailedPrecondition, `hello.app "app" does not match this worker's app "billing"`).
		WithDetails(&errdetails.ErrorInfo{Reason: "APP_MISMATCH", Domain: "eddy.v1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		code   codes.Code
		msg    string
		status *status.Status // the status to end with; default: code and msg alone
		want   error
	}{
		{name: "NotFound", code: codes.NotFound, msg: `unknown agent "router"`, want: agent.ErrUnknownAgent},
		{name: "Unauthenticated", code: codes.Unauthenticated, msg: "invalid bearer token", want: agent.ErrUnauthenticated},
		{name: "PermissionDenied", code: codes.PermissionDenied, msg: "not allowed", want: agent.ErrUnauthenticated},
		{name: "FailedPrecondition", code: codes.FailedPrecondition, msg: "protocol version 1 is not supported; want 2", want: agent.ErrProtocolVersion},
		{name: "FailedPrecondition APP_MISMATCH", code: codes.FailedPrecondition, msg: `hello.app "app" does not match this worker's app "billing"`,
			status: wrongApp, want: agent.ErrWrongApp},
		{name: "InvalidArgument", code: codes.InvalidArgument, msg: "first message must be Hello", want: agent.ErrProtocolViolation},
		{name: "Unimplemented", code: codes.Unimplemented, msg: "method Connect not implemented", want: agent.ErrNotSupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startFakeWorker(t)
			st := tt.status
			if st == nil {
				st = status.New(tt.code, tt.msg)
			}
			w.reject = func(*eddyv1.Hello) error { return st.Err() }
			a := newAgent(t, w, ok)
			r := runAgent(t, a)
			err := r.Err(t)
			if !errors.Is(err, tt.want) {
				t.Errorf("errors.Is(%v, %v): got false, want true", err, tt.want)
			}
			if got := status.Code(err); got != tt.code {
				t.Errorf("status.Code: got %v, want %v", got, tt.code)
			}
			var rej *agent.RejectedError
			if !errors.As(err, &rej) || rej.Code != tt.code || rej.Agent != "router" || rej.Addr != w.Addr {
				t.Errorf("RejectedError: got %#v", rej)
			}
			for _, want := range []string{tt.msg, `"router"`, w.Addr, tt.code.String()} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if n := w.Hellos(); n != 1 {
				t.Errorf("connection attempts: got %d, want 1 (no reconnect)", n)
			}
		})
	}
}

func TestReconnect(t *testing.T) {
	tests := []struct {
		name string
		end  error
	}{
		{"unavailable", status.Error(codes.Unavailable, "worker restarting")},
		{"internal", status.Error(codes.Internal, "oops")},
		{"stream ended without error", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startFakeWorker(t)
			cancelled := make(chan struct{})
			entered := make(chan struct{}, 1)
			handler := func(ctx context.Context, ev *agent.Event) error {
				if ev.Offset == 0 {
					entered <- struct{}{}
					<-ctx.Done()
					close(cancelled)
					return ctx.Err()
				}
				return nil
			}
			a := newAgent(t, w, handler)
			runAgent(t, a)
			s1 := w.session(t, 1)
			waitFor(t, waitTimeout, "Connected", a.Connected)
			s1.Assign(t, "orders", 0, 1)
			s1.Batch(t, "orders", 0, 1, ev(0, "k", "v"), ev(1, "k", "v"))
			<-entered

			s1.End(tt.end)
			s2 := w.session(t, 2)
			if s2.Hello.GetInstanceId() != s1.Hello.GetInstanceId() {
				t.Errorf("instance id after reconnect: got %q, want %q", s2.Hello.GetInstanceId(), s1.Hello.GetInstanceId())
			}
			select {
			case <-cancelled:
			case <-time.After(waitTimeout):
				t.Fatal("the handler's context was not cancelled when the session was lost")
			}
			waitFor(t, waitTimeout, "SessionID of the new session", func() bool { return a.SessionID() == s2.ID })
			if !a.Connected() {
				t.Error("Connected after reconnect: got false, want true")
			}
			// The new session works, and nothing of the old one leaks into it.
			s2.Assign(t, "orders", 0, 2)
			s2.Batch(t, "orders", 0, 2, ev(1, "k", "v"))
			results := s2.waitResults(t, "orders", 0, 1)
			if len(results) != 1 || results[0].GetOffset() != 1 || results[0].epoch != 2 {
				t.Errorf("results on the new session: got %v, want offset 1 under epoch 2", results)
			}
		})
	}
}

func TestUnreachableWorkerRetriesUntilStopped(t *testing.T) {
	w := startFakeWorker(t)
	addr := w.Addr
	w.srv.Stop() // nothing listens any more
	logs := &logSink{}
	a, err := agent.New("router", ok, agent.WithAddr(addr), agent.WithApp("app"), agent.WithBackoff(time.Millisecond, 10*time.Millisecond),
		agent.WithLogger(slog.New(logs)))
	if err != nil {
		t.Fatal(err)
	}
	r := runAgent(t, a)
	waitFor(t, waitTimeout, "three reconnection attempts", func() bool { return logs.count("reconnecting") >= 3 })
	if a.Connected() {
		t.Error("Connected: got true, want false")
	}
	if err := r.Stop(t); err != nil {
		t.Errorf("Run after stop: got %v, want nil", err)
	}
}

func TestGracefulStop(t *testing.T) {
	w := startFakeWorker(t)
	g := newGate()
	logs := &logSink{}
	var calls atomic.Int32
	handler := func(ctx context.Context, ev *agent.Event) error {
		calls.Add(1)
		if err := g.wait(context.Background(), ev.Offset); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return errors.New("the handler's context was cancelled during a graceful stop")
		}
		ev.Emit("out", ev.Key, ev.Value)
		return nil
	}
	a := newAgent(t, w, handler, agent.WithLogger(slog.New(logs)))
	r := runAgent(t, a)
	s := w.session(t, 1)
	s.Assign(t, "orders", 0, 1)
	s.Batch(t, "orders", 0, 1, ev(0, "k", "v"), ev(1, "k", "v"), ev(2, "k", "v"))
	g.waitEntered(t)

	r.cancel()
	waitFor(t, waitTimeout, "the drain to start", func() bool { return logs.count("stopping") >= 1 })
	if r.Returned() {
		t.Fatal("Run returned while an event was in progress")
	}
	close(g.release)
	if err := r.Stop(t); err != nil {
		t.Fatalf("Run: got %v, want nil", err)
	}
	results := s.Results("orders", 0)
	if len(results) != 1 || results[0].GetOffset() != 0 || results[0].GetStatus() != eddyv1.ResultStatus_RESULT_STATUS_OK {
		t.Errorf("results: got %v, want offset 0 OK only", results)
	}
	if !s.ClosedByPeer() {
		t.Error("the agent did not close its side of the stream")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler calls: got %d, want 1 (queued events are not started during a stop)", n)
	}
	if a.Connected() {
		t.Error("Connected after Run returned: got true, want false")
	}
}

func TestDrainTimeout(t *testing.T) {
	w := startFakeWorker(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	entered := make(chan struct{}, 1)
	handler := func(ctx context.Context, ev *agent.Event) error {
		entered <- struct{}{}
		<-release // ignores ctx on purpose
		return nil
	}
	a := newAgent(t, w, handler, agent.WithDrainTimeout(100*time.Millisecond))
	r := runAgent(t, a)
	s := w.session(t, 1)
	s.Assign(t, "orders", 0, 1)
	s.Batch(t, "orders", 0, 1, ev(0, "k", "v"))
	<-entered
	start := time.Now()
	if err := r.Stop(t); err != nil {
		t.Fatalf("Run: got %v, want nil", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run returned %v after the stop, want about the 100ms drain timeout", d)
	}
	if got := s.Results("", 0); len(got) != 0 {
		t.Errorf("results: got %v, want none", got)
	}
}

func TestStopWhileDisconnected(t *testing.T) {
	a, err := agent.New("router", ok, agent.WithAddr("127.0.0.1:1"), agent.WithApp("app"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Errorf("Run with a cancelled context: got %v, want nil", err)
	}
	if err := a.Run(context.Background()); !errors.Is(err, agent.ErrAlreadyStarted) {
		t.Errorf("second Run: got %v, want %v", err, agent.ErrAlreadyStarted)
	}
}

func TestCommitted(t *testing.T) {
	w := startFakeWorker(t)
	type commit struct {
		topic     string
		partition int32
		offset    int64
	}
	got := make(chan commit, 1)
	a := newAgent(t, w, ok, agent.WithOnCommitted(func(topic string, partition int32, offset int64) {
		got <- commit{topic, partition, offset}
	}))
	runAgent(t, a)
	s := w.session(t, 1)
	s.Committed("orders", 2, 42)
	select {
	case c := <-got:
		if c != (commit{"orders", 2, 42}) {
			t.Errorf("committed: got %+v, want orders[2]@42", c)
		}
	case <-time.After(waitTimeout):
		t.Fatal("OnCommitted not called")
	}
}

func TestResultsSplitAndBatched(t *testing.T) {
	w := startFakeWorker(t)
	big := bytes.Repeat([]byte("x"), 300<<10)
	handler := func(_ context.Context, ev *agent.Event) error {
		switch string(ev.Key) {
		case "big":
			ev.Emit("out", nil, big)
		case "huge":
			for range 20 {
				ev.Emit("out", nil, big) // 6 MiB in one result
			}
		}
		return nil
	}
	a := newAgent(t, w, handler)
	runAgent(t, a)
	s := w.session(t, 1)
	s.Assign(t, "orders", 0, 1)

	// Ten 300 KiB results: split under 1 MiB per message, in order.
	var evs []*eddyv1.Event
	for i := range 10 {
		evs = append(evs, ev(int64(i), "big", ""))
	}
	evs = append(evs, ev(10, "huge", ""))
	s.Batch(t, "orders", 0, 1, evs...)
	results := s.waitResults(t, "orders", 0, 11)
	for i, r := range results {
		if r.GetOffset() != int64(i) {
			t.Fatalf("result %d: got offset %d", i, r.GetOffset())
		}
	}
	if r := results[10]; r.GetStatus() != eddyv1.ResultStatus_RESULT_STATUS_RETRY || !strings.Contains(r.GetError(), "exceeds") {
		t.Errorf("oversized result: got status %v error %q, want RETRY saying it exceeds the limit", r.GetStatus(), r.GetError())
	}
	var msgs int
	for _, m := range s.Msgs() {
		if r := m.GetResults(); r != nil {
			msgs++
			if size := proto.Size(m); size > 1<<20+1024 {
				t.Errorf("Results message of %d bytes, want at most about 1 MiB", size)
			}
		}
	}
	if msgs < 3 {
		t.Errorf("Results messages: got %d, want the 3 MiB split into at least 3", msgs)
	}

	// A thousand small results: at most 500 per message.
	s.waitCredit(t, 1000, 1)
	evs = evs[:0]
	for i := range 1000 {
		evs = append(evs, ev(int64(11+i), "small", "v"))
	}
	before := len(s.Msgs())
	s.Batch(t, "orders", 0, 1, evs...)
	s.waitResults(t, "orders", 0, 1011)
	small := 0
	for i, m := range s.Msgs() {
		n := len(m.GetResults().GetResults())
		if n > 500 {
			t.Errorf("Results message with %d results, want at most 500", n)
		}
		if i >= before && n > 0 {
			small++
		}
	}
	// Fast results are batched, not sent one by one: the time-based flush
	// adds about one message per 100ms, and a thousand no-op events take
	// far less than the 5s that 50 messages would take.
	if small > 50 {
		t.Errorf("Results messages for 1000 fast events: got %d, want at most 50", small)
	}
}

// resultsMsgs returns the Results messages received for topic and partition.
func resultsMsgs(s *fakeSession, topic string, partition int32) []*eddyv1.Results {
	var out []*eddyv1.Results
	for _, m := range s.Msgs() {
		if r := m.GetResults(); r != nil && r.GetTopic() == topic && r.GetPartition() == partition {
			out = append(out, r)
		}
	}
	return out
}

// A slow handler with a deep queue keeps sending results: the worker's
// processing_timeout counts from a partition's previous results, so results
// held until the queue empties would make a progressing instance look hung.
func TestResultsFlushedWhileSlow(t *testing.T) {
	const events, perEvent = 50, 30 * time.Millisecond
	w := startFakeWorker(t)
	handler := func(_ context.Context, ev *agent.Event) error {
		time.Sleep(perEvent) // a slow handler's work; not synchronisation
		return nil
	}
	a := newAgent(t, w, handler)
	runAgent(t, a)
	s := w.session(t, 1)
	s.Assign(t, "orders", 0, 1)
	var evs []*eddyv1.Event
	for i := range events {
		evs = append(evs, ev(int64(i), "k", "v"))
	}
	s.Batch(t, "orders", 0, 1, evs...)
	results := s.waitResults(t, "orders", 0, events)
	for i, r := range results {
		if r.GetOffset() != int64(i) {
			t.Fatalf("result %d: got offset %d, want %d", i, r.GetOffset(), i)
		}
	}
	// 1.5s of work flushed every 100ms is about 15 messages; flushed only
	// when the queue empties it is one. At least 3 holds however slowly a
	// loaded machine runs the handler.
	if got := len(resultsMsgs(s, "orders", 0)); got < 3 {
		t.Errorf("Results messages for %d events of %v each: got %d, want at least 3", events, perEvent, got)
	}
}

// Results of a partition whose next event waits for a WithConcurrency slot,
// or runs long, are sent meanwhile.
func TestResultsFlushedWhileWaitingForSlot(t *testing.T) {
	w := startFakeWorker(t)
	first := newGate()
	hold := make(chan struct{})
	handler := func(ctx context.Context, ev *agent.Event) error {
		if ev.Partition == 0 && ev.Offset == 0 {
			return first.wait(ctx, ev.Offset)
		}
		select {
		case <-hold:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	a := newAgent(t, w, handler, agent.WithConcurrency(1))
	runAgent(t, a)
	t.Cleanup(func() { close(hold) }) // before runAgent's graceful stop
	s := w.session(t, 1)
	s.Assign(t, "orders", 0, 1)
	s.Assign(t, "orders", 1, 1)
	s.Batch(t, "orders", 0, 1, ev(0, "k", "v"), ev(1, "k", "v"))
	first.waitEntered(t)
	s.Batch(t, "orders", 1, 1, ev(0, "k", "v"))
	close(first.release)
	// Offset 1 of partition 0 now waits for the slot behind partition 1's
	// event, or holds it itself if partition 1 was not waiting yet; either
	// way offset 0's result must not wait for it.
	results := s.waitResults(t, "orders", 0, 1)
	if got := results[0].GetOffset(); got != 0 {
		t.Errorf("first result: got offset %d, want 0", got)
	}
}

func TestState(t *testing.T) {
	w := startFakeWorker(t)
	type read struct {
		value []byte
		ok    bool
	}
	reads := make(chan [3]read, 1)
	handler := func(_ context.Context, ev *agent.Event) error {
		var r [3]read
		r[0].value, r[0].ok = ev.State("counts")
		ev.SetState("counts", []byte("2"))
		r[1].value, r[1].ok = ev.State("counts")
		ev.DeleteState("seen")
		r[2].value, r[2].ok = ev.State("seen")
		reads <- r
		return nil
	}
	a := newAgent(t, w, handler)
	runAgent(t, a)
	s := w.session(t, 1)
	s.Assign(t, "words", 0, 1)
	e := ev(0, "hello", "")
	e.State = []*eddyv1.TableState{
		{Table: "counts", HasValue: true, Value: []byte("1")},
		{Table: "seen", HasValue: true, Value: []byte("yes")},
	}
	s.Batch(t, "words", 0, 1, e)
	results := s.waitResults(t, "words", 0, 1)
	r := <-reads
	if string(r[0].value) != "1" || !r[0].ok || string(r[1].value) != "2" || !r[1].ok || r[2].ok {
		t.Errorf("State reads: got %+v, want 1, then 2 after SetState, then absent after DeleteState", r)
	}
	want := []*eddyv1.Mutation{
		{Table: "counts", Key: []byte("hello"), Value: []byte("2")},
		{Table: "seen", Key: []byte("hello"), Delete: true},
	}
	got := results[0].GetMutations()
	if len(got) != len(want) || !proto.Equal(got[0], want[0]) || !proto.Equal(got[1], want[1]) {
		t.Errorf("mutations: got %v, want %v", got, want)
	}
}

func TestEventUseAfterReturnIgnored(t *testing.T) {
	w := startFakeWorker(t)
	kept := make(chan *agent.Event, 1)
	logs := &logSink{}
	handler := func(_ context.Context, ev *agent.Event) error {
		kept <- ev
		return nil
	}
	a := newAgent(t, w, handler, agent.WithLogger(slog.New(logs)))
	runAgent(t, a)
	s := w.session(t, 1)
	s.Assign(t, "orders", 0, 1)
	s.Batch(t, "orders", 0, 1, ev(0, "k", "v"))
	s.waitResults(t, "orders", 0, 1)
	e := <-kept
	e.Emit("late", nil, nil)
	if got := len(e.Emitted()); got != 0 {
		t.Errorf("records after a late Emit: got %d, want 0", got)
	}
	if logs.count("after the handler returned") != 1 {
		t.Error("a late Emit is not logged")
	}
}

// TestWithTLSFilesRefused: a key without its certificate, and WithTLS
// beside WithTLSFiles, are refused by New, naming the option.
func TestWithTLSFilesRefused(t *testing.T) {
	h := func(context.Context, *agent.Event) error { return nil }
	_, err := agent.New("count", h, agent.WithApp("a"), agent.WithTLSFiles("", "", "k.pem"))
	if want := "WithTLSFiles: a client certificate needs both the certificate file and the key file"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want an error containing %q", err, want)
	}
	_, err = agent.New("count", h, agent.WithApp("a"), agent.WithTLSFiles("", "", ""), agent.WithTLS(&tls.Config{}))
	if err == nil || !strings.Contains(err.Error(), "WithTLS and WithTLSFiles exclude each other") {
		t.Errorf("got %v, want WithTLS and WithTLSFiles refused together", err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Setenv(agent.EnvApp, "")
	_, err := agent.New("", nil,
		agent.WithAddr("localhost"),
		agent.WithToken("tok\n"),
		agent.WithInstanceID(""),
		agent.WithCredit(0, 0),
		agent.WithDrainTimeout(-time.Second),
		agent.WithBackoff(time.Second, time.Millisecond),
		agent.WithConcurrency(-1),
		agent.WithTLSFiles("/nonexistent/ca.pem", "", ""),
	)
	if err == nil {
		t.Fatal("New: got nil error")
	}
	for _, want := range []string{
		"name is empty",
		"handler is nil",
		"WithApp: the app name is empty: pass WithApp or set EDDY_APP",
		`WithAddr: invalid worker address "localhost"`,
		"WithToken: token contains whitespace",
		"WithInstanceID: id is empty",
		"WithCredit: events 0 is not in 1..4294967295",
		"WithCredit: bytes 0 is not positive",
		"WithDrainTimeout: -1s is negative",
		"WithBackoff: minimum 1s exceeds maximum 1ms",
		"WithConcurrency: -1 is negative",
		"WithTLSFiles: CA file: open /nonexistent/ca.pem: no such file or directory",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q; got:\n%v", want, err)
		}
	}
}
