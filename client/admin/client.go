// Package admin is the Go management SDK for eddy workers: it speaks the
// worker's gRPC control plane (eddy.v1 LifecycleService, AgentService,
// TableService, MonitorService) and is what workerctl is built on.
//
// Dial returns a Client; the common lifecycle calls have methods (Status,
// Pause, Resume, Shutdown) and every service is reachable through its
// generated client (Lifecycle, Agents, Tables, Monitor). Whichever way a call
// is made, a worker that does not answer yields an error wrapping
// ErrUnreachable and a refused token one wrapping ErrUnauthenticated.
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/internal/grpcconn"
	"github.com/eddy-streams/eddy/internal/tlsfiles"
)

// Client is a connection to one worker's control plane. It is safe for
// concurrent use by multiple goroutines. Close it when done.
type Client struct {
	addr string
	opts options
	conn *grpc.ClientConn

	lifecycle eddyv1.LifecycleServiceClient
	agents    eddyv1.AgentServiceClient
	tables    eddyv1.TableServiceClient
	topics    eddyv1.TopicServiceClient
	monitor   eddyv1.MonitorServiceClient

	// lastDialErr is the most recent failed connection attempt, nil once one
	// succeeds. gRPC reduces it to status text; keeping it lets errors name
	// the real cause and keep the typed network error in the chain.
	lastDialErr atomic.Pointer[dialFailure]
	// tlsRec keeps the last TLS failure, when TLS is on.
	tlsRec *tlsfiles.Recorder

	closeOnce sync.Once
	closeErr  error
}

type dialFailure struct{ err error }

// Dial prepares a Client for the worker at addr, a host:port such as
// "127.0.0.1:6066". It does not wait for the connection: the connection is
// made by the first call, and a worker that is not answering is reported by
// that call as an error wrapping ErrUnreachable. Dial itself returns an error
// only when addr or an option is invalid or ctx is already done.
//
// Without options the connection is plaintext, sends no token and gives each
// connection attempt DefaultDialTimeout.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := grpcconn.ValidateAddr(addr); err != nil {
		return nil, err
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("admin.Dial: %w", err)
	}

	c := &Client{addr: addr, opts: o}
	transportCreds, rec := grpcconn.Credentials(o.tlsConfig)
	c.tlsRec = rec
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(transportCreds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.DefaultConfig,
			MinConnectTimeout: o.dialTimeout,
		}),
		grpc.WithContextDialer(c.dial),
		grpc.WithChainUnaryInterceptor(c.unaryInterceptor),
		grpc.WithChainStreamInterceptor(c.streamInterceptor),
	}
	if o.token != "" {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearerToken(o.token)))
	}
	// passthrough hands the address to our dialer unresolved, so name
	// resolution failures are dial errors we can report (see lastDialErr).
	conn, err := grpc.NewClient("passthrough:///"+addr, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("admin.Dial %s: %w", addr, err)
	}
	c.conn = conn
	c.lifecycle = eddyv1.NewLifecycleServiceClient(conn)
	c.agents = eddyv1.NewAgentServiceClient(conn)
	c.tables = eddyv1.NewTableServiceClient(conn)
	c.topics = eddyv1.NewTopicServiceClient(conn)
	c.monitor = eddyv1.NewMonitorServiceClient(conn)
	return c, nil
}

func (c *Client) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		c.lastDialErr.Store(&dialFailure{err: err})
		return nil, err
	}
	c.lastDialErr.Store(nil)
	return conn, nil
}

func (c *Client) unaryInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return c.classify(ctx, invoker(ctx, method, req, reply, cc, opts...))
}

func (c *Client) streamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, c.classify(ctx, err)
	}
	return &classifiedStream{ClientStream: s, c: c}, nil
}

// classifiedStream classifies stream errors too: on a server stream the
// connection failure usually surfaces at the first RecvMsg, not at creation.
type classifiedStream struct {
	grpc.ClientStream
	c *Client
}

func (s *classifiedStream) SendMsg(m any) error {
	return s.classifyStreamErr(s.ClientStream.SendMsg(m))
}

func (s *classifiedStream) RecvMsg(m any) error {
	return s.classifyStreamErr(s.ClientStream.RecvMsg(m))
}

func (s *classifiedStream) classifyStreamErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	return s.c.classify(s.Context(), err)
}

