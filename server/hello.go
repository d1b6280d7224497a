package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// helloGate holds what the Connect streams of all clients share before and
// after their Hello (docs/operations.md#security):
//   - the deadline for the Hello and the bound on streams still waiting
//     for theirs, so streams that never speak hold little and nothing else;
//   - the bound on the open streams of each client;
//   - under mutual TLS, the client-certificate identity of each connected
//     agent instance: a session presenting another identity may not
//     replace it.
//
// Safe for concurrent use.
type helloGate struct {
	timeout    time.Duration
	maxPending int
	maxPendCl  int // pending streams per client
	maxClient  int
	mtls       bool // client certificates are required and verified

	mu      sync.Mutex
	pending int
	pendBy  map[string]int        // streams waiting for their Hello by client key
	clients map[string]int        // open streams by client key
	holders map[instanceKey]*hold // the identity holding each instance id
}

type instanceKey struct{ agent, instance string }

// hold is one stream's claim on an instance id; compared by pointer.
type hold struct{ identity string }

func newHelloGate(cfg Config) *helloGate {
	return &helloGate{
		timeout:    orDefault(cfg.HelloTimeout, defaultHelloTimeout),
		maxPending: orDefault(cfg.MaxPendingHello, defaultMaxPendingHello),
		maxPendCl:  orDefault(cfg.MaxPendingHelloPerClient, defaultMaxPendingPerClient),
		pendBy:     map[string]int{},
		maxClient:  orDefault(cfg.MaxStreamsPerClient, defaultMaxStreamsPerClient),
		mtls:       cfg.TLS != nil && cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert,
		clients:    map[string]int{},
		holders:    map[instanceKey]*hold{},
	}
}

// client is who opened a stream: its verified certificate's subject under
// TLS with client certificates, and its IP address.
type client struct {
	identity string // "" without a verified client certificate
	ip       string
}

// key is what the per-client stream bound counts by.
func (c client) key() string {
	if c.identity != "" {
		return "cert:" + c.identity
	}
	return "ip:" + c.ip
}

func (c client) String() string {
	if c.identity != "" {
		return fmt.Sprintf("client certificate %q", c.identity)
	}
	return "client " + c.ip
}

// clientOf returns who opened the stream of ctx.
func clientOf(ctx context.Context) client {
	var c client
	p, ok := peer.FromContext(ctx)
	if !ok {
		return c
	}
	if p.Addr != nil {
		c.ip = p.Addr.String()
		if host, _, err := net.SplitHostPort(c.ip); err == nil {
			c.ip = host
		}
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		if ch := ti.State.VerifiedChains; len(ch) > 0 && len(ch[0]) > 0 {
			c.identity = ch[0][0].Subject.String()
		}
	}
	return c
}

// open admits a new stream of c before its Hello; done, called once when
// the stream ends, releases it. The Hello's wait is released separately,
// with helloed.
func (g *helloGate) open(c client) (helloed, done func(), err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := c.key()
	switch {
	case g.pendBy[k] >= g.maxPendCl:
		return nil, nil, status.Errorf(codes.ResourceExhausted,
			"%s has %d Connect streams waiting to send their Hello (limits.max_pending_hello_per_client)", c, g.pendBy[k])
	case g.pending >= g.maxPending:
		return nil, nil, status.Errorf(codes.ResourceExhausted,
			"%d Connect streams are waiting to send their Hello (limits.max_pending_hello): try again later", g.pending)
	case g.clients[c.key()] >= g.maxClient:
		return nil, nil, status.Errorf(codes.ResourceExhausted,
			"%s has %d Connect streams open (limits.max_streams_per_client)", c, g.clients[c.key()])
	}
	g.pending++
	g.pendBy[k]++
	g.clients[k]++
	var once sync.Once
	helloed = func() {
		once.Do(func() {
			g.mu.Lock()
			g.pending--
			if g.pendBy[k]--; g.pendBy[k] <= 0 {
				delete(g.pendBy, k)
			}
			g.mu.Unlock()
		})
	}
	done = func() {
		helloed()
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.clients[c.key()]--; g.clients[c.key()] <= 0 {
			delete(g.clients, c.key())
		}
	}
	return helloed, done, nil
}

// claim binds agent instance id to c's identity for the stream's session,
// refusing it when a session of another identity holds it under mutual
// TLS. release, called when the stream ends, drops the claim unless a
// newer session took it over.
func (g *helloGate) claim(agent, instance string, c client) (release func(), err error) {
	if !g.mtls || instance == "" {
		return func() {}, nil
	}
	k := instanceKey{agent, instance}
	g.mu.Lock()
	defer g.mu.Unlock()
	if h, ok := g.holders[k]; ok && h.identity != c.identity {
		return nil, status.Errorf(codes.PermissionDenied,
			"instance %q of agent %q is connected with client certificate %q: a session with client certificate %q may not replace it",
			instance, agent, h.identity, c.identity)
	}
	h := &hold{identity: c.identity}
	g.holders[k] = h
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.holders[k] == h {
			delete(g.holders, k)
		}
	}, nil
}

// pendingNow is the number of streams waiting for their Hello.
func (g *helloGate) pendingNow() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending
}
