package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/app"
)

type agentsCore interface {
	AgentInfos() []app.AgentInfo
	OpenAgentSession(agents.Hello) (*agents.Session, agents.Welcome, error)
}

type agentServer struct {
	eddyv1.UnsafeAgentServiceServer
	core        agentsCore
	log         *slog.Logger
	token       string
	sendTimeout time.Duration // Config.AgentSendTimeout; 0: defaultAgentSendTimeout
	gate        *helloGate
}

// defaultAgentSendTimeout is the default of Config.AgentSendTimeout.
const defaultAgentSendTimeout = 30 * time.Second

// Connect runs one agent session: Hello → Welcome, then the manager's
// messages out and the agent's messages in, until either side ends it.
func (s *agentServer) Connect(stream grpc.BidiStreamingServer[eddyv1.ConnectRequest, eddyv1.ConnectResponse]) error {
	ctx := stream.Context()
	who := clientOf(ctx)
	helloed, done, err := s.gate.open(who)
	if err != nil {
		return err
	}
	defer done()
	first, err := s.recvHello(stream)
	helloed()
	if err != nil {
		return err
	}
	h, err := validateHello(first)
	if err != nil {
		return err
	}
	if s.token != "" {
		tok := h.GetToken()
		if tok == "" {
			tok, _ = auth.AuthFromMD(ctx, "bearer")
		}
		switch {
		case tok == "":
			return status.Error(codes.Unauthenticated, "missing token: send it in Hello.token or as \"authorization: Bearer <token>\"")
		case !TokenMatches(s.token, tok):
			return status.Error(codes.Unauthenticated, "bad token")
		}
	}
	hello := agents.Hello{
		App:             h.GetApp(),
		Agent:           h.GetAgent(),
		InstanceID:      h.GetInstanceId(),
		ProtocolVersion: h.GetProtocolVersion(),
		CreditEvents:    h.GetCredit().GetEvents(),
		CreditBytes:     h.GetCredit().GetBytes(),
	}
	if p, ok := peer.FromContext(ctx); ok {
		hello.Peer = p.Addr.String()
	}
	release, err := s.gate.claim(hello.Agent, hello.InstanceID, who)
	if err != nil {
		s.log.Warn("agent session refused", "agent", hello.Agent, "instance", hello.InstanceID, "peer", hello.Peer, "err", err)
		return err
	}
	defer release()
	sess, w, err := s.core.OpenAgentSession(hello)
	if err != nil {
		return toStatus(s.log, err)
	}
	err = stream.Send(&eddyv1.ConnectResponse{Msg: &eddyv1.ConnectResponse_Welcome{Welcome: &eddyv1.Welcome{
		SessionId: w.SessionID,
		Limits: &eddyv1.Limits{
			MaxMessageBytes: w.MaxMessageBytes, MaxBatchEvents: w.MaxBatchEvents,
			MaxBatchBytes: w.MaxBatchBytes, MaxRetries: w.MaxRetries,
		},
	}}})
	if err != nil {
		sess.Close(err)
		return err
	}

	recvErr := make(chan error, 1)
	go func() { recvErr <- receive(stream, sess) }()
	// Sends run on their own goroutine, bounded: a client that stops
	// reading blocks Send on flow control for ever, which would pin this
	// handler and the session's outbox. Returning ends the stream, which
	// unblocks a Send in progress; the goroutine then exits.
	sends := make(chan *eddyv1.ConnectResponse)
	sent := make(chan error, 1)
	defer close(sends)
	go func() {
		for msg := range sends {
			sent <- stream.Send(msg)
		}
	}()
	timeout := s.sendTimeout
	if timeout <= 0 {
		timeout = defaultAgentSendTimeout
	}
	timer := time.NewTimer(timeout)
	timer.Stop()
	for {
		select {
		case out := <-sess.Outbox():
			sends <- outbound(out)
			timer.Reset(timeout)
			select {
			case err := <-sent:
				timer.Stop()
				if err != nil {
					sess.Close(err)
					return err
				}
			case <-timer.C:
				err := fmt.Errorf("%w: a message waited %s to be sent (the agent stopped reading its stream)", agents.ErrStalled, timeout)
				s.log.Warn("agent does not read its stream; ending its session", "session", sess.ID(), "err", err)
				sess.Close(err)
				return toStatus(s.log, err)
			case <-sess.Done():
				return toStatus(s.log, sess.Err())
			case err := <-recvErr:
				return s.received(sess, err)
			}
		case <-sess.Done():
			return toStatus(s.log, sess.Err())
		case err := <-recvErr:
			return s.received(sess, err)
		}
	}
}

