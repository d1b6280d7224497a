package server

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/internal/grpcconn"
	"github.com/eddy-streams/eddy/worker/app"
	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/tables/live"
)

// ForwardedHeader marks a TableService call forwarded by another worker,
// with that worker's id as the value. A forwarded call is answered
// locally or fails: it is never forwarded again, so a stale view of the
// group cannot make workers bounce a call between them.
const ForwardedHeader = "eddy-forwarded-by"

// forwardTimeout bounds a forwarded call when the caller set no deadline.
const forwardTimeout = 10 * time.Second

// tablesCore is what the table service needs of the worker: the table
// runtime's local side (live.Local: reads of owned partitions, owners) and
// the table list.
type tablesCore interface {
	live.Local
	TableInfos(ctx context.Context) ([]app.TableInfo, error)
	Status() app.Status
}

// tableServer adapts TableService to the table runtime (live.Service),
// which forwards reads of other workers' partitions through peers (the
// forwarder, over gRPC).
type tableServer struct {
	eddyv1.UnsafeTableServiceServer
	core tablesCore
	log  *slog.Logger
	fwd  *forwarder
	svc  *live.Service
}

// newTableServer returns the table service over core; fwd nil: reads of
// other workers' partitions are not forwarded.
func newTableServer(core tablesCore, log *slog.Logger, fwd *forwarder) *tableServer {
	s := &tableServer{core: core, log: log, fwd: fwd}
	s.svc = &live.Service{Local: core, Log: log}
	if fwd != nil {
		s.svc.Peers = &peers{fwd: fwd, me: func() string { return core.Status().WorkerID }}
	}
	return s
}

func (s *tableServer) ListTables(ctx context.Context, _ *eddyv1.ListTablesRequest) (*eddyv1.ListTablesResponse, error) {
	infos, err := s.core.TableInfos(ctx)
	if err != nil {
		return nil, toStatus(s.log, err)
	}
	resp := &eddyv1.ListTablesResponse{}
	for _, t := range infos {
		info := &eddyv1.TableInfo{
			Name:              t.Name,
			Partitions:        t.Partitions,
			ChangelogTopic:    t.ChangelogTopic,
			StandbyReplicas:   uint32(t.StandbyReplicas),
			ActivePartitions:  t.ActivePartitions,
			StandbyPartitions: t.StandbyPartitions,
			Keys:              t.Keys,
		}
		if t.WindowType != "" {
			info.Window = &eddyv1.Window{
				Type:    t.WindowType,
				Size:    durationpb.New(t.WindowSize),
				Expires: durationpb.New(t.WindowExpires),
			}
			if t.WindowStep > 0 {
				info.Window.Step = durationpb.New(t.WindowStep)
			}
		}
		resp.Tables = append(resp.Tables, info)
	}
	return resp, nil
}

func (s *tableServer) Get(ctx context.Context, req *eddyv1.GetRequest) (*eddyv1.GetResponse, error) {
	if err := validateGet(req); err != nil {
		return nil, err
	}
	var ws *time.Time
	if req.WindowStart != nil {
		t := req.WindowStart.AsTime()
		ws = &t
	}
	v, err := s.svc.Get(ctx, live.GetRequest{Table: req.GetTable(), Key: req.GetKey(), WindowStart: ws}, forwardedBy(ctx))
	if err != nil {
		return nil, toStatus(s.log, err)
	}
	return &eddyv1.GetResponse{Key: v.Key, Value: v.Value, Partition: v.Partition, ServedBy: v.ServedBy}, nil
}

// forwardedBy is the worker that forwarded the call (ForwardedHeader), or
// "" for a client's call.
func forwardedBy(ctx context.Context) string {
	if by := metadata.ValueFromIncomingContext(ctx, ForwardedHeader); len(by) > 0 {
		return by[0]
	}
	return ""
}

// peers is live.Peers over the forwarder: each call is marked as forwarded
// by this worker (me), so the owner answers it locally.
type peers struct {
	fwd *forwarder
	me  func() string
}