// bearerToken sends "authorization: Bearer <token>". It does not require
// transport security so that plaintext loopback, the worker's default, works.
type bearerToken string

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return false }

// Addr returns the address passed to Dial. Safe for concurrent use.
func (c *Client) Addr() string { return c.addr }

// Lifecycle returns the generated LifecycleService client over this
// connection, for calls or call options the methods of Client do not cover.
// Its errors are classified like those of Client's methods. Safe for
// concurrent use.
func (c *Client) Lifecycle() eddyv1.LifecycleServiceClient { return c.lifecycle }

// Agents returns the generated AgentService client over this connection.
// Its errors are classified like those of Client's methods. Safe for
// concurrent use.
func (c *Client) Agents() eddyv1.AgentServiceClient { return c.agents }

// Tables returns the generated TableService client over this connection.
// Its errors are classified like those of Client's methods. Safe for
// concurrent use.
func (c *Client) Tables() eddyv1.TableServiceClient { return c.tables }

// Topics returns the generated TopicService client over this connection.
// Safe for concurrent use.
func (c *Client) Topics() eddyv1.TopicServiceClient { return c.topics }

// Monitor returns the generated MonitorService client over this connection.
// Its errors are classified like those of Client's methods. Safe for
// concurrent use.
func (c *Client) Monitor() eddyv1.MonitorServiceClient { return c.monitor }

// Status returns the worker's status: state, identity, assigned partitions,
// agents, recovery progress, stalls, recent Kafka errors and warnings. It
// needs the token only when the worker protects reads. Safe for concurrent
// use.
func (c *Client) Status(ctx context.Context) (*eddyv1.GetStatusResponse, error) {
	resp, err := c.lifecycle.GetStatus(ctx, &eddyv1.GetStatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("get status: %w", err)
	}
	return resp, nil
}

// Workers lists the app's workers with the gRPC addresses they advertise,
// as the worker at Addr sees the consumer group (docs/workerctl.md, status
// --all). It needs the token only when the worker protects reads. Safe for
// concurrent use.
func (c *Client) Workers(ctx context.Context) (*eddyv1.ListWorkersResponse, error) {
	resp, err := c.lifecycle.ListWorkers(ctx, &eddyv1.ListWorkersRequest{})
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	return resp, nil
}

// Pause stops event delivery to agent, or to every agent when agent is
// empty. Nothing is skipped: consumption of the affected partitions is paused
// in Kafka. It needs the token when the worker has one configured. Safe for
// concurrent use.
func (c *Client) Pause(ctx context.Context, agent string) (*eddyv1.PauseResponse, error) {
	resp, err := c.lifecycle.Pause(ctx, &eddyv1.PauseRequest{Agent: agent})
	if err != nil {
		return nil, fmt.Errorf("pause %s: %w", agentLabel(agent), err)
	}
	return resp, nil
}

// Resume undoes Pause for agent, or for every agent when agent is empty. It
// needs the token when the worker has one configured. Safe for concurrent
// use.
func (c *Client) Resume(ctx context.Context, agent string) (*eddyv1.ResumeResponse, error) {
	resp, err := c.lifecycle.Resume(ctx, &eddyv1.ResumeRequest{Agent: agent})
	if err != nil {
		return nil, fmt.Errorf("resume %s: %w", agentLabel(agent), err)
	}
	return resp, nil
}

// Shutdown asks the worker to shut down gracefully and returns as soon as the
// worker has accepted; the response carries the deadline after which the
// worker forces its exit. reason is logged by the worker and may be empty. It
// needs the token when the worker has one configured. Safe for concurrent
// use.
func (c *Client) Shutdown(ctx context.Context, reason string) (*eddyv1.ShutdownResponse, error) {
	resp, err := c.lifecycle.Shutdown(ctx, &eddyv1.ShutdownRequest{Reason: reason})
	if err != nil {
		return nil, fmt.Errorf("shutdown: %w", err)
	}
	return resp, nil
}

// Close closes the connection. Calls in progress fail and later calls fail.
// It is idempotent and safe for concurrent use; every call returns the result
// of the first.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.conn.Close() })
	return c.closeErr
}

func agentLabel(agent string) string {
	if agent == "" {
		return "all agents"
	}
	return fmt.Sprintf("agent %q", agent)
}