// recvHello receives the first message of a Connect stream within the
// gate's Hello deadline: a stream that says nothing is ended, so it holds
// no handler, and counts against limits.max_pending_hello, only that long.
func (s *agentServer) recvHello(stream grpc.BidiStreamingServer[eddyv1.ConnectRequest, eddyv1.ConnectResponse]) (*eddyv1.ConnectRequest, error) {
	type recv struct {
		msg *eddyv1.ConnectRequest
		err error
	}
	got := make(chan recv, 1)
	go func() {
		// Returning from the handler cancels the stream, which ends this
		// Recv if the deadline passed first.
		m, err := stream.Recv()
		got <- recv{m, err}
	}()
	timer := time.NewTimer(s.gate.timeout)
	defer timer.Stop()
	select {
	case r := <-got:
		return r.msg, r.err
	case <-timer.C:
		return nil, status.Errorf(codes.DeadlineExceeded, "no Hello within %s of opening the Connect stream (limits.hello_timeout)", s.gate.timeout)
	}
}

// received ends a session whose stream of agent messages ended with err:
// io.EOF is the agent's graceful stop.
func (s *agentServer) received(sess *agents.Session, err error) error {
	sess.Close(err)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return toStatus(s.log, err)
}

// receive feeds the agent's messages to the session until the stream ends.
// Before each message it waits for room in the manager (Session.WaitRoom):
// what is not read stays in the stream's flow-control window, so an agent
// that floods the worker with results is held back instead of growing the
// worker's memory (docs/architecture.md#memory).
func receive(stream grpc.BidiStreamingServer[eddyv1.ConnectRequest, eddyv1.ConnectResponse], sess *agents.Session) error {
	for {
		if err := sess.WaitRoom(stream.Context()); err != nil {
			return err
		}
		msg, err := stream.Recv()
		if err != nil {
			return err
		}
		in, err := inbound(msg)
		if err != nil {
			return err
		}
		switch {
		case in.credit != nil:
			sess.Credit(in.credit.events, in.credit.bytes)
		case in.results != nil:
			sess.Results(in.results)
		case in.assignAck != nil:
			sess.AssignAck(*in.assignAck)
		case in.revokeAck != nil:
			sess.RevokeAck(*in.revokeAck)
		case in.stateGet != nil:
			sess.StateGet(*in.stateGet)
		}
	}
}

func resultsOf(r *eddyv1.Results) *agents.Results {
	out := &agents.Results{Topic: r.GetTopic(), Partition: r.GetPartition(), Epoch: r.GetEpoch(),
		Results: make([]agents.Result, len(r.GetResults()))}
	for i, x := range r.GetResults() {
		res := agents.Result{Offset: x.GetOffset(), Status: agents.Status(x.GetStatus()), Error: x.GetError()}
		if n := len(x.GetProduced()); n > 0 {
			res.Produced = make([]agents.Record, n)
			for j, p := range x.GetProduced() {
				res.Produced[j] = agents.Record{Topic: p.GetTopic(), Key: p.GetKey(), Value: p.GetValue(), Headers: headersOf(p.GetHeaders())}
				if ts := p.GetTimestamp(); ts != nil {
					res.Produced[j].Timestamp = ts.AsTime()
				}
			}
		}
		for _, m := range x.GetMutations() {
			mu := agents.Mutation{Table: m.GetTable(), Key: m.GetKey(), Value: m.GetValue(), Delete: m.GetDelete()}
			if ws := m.GetWindowStart(); ws != nil {
				// An invalid timestamp names no window of the event: the
				// manager refuses it with the others.
				mu.WindowStart = ws.AsTime()
			}
			res.Mutations = append(res.Mutations, mu)
		}
		out.Results[i] = res
	}
	return out
}

