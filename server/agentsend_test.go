package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/transport"
)

// sessionCore opens real sessions of an agents.Manager.
type sessionCore struct {
	*fakeCore
	m *agents.Manager
}

func (c *sessionCore) OpenAgentSession(h agents.Hello) (*agents.Session, agents.Welcome, error) {
	return c.m.Open(h)
}

type nopConsumer struct{}

func (nopConsumer) Pause([]transport.TopicPartition) error   { return nil }
func (nopConsumer) Resume([]transport.TopicPartition) error  { return nil }
func (nopConsumer) Commit([]transport.PartitionOffset) error { return nil }

type nopProducer struct{}

func (nopProducer) Produce(transport.Record, func(error))              {}
func (nopProducer) ProduceOffset(transport.Record, func(int64, error)) {}

// An agent that stops reading its stream must not pin the Connect handler
// in Send: the send is bounded, the session ends (its events go back to
// pending) and the stream ends with RESOURCE_EXHAUSTED. Before the fix the
// handler and the session stayed for ever.
func TestConnectEndsSessionOfAgentNotReading(t *testing.T) {
	m := agents.New(agents.Config{
		App:    "app",
		Agents: []config.Agent{{Name: "count", Topics: []string{"in"}, Ordering: "partition"}},
		Logger: slog.New(slog.DiscardHandler),
	}, nopProducer{})
	m.Attach(nopConsumer{})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran })

	s := New(Config{Logger: slog.New(slog.DiscardHandler), AgentSendTimeout: 300 * time.Millisecond},
		&sessionCore{fakeCore: &fakeCore{}, m: m}).GRPC
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	// Fixed 64 KiB windows (no BDP growth): a few batches fill them.
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	stream, err := eddyv1.NewAgentServiceClient(conn).Connect(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Hello{Hello: &eddyv1.Hello{
		Agent: "count", InstanceId: "deaf", ProtocolVersion: agents.ProtocolVersion, Credit: &eddyv1.Credit{Events: 1000},
	}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // Welcome
		t.Fatal(err)
	}
	topic := "in"
	m.Assigned([]transport.TopicPartition{{Topic: topic, Partition: 0}})
	value := make([]byte, 100<<10)
	for off := range 40 { // 4 MB, far beyond the windows
		m.Message(&transport.Message{Topic: topic, Partition: 0, Offset: transport.Offset(off),
			Value: value, Timestamp: time.Now()})
	}
	// The client reads nothing more; the worker gives up on it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		infos := m.Info()
		if len(infos) == 1 && len(infos[0].Instances) == 0 && infos[0].Connects == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session of an agent that does not read is still open after 10s: %+v", infos)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Reading now drains what was buffered, then the status.
	for {
		_, err := stream.Recv()
		if err == nil {
			continue
		}
		if got := status.Code(err); got != codes.ResourceExhausted || !strings.Contains(err.Error(), "stopped reading") {
			t.Errorf("stream ended with %v, want ResourceExhausted saying the agent stopped reading", err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("the stream did not end")
		}
		break
	}
}
