package server

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/tables/live"
)

// The fuzz tests of the request validators (validate.go): each decodes the
// fuzzer's bytes as a request and checks the validator against an oracle
// written from the proto's comments, that it never panics, and that it
// refuses only with INVALID_ARGUMENT. Their seeds run with every `go test`;
// `make fuzz` runs each for FUZZTIME.

// seeds adds the wire form of each message to f.
func seeds(f *testing.F, msgs ...proto.Message) {
	f.Helper()
	for _, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
}

// decode unmarshals b into m; false for bytes that are no such message
// (the gRPC codec refuses them before any handler).
func decode(b []byte, m proto.Message) bool { return proto.Unmarshal(b, m) == nil }

// checkRefusal fails t unless err is nil (when ok) or INVALID_ARGUMENT
// with a message (when not).
func checkRefusal(t *testing.T, what string, req proto.Message, err error, ok bool) {
	t.Helper()
	switch {
	case ok && err != nil:
		t.Fatalf("%s refused a valid request %v: %v", what, req, err)
	case !ok && err == nil:
		t.Fatalf("%s accepted an invalid request %v", what, req)
	case err != nil && (status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() == ""):
		t.Fatalf("%s: got %v, want INVALID_ARGUMENT with a message", what, err)
	}
}

func ptr[T any](v T) *T { return &v }

func FuzzGetRequest(f *testing.F) {
	seeds(f, &eddyv1.GetRequest{Table: "counts", Key: []byte("k")},
		&eddyv1.GetRequest{Table: "w", Key: []byte("k"), WindowStart: timestamppb.New(time.Unix(60, 0))},
		&eddyv1.GetRequest{Table: "w", Key: []byte("k"), WindowStart: &timestamppb.Timestamp{Seconds: 1, Nanos: -1}},
		&eddyv1.GetRequest{Key: []byte("k")}, &eddyv1.GetRequest{Table: "counts"})
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &eddyv1.GetRequest{}
		if !decode(b, req) {
			return
		}
		ok := req.GetTable() != "" && len(req.GetKey()) > 0 && (req.WindowStart == nil || req.WindowStart.IsValid())
		checkRefusal(t, "validateGet", req, validateGet(req), ok)
	})
}

func FuzzScanRequest(f *testing.F) {
	seeds(f, &eddyv1.ScanRequest{Table: "counts", Limit: 10, Partitions: []int32{0, 3}},
		&eddyv1.ScanRequest{Table: "counts", Limit: live.MaxScanLimit + 1},
		&eddyv1.ScanRequest{Table: "counts", Partitions: []int32{-1}}, &eddyv1.ScanRequest{Prefix: []byte("a")})
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &eddyv1.ScanRequest{}
		if !decode(b, req) {
			return
		}
		ok := req.GetTable() != "" && req.GetLimit() <= live.MaxScanLimit
		for _, p := range req.GetPartitions() {
			ok = ok && p >= 0
		}
		checkRefusal(t, "validateScan", req, validateScan(req), ok)
	})
}

func FuzzSendRequest(f *testing.F) {
	seeds(f, &eddyv1.SendRequest{Topic: "orders", Key: []byte("k"), Value: []byte("v"), Partition: ptr(int32(2)),
		Headers: []*eddyv1.Header{{Key: "h", Value: []byte("x")}}},
		&eddyv1.SendRequest{Topic: "orders", Partition: ptr(int32(-1))},
		&eddyv1.SendRequest{Topic: "orders", Headers: []*eddyv1.Header{{Value: []byte("x")}}}, &eddyv1.SendRequest{})
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &eddyv1.SendRequest{}
		if !decode(b, req) {
			return
		}
		ok := req.GetTopic() != "" && (req.Partition == nil || *req.Partition >= 0)
		for _, h := range req.GetHeaders() {
			ok = ok && h.GetKey() != ""
		}
		checkRefusal(t, "validateSend", req, validateSend(req), ok)
	})
}