func (p *peers) Get(ctx context.Context, id, addr string, req live.GetRequest) (live.Value, error) {
	preq := &eddyv1.GetRequest{Table: req.Table, Key: req.Key}
	if req.WindowStart != nil {
		preq.WindowStart = timestamppb.New(*req.WindowStart)
	}
	resp, err := p.fwd.get(ctx, p.me(), id, addr, preq)
	if err != nil {
		return live.Value{}, peerError(err)
	}
	return live.Value{Key: resp.GetKey(), Value: resp.GetValue(), Partition: resp.GetPartition(), ServedBy: resp.GetServedBy()}, nil
}

func (p *peers) Scan(ctx context.Context, id, addr string, req live.ScanRequest) (live.ScanResponse, error) {
	resp, err := p.fwd.scan(ctx, p.me(), id, addr, &eddyv1.ScanRequest{
		Table: req.Table, Prefix: req.Prefix, Limit: uint32(req.Limit),
		PageToken: req.PageToken, Partitions: req.Partitions,
	})
	if err != nil {
		return live.ScanResponse{}, peerError(err)
	}
	out := live.ScanResponse{NextPageToken: resp.GetNextPageToken(), Partitions: resp.GetPartitions(),
		Restoring: resp.GetRestoringPartitions(), ServedBy: resp.GetServedBy(), ForwardedTo: resp.GetForwardedTo()}
	for _, e := range resp.GetEntries() {
		out.Entries = append(out.Entries, live.Entry{Key: e.GetKey(), Value: e.GetValue(), Partition: e.GetPartition()})
	}
	return out, nil
}

// peerError classifies a failed forwarded call for the runtime: no answer
// (not a status of the peer's: no connection, shutting down), the peer
// unavailable, out of time; any other status is the peer's answer, passed
// on as it is.
func peerError(err error) error {
	st, ok := status.FromError(err)
	switch {
	case !ok || st.Code() == codes.Unknown:
		return &live.PeerError{Kind: live.PeerUnreachable, Err: err}
	case st.Code() == codes.Unavailable:
		return &live.PeerError{Kind: live.PeerUnavailable, Err: err}
	case st.Code() == codes.DeadlineExceeded:
		return &live.PeerError{Kind: live.PeerTimeout, Err: err}
	}
	return err
}

// forwarder keeps client connections to the other workers, by address,
// at most maxForwardConns: past it the least recently used one is closed
// (once no call uses it). Close closes them all, at shutdown. Safe for
// concurrent use.
type forwarder struct {
	token    string
	tls      *tls.Config // nil: plaintext
	verified bool        // tls verifies peers against the peer CAs

	mu     sync.Mutex
	conns  map[string]*list.Element // of *fwdConn, in lru
	lru    list.List                // most recently used first
	closed bool
}

// fwdConn is one cached connection and the calls using it now.
type fwdConn struct {
	addr    string
	conn    *grpc.ClientConn
	users   int
	evicted bool // out of the cache: closed when its last user is done
}

// maxForwardConns bounds the cached connections (workers come and go with
// new addresses).
const maxForwardConns = 64

// errForwarderClosed fails a read forwarded after Close.
var errForwarderClosed = errors.New("the worker is shutting down: it forwards no more reads")

// newForwarder returns the forwarder of a server configured with cfg.
func newForwarder(cfg Config) *forwarder {
	f := &forwarder{token: cfg.Token}
	if cfg.TLS != nil {
		// Forwarded reads go to the other workers of the app, which serve
		// the same certificate setup: verify them against the peer CAs
		// (the system roots without) and present this worker's
		// certificate, for peers that require client certificates. The
		// server name checked is the host of the address dialled.
		f.tls = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.PeerCAs, Certificates: cfg.TLS.Certificates}
		f.verified = cfg.PeerCAs != nil
	}
	return f
}

// UnverifiedPeerError refuses to forward a read, which would carry the
// token, to a peer that is not verified (docs/operations.md#security).
type UnverifiedPeerError struct {
	WorkerID, Addr string
	TLS            bool // this worker serves TLS (and lacks tls.peer_ca_file)
}