func headersOf(hs []*eddyv1.Header) []agents.Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]agents.Header, len(hs))
	for i, h := range hs {
		out[i] = agents.Header{Key: h.GetKey(), Value: h.GetValue()}
	}
	return out
}

func headersProto(hs []agents.Header) []*eddyv1.Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]*eddyv1.Header, len(hs))
	for i, h := range hs {
		out[i] = &eddyv1.Header{Key: h.Key, Value: h.Value}
	}
	return out
}

// outbound converts one manager message to the wire.
func outbound(o agents.Outbound) *eddyv1.ConnectResponse {
	switch {
	case o.Batch != nil:
		b := o.Batch
		evs := make([]*eddyv1.Event, len(b.Events))
		for i, e := range b.Events {
			evs[i] = &eddyv1.Event{Offset: e.Offset, Key: e.Key, Value: e.Value, Headers: headersProto(e.Headers),
				Timestamp: timestamppb.New(e.Timestamp), Attempt: e.Attempt}
			for _, st := range e.State {
				ts := &eddyv1.TableState{Table: st.Table, HasValue: st.HasValue, Value: st.Value}
				if !st.WindowStart.IsZero() {
					ts.WindowStart = timestamppb.New(st.WindowStart)
				}
				evs[i].State = append(evs[i].State, ts)
			}
		}
		return &eddyv1.ConnectResponse{Msg: &eddyv1.ConnectResponse_EventBatch{EventBatch: &eddyv1.EventBatch{
			Topic: b.Topic, Partition: b.Partition, Epoch: b.Epoch, Events: evs}}}
	case o.Assign != nil:
		a := o.Assign
		return &eddyv1.ConnectResponse{Msg: &eddyv1.ConnectResponse_Assign{Assign: &eddyv1.Assign{
			Topic: a.Topic, Partition: a.Partition, Epoch: a.Epoch}}}
	case o.Revoke != nil:
		r := o.Revoke
		return &eddyv1.ConnectResponse{Msg: &eddyv1.ConnectResponse_Revoke{Revoke: &eddyv1.Revoke{
			Topic: r.Topic, Partition: r.Partition, Epoch: r.Epoch, Deadline: timestamppb.New(r.Deadline)}}}
	case o.StateReply != nil:
		r := o.StateReply
		return &eddyv1.ConnectResponse{Msg: &eddyv1.ConnectResponse_StateReply{StateReply: &eddyv1.StateReply{
			RequestId: r.RequestID, HasValue: r.HasValue, Value: r.Value, Error: r.Error}}}
	default:
		c := o.Committed
		return &eddyv1.ConnectResponse{Msg: &eddyv1.ConnectResponse_Committed{Committed: &eddyv1.Committed{
			Topic: c.Topic, Partition: c.Partition, Offset: c.Offset}}}
	}
}

func (s *agentServer) ListAgents(context.Context, *eddyv1.ListAgentsRequest) (*eddyv1.ListAgentsResponse, error) {
	resp := &eddyv1.ListAgentsResponse{}
	for _, a := range s.core.AgentInfos() {
		info := &eddyv1.AgentInfo{
			Name:       a.Name,
			Topics:     a.Topics,
			Ordering:   a.Ordering,
			Tables:     a.Tables,
			Paused:     a.Paused,
			Unassigned: tpsProto(a.Unassigned),
			InFlight:   a.InFlight,
			Lag:        a.Lag,
		}
		for _, in := range a.Instances {
			info.Instances = append(info.Instances, &eddyv1.AgentInstance{
				InstanceId:   in.InstanceID,
				SessionId:    in.SessionID,
				Peer:         in.Peer,
				ConnectedAt:  timestamppb.New(in.ConnectedAt),
				Partitions:   tpsProto(in.Partitions),
				InFlight:     in.InFlight,
				CreditEvents: in.CreditEvents,
			})
		}
		resp.Agents = append(resp.Agents, info)
	}
	return resp, nil
}