func FuzzWatchRequest(f *testing.F) {
	seeds(f, &eddyv1.WatchRequest{}, &eddyv1.WatchRequest{Interval: durationpb.New(time.Second)},
		&eddyv1.WatchRequest{Interval: durationpb.New(time.Millisecond)},
		&eddyv1.WatchRequest{Interval: &durationpb.Duration{Seconds: 1, Nanos: -5}},
		&eddyv1.WatchRequest{Interval: &durationpb.Duration{Seconds: 1 << 62}})
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &eddyv1.WatchRequest{}
		if !decode(b, req) {
			return
		}
		d := req.GetInterval()
		ok := d == nil || (d.IsValid() && d.AsDuration() >= minWatchInterval)
		got, err := validateWatch(req)
		checkRefusal(t, "validateWatch", req, err, ok)
		if want := defaultWatchInterval; ok && d == nil && got != want {
			t.Fatalf("validateWatch without an interval: got %v, want %v", got, want)
		}
		if ok && d != nil && got != d.AsDuration() {
			t.Fatalf("validateWatch(%v): got %v, want %v", d, got, d.AsDuration())
		}
	})
}

func FuzzShutdownRequest(f *testing.F) {
	seeds(f, &eddyv1.ShutdownRequest{}, &eddyv1.ShutdownRequest{Reason: "deploy"},
		&eddyv1.ShutdownRequest{Reason: string(bytes.Repeat([]byte("x"), maxShutdownBytes+1))})
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &eddyv1.ShutdownRequest{}
		if !decode(b, req) {
			return
		}
		checkRefusal(t, "validateShutdown", req, validateShutdown(req), len(req.GetReason()) <= maxShutdownBytes)
	})
}

// FuzzConnectHello: the first message of a Connect stream.
func FuzzConnectHello(f *testing.F) {
	long := string(bytes.Repeat([]byte("i"), maxHelloIDBytes+1))
	seeds(f, &eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Hello{Hello: &eddyv1.Hello{
		App: "wc", Agent: "count", InstanceId: "i-1", ProtocolVersion: 1, Token: "t",
		Credit: &eddyv1.Credit{Events: 100, Bytes: 1 << 20}}}},
		&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Hello{Hello: &eddyv1.Hello{Agent: "count", InstanceId: long}}},
		&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Credit{Credit: &eddyv1.Credit{Events: 1}}},
		&eddyv1.ConnectRequest{})
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &eddyv1.ConnectRequest{}
		if !decode(b, req) {
			return
		}
		want := req.GetHello()
		ok := want != nil && len(want.GetApp()) <= maxHelloIDBytes && len(want.GetAgent()) <= maxHelloIDBytes &&
			len(want.GetInstanceId()) <= maxHelloIDBytes
		h, err := validateHello(req)
		checkRefusal(t, "validateHello", req, err, ok)
		if ok && h != want {
			t.Fatalf("validateHello returned %v, want the request's Hello", h)
		}
	})
}