func (e *UnverifiedPeerError) Error() string {
	missing := "the workers run without TLS: set tls.cert_file, tls.key_file and tls.peer_ca_file"
	if e.TLS {
		missing = "tls.peer_ca_file is not set: set it to the CA that signs the workers' certificates"
	}
	return fmt.Sprintf("not forwarding the read to worker %q at %s: a worker sends its token only to a peer whose certificate verifies against tls.peer_ca_file, or on loopback; %s",
		e.WorkerID, e.Addr, missing)
}

// check refuses a peer the token may not go to.
func (f *forwarder) check(id, addr string) error {
	if f.token == "" || f.verified || config.Loopback(addr) {
		return nil
	}
	return status.Error(codes.FailedPrecondition, (&UnverifiedPeerError{WorkerID: id, Addr: addr, TLS: f.tls != nil}).Error())
}

// conn returns the connection to addr, and release to call when the call
// using it is done.
func (f *forwarder) conn(addr string) (c *grpc.ClientConn, release func(), err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, nil, errForwarderClosed
	}
	if e, ok := f.conns[addr]; ok {
		f.lru.MoveToFront(e)
		fc := e.Value.(*fwdConn)
		fc.users++
		return fc.conn, func() { f.release(fc) }, nil
	}
	if f.conns == nil {
		f.conns = map[string]*list.Element{}
	}
	for len(f.conns) >= maxForwardConns {
		f.evict(f.lru.Back())
	}
	creds, _ := grpcconn.Credentials(f.tls)
	c, err = grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxSendMsgBytes)))
	if err != nil {
		return nil, nil, err
	}
	fc := &fwdConn{addr: addr, conn: c, users: 1}
	f.conns[addr] = f.lru.PushFront(fc)
	return c, func() { f.release(fc) }, nil
}

// evict drops e from the cache and closes its connection, or leaves that
// to its last user. f.mu is held.
func (f *forwarder) evict(e *list.Element) {
	fc := f.lru.Remove(e).(*fwdConn)
	delete(f.conns, fc.addr)
	fc.evicted = true
	if fc.users == 0 {
		_ = fc.conn.Close()
	}
}

func (f *forwarder) release(fc *fwdConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fc.users--
	if fc.evicted && fc.users == 0 {
		_ = fc.conn.Close()
	}
}

// Close closes every connection, in use or not (the server has stopped);
// later forwarded reads fail with errForwarderClosed. Idempotent.
func (f *forwarder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	var errs []error
	for e := f.lru.Front(); e != nil; e = f.lru.Front() {
		fc := f.lru.Remove(e).(*fwdConn)
		delete(f.conns, fc.addr)
		fc.evicted = true
		errs = append(errs, fc.conn.Close())
	}
	return errors.Join(errs...)
}

// client returns a TableService client of the worker at addr and the
// context for a call forwarded by worker me (marked, authorized, bounded).
// The returned cancel also releases the connection.
func (f *forwarder) client(ctx context.Context, me, id, addr string) (eddyv1.TableServiceClient, context.Context, context.CancelFunc, error) {
	if err := f.check(id, addr); err != nil {
		return nil, nil, nil, err
	}
	c, release, err := f.conn(addr)
	if err != nil {
		return nil, nil, nil, err
	}
	cancel := context.CancelFunc(release)
	if _, ok := ctx.Deadline(); !ok {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, forwardTimeout)
		cancel = func() { stop(); release() }
	}
	md := metadata.Pairs(ForwardedHeader, me)
	if f.token != "" {
		md.Append("authorization", "Bearer "+f.token)
	}
	return eddyv1.NewTableServiceClient(c), metadata.NewOutgoingContext(ctx, md), cancel, nil
}

func (f *forwarder) get(ctx context.Context, me, id, addr string, req *eddyv1.GetRequest) (*eddyv1.GetResponse, error) {
	c, ctx, cancel, err := f.client(ctx, me, id, addr)
	if err != nil {
		return nil, err
	}
	defer cancel()
	return c.Get(ctx, req)
}

func (f *forwarder) scan(ctx context.Context, me, id, addr string, req *eddyv1.ScanRequest) (*eddyv1.ScanResponse, error) {
	c, ctx, cancel, err := f.client(ctx, me, id, addr)
	if err != nil {
		return nil, err
	}
	defer cancel()
	return c.Scan(ctx, req)
}
