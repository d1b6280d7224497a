package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// rawAgent speaks the agent protocol by hand, to send what no SDK would.
type rawAgent struct {
	t      *testing.T
	stream grpc.BidiStreamingClient[eddyv1.ConnectRequest, eddyv1.ConnectResponse]
	cancel context.CancelFunc
}

func dialRaw(t *testing.T, addr, token string, hello *eddyv1.Hello) (*rawAgent, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	stream, err := eddyv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := &rawAgent{t: t, stream: stream, cancel: cancel}
	r.send(&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Hello{Hello: hello}})
	msg, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if msg.GetWelcome() == nil {
		t.Fatalf("first message: got %v, want Welcome", msg)
	}
	return r, nil
}

func (r *rawAgent) send(m *eddyv1.ConnectRequest) {
	r.t.Helper()
	if err := r.stream.Send(m); err != nil {
		r.t.Fatalf("send: %v", err)
	}
}

// nextBatch reads until an EventBatch arrives.
func (r *rawAgent) nextBatch() *eddyv1.EventBatch {
	r.t.Helper()
	for {
		msg, err := r.stream.Recv()
		if err != nil {
			r.t.Fatalf("recv: %v", err)
		}
		if b := msg.GetEventBatch(); b != nil {
			return b
		}
	}
}

// endStatus reads until the worker ends the stream and returns the status.
func (r *rawAgent) endStatus() *status.Status {
	r.t.Helper()
	for {
		if _, err := r.stream.Recv(); err != nil {
			return status.Convert(err)
		}
	}
}

func results(b *eddyv1.EventBatch, epoch uint64, offsets ...int64) *eddyv1.ConnectRequest {
	res := &eddyv1.Results{Topic: b.GetTopic(), Partition: b.GetPartition(), Epoch: epoch}
	for _, o := range offsets {
		res.Results = append(res.Results, &eddyv1.Result{Offset: o, Status: eddyv1.ResultStatus_RESULT_STATUS_OK})
	}
	return &eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Results{Results: res}}
}

func hello(agent, instance string, version uint32) *eddyv1.Hello {
	return &eddyv1.Hello{Agent: agent, InstanceId: instance, ProtocolVersion: version,
		Credit: &eddyv1.Credit{Events: 10000, Bytes: 64 << 20}}
}

// TestBadAgentInput sends every kind of bad input a broken or hostile agent
// could; each gets a clear error, the worker keeps running, and afterwards a
// real agent still gets every event.
func TestBadAgentInput(t *testing.T) {
	body, _, in, out := passApp(t, "")
	body += "auth: {token: s3cret}\n"
	w := startWorker(t, body)
	w.waitAssigned(t, 8)
	keys, values := keyedValues(400, 40)
	produce(t, in, keys, values)

	rejects := []struct {
		name  string
		token string
		hello *eddyv1.Hello
		code  codes.Code
		msg   string
	}{
		{"unknown agent", "s3cret", hello("nosuch", "i1", 1), codes.NotFound, `unknown agent "nosuch"`},
		{"bad version", "s3cret", hello("pass", "i1", 7), codes.FailedPrecondition, "protocol version 7"},
		{"no token", "", hello("pass", "i1", 1), codes.Unauthenticated, "missing token"},
		{"bad token", "wrong", hello("pass", "i1", 1), codes.Unauthenticated, "bad token"},
	}
	for _, tt := range rejects {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dialRaw(t, w.GRPC, tt.token, tt.hello)
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
				t.Errorf("got %v %q, want %v containing %q", st.Code(), st.Message(), tt.code, tt.msg)
			}
		})
	}

	t.Run("stale epoch", func(t *testing.T) {
		a, err := dialRaw(t, w.GRPC, "s3cret", hello("pass", "stale-a", 1))
		if err != nil {
			t.Fatal(err)
		}
		b1 := a.nextBatch()
		a.cancel() // leaves without results: its events go to the next owner
		b, err := dialRaw(t, w.GRPC, "s3cret", hello("pass", "stale-b", 1))
		if err != nil {
			t.Fatal(err)
		}
		var b2 *eddyv1.EventBatch
		for b2 == nil || b2.GetPartition() != b1.GetPartition() {
			b2 = b.nextBatch()
		}
		if b2.GetEpoch() <= b1.GetEpoch() {
			t.Errorf("redelivery epoch %d, want above %d", b2.GetEpoch(), b1.GetEpoch())
		}
		// Results under the old epoch are dropped; the stream stays up and
		// a correct result is still accepted afterwards.
		b.send(results(b2, b1.GetEpoch(), b2.GetEvents()[0].GetOffset()))
		// The accepted result copies the event like the real agent does.
		ok := results(b2, b2.GetEpoch(), b2.GetEvents()[0].GetOffset())
		ev := b2.GetEvents()[0]
		ok.GetResults().GetResults()[0].Produced = []*eddyv1.Record{{Topic: out, Key: ev.GetKey(), Value: ev.GetValue()}}
		b.send(ok)
		b.send(results(b2, b2.GetEpoch(), 1<<40)) // then a violation, to see the stream was alive
		if st := b.endStatus(); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "not delivered") {
			t.Errorf("got %v %q, want InvalidArgument: not delivered", st.Code(), st.Message())
		}
	})

	violations := []struct {
		name string
		make func(b *eddyv1.EventBatch) *eddyv1.ConnectRequest
		code codes.Code
		msg  string
	}{
		{"offset never delivered", func(b *eddyv1.EventBatch) *eddyv1.ConnectRequest {
			return results(b, b.GetEpoch(), 1<<40)
		}, codes.InvalidArgument, "not delivered"},
		{"duplicate result", func(b *eddyv1.EventBatch) *eddyv1.ConnectRequest {
			o := b.GetEvents()[0].GetOffset()
			return results(b, b.GetEpoch(), o, o)
		}, codes.InvalidArgument, "duplicate result"},
		{"epoch never issued", func(b *eddyv1.EventBatch) *eddyv1.ConnectRequest {
			return results(b, 1<<50, b.GetEvents()[0].GetOffset())
		}, codes.InvalidArgument, "never issued"},
		{"oversize message", func(b *eddyv1.EventBatch) *eddyv1.ConnectRequest {
			r := results(b, b.GetEpoch(), b.GetEvents()[0].GetOffset())
			r.GetResults().GetResults()[0].Produced = []*eddyv1.Record{{Topic: out, Value: make([]byte, 5<<20)}}
			return r
		}, codes.ResourceExhausted, "larger than max"},
	}
	for _, tt := range violations {
		t.Run(tt.name, func(t *testing.T) {
			a, err := dialRaw(t, w.GRPC, "s3cret", hello("pass", "bad-"+tt.name, 1))
			if err != nil {
				t.Fatal(err)
			}
			a.send(tt.make(a.nextBatch()))
			if st := a.endStatus(); st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
				t.Errorf("got %v %q, want %v containing %q", st.Code(), st.Message(), tt.code, tt.msg)
			}
		})
	}

	if st := w.status(t); st["state"] != "WORKER_STATE_RUNNING" {
		t.Fatalf("worker state after bad input: %v", st["state"])
	}
	startAgent(t, w.GRPC, "pass", out, "--token", "s3cret")
	got := newConsumer(t, out).readUntil(time.Minute, "every input in the output", allPresent(out, values))
	checkOutputs(t, values, got[out], false)
}