// FuzzConnectMessage: each kind of agent message after the Hello converts
// field for field; a Hello again or a message of no kind is refused.
func FuzzConnectMessage(f *testing.F) {
	seeds(f,
		&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Credit{Credit: &eddyv1.Credit{Events: 10, Bytes: 1 << 40}}},
		&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Results{Results: &eddyv1.Results{Topic: "in", Partition: 3, Epoch: 7,
			Results: []*eddyv1.Result{{Offset: 42, Status: eddyv1.ResultStatus_RESULT_STATUS_OK,
				Produced: []*eddyv1.Record{{Topic: "out", Key: []byte("k"), Value: []byte("v"), Headers: []*eddyv1.Header{{Key: "h"}},
					Timestamp: timestamppb.New(time.Unix(1700000000, 5))}},
				Mutations: []*eddyv1.Mutation{{Table: "t", Key: []byte("k"), Value: []byte("1"), WindowStart: timestamppb.New(time.Unix(60, 0))}}},
				{Offset: 43, Status: eddyv1.ResultStatus_RESULT_STATUS_RETRY, Error: "later"}}}}},
		&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_AssignAck{AssignAck: &eddyv1.AssignAck{Topic: "in", Partition: 1, Epoch: 2}}},
		&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_RevokeAck{RevokeAck: &eddyv1.RevokeAck{Topic: "in", Partition: 1, Epoch: 2}}},
		&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_StateGet{StateGet: &eddyv1.StateGet{RequestId: 9, Topic: "in", Table: "t", Key: []byte("k")}}},
		&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Hello{Hello: &eddyv1.Hello{Agent: "a"}}},
		&eddyv1.ConnectRequest{})
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &eddyv1.ConnectRequest{}
		if !decode(b, req) {
			return
		}
		in, err := inbound(req)
		switch req.GetMsg().(type) {
		case *eddyv1.ConnectRequest_Hello, nil:
			checkRefusal(t, "inbound", req, err, false)
			return
		}
		checkRefusal(t, "inbound", req, err, true)
		set := 0
		for _, p := range []bool{in.credit != nil, in.results != nil, in.assignAck != nil, in.revokeAck != nil, in.stateGet != nil} {
			if p {
				set++
			}
		}
		if set != 1 {
			t.Fatalf("inbound(%v): %d kinds set, want 1", req, set)
		}
		switch m := req.GetMsg().(type) {
		case *eddyv1.ConnectRequest_Credit:
			if in.credit == nil || in.credit.events != m.Credit.GetEvents() || in.credit.bytes != m.Credit.GetBytes() {
				t.Fatalf("credit %v converted to %+v", m.Credit, in.credit)
			}
		case *eddyv1.ConnectRequest_AssignAck:
			a := in.assignAck
			if a == nil || a.Topic != m.AssignAck.GetTopic() || a.Partition != m.AssignAck.GetPartition() || a.Epoch != m.AssignAck.GetEpoch() {
				t.Fatalf("assign ack %v converted to %+v", m.AssignAck, a)
			}
		case *eddyv1.ConnectRequest_RevokeAck:
			a := in.revokeAck
			if a == nil || a.Topic != m.RevokeAck.GetTopic() || a.Partition != m.RevokeAck.GetPartition() || a.Epoch != m.RevokeAck.GetEpoch() {
				t.Fatalf("revoke ack %v converted to %+v", m.RevokeAck, a)
			}
		case *eddyv1.ConnectRequest_StateGet:
			g, w := in.stateGet, m.StateGet
			if g == nil || g.RequestID != w.GetRequestId() || g.Topic != w.GetTopic() || g.Partition != w.GetPartition() ||
				g.Epoch != w.GetEpoch() || g.Table != w.GetTable() || !bytes.Equal(g.Key, w.GetKey()) {
				t.Fatalf("state get %v converted to %+v", w, g)
			}
		case *eddyv1.ConnectRequest_Results:
			r, w := in.results, m.Results
			if r == nil || r.Topic != w.GetTopic() || r.Partition != w.GetPartition() || r.Epoch != w.GetEpoch() || len(r.Results) != len(w.GetResults()) {
				t.Fatalf("results %v converted to %+v", w, r)
			}
			for i, x := range w.GetResults() {
				g := r.Results[i]
				if g.Offset != x.GetOffset() || int32(g.Status) != int32(x.GetStatus()) || g.Error != x.GetError() ||
					len(g.Produced) != len(x.GetProduced()) || len(g.Mutations) != len(x.GetMutations()) {
					t.Fatalf("result %d %v converted to %+v", i, x, g)
				}
				for j, p := range x.GetProduced() {
					if gp := g.Produced[j]; gp.Topic != p.GetTopic() || !bytes.Equal(gp.Key, p.GetKey()) ||
						!bytes.Equal(gp.Value, p.GetValue()) || len(gp.Headers) != len(p.GetHeaders()) ||
						(p.GetTimestamp() == nil && !gp.Timestamp.IsZero()) ||
						(p.GetTimestamp() != nil && !gp.Timestamp.Equal(p.GetTimestamp().AsTime())) {
						t.Fatalf("result %d produced %d %v converted to %+v", i, j, p, gp)
					}
				}
				for j, mu := range x.GetMutations() {
					if gm := g.Mutations[j]; gm.Table != mu.GetTable() || !bytes.Equal(gm.Key, mu.GetKey()) ||
						!bytes.Equal(gm.Value, mu.GetValue()) || gm.Delete != mu.GetDelete() ||
						(mu.GetWindowStart() != nil && !gm.WindowStart.Equal(mu.GetWindowStart().AsTime())) {
						t.Fatalf("result %d mutation %d %v converted to %+v", i, j, mu, gm)
					}
				}
			}
		}
	})
}
