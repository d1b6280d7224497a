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
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/app"
	"github.com/eddy-streams/eddy/worker/config"
)

// ForwardedHeader marks a TableService call forwarded by another worker,
// with that worker's id as the value. A forwarded call is answered
// locally or fails: it is never forwarded again, so a stale view of the
// group cannot make workers bounce a call between them.
const ForwardedHeader = "eddy-forwarded-by"

// forwardTimeout bounds a forwarded call when the caller set no deadline.
const forwardTimeout = 10 * time.Second

type tablesCore interface {
	TableInfos(ctx context.Context) ([]app.TableInfo, error)
	TableGet(ctx context.Context, table string, key []byte, windowStart *time.Time) (app.TableValue, error)
	TableScan(ctx context.Context, table string, prefix []byte, limit int, token string, only []int32) (app.ScanPage, error)
	TablePartitions(table string) (int32, error)
	TableWindowed(table string) bool
	TableOwners(ctx context.Context, table string, parts []int32, refresh bool) ([]app.Owner, error)
	Status() app.Status
}

type tableServer struct {
	eddyv1.UnsafeTableServiceServer
	core tablesCore
	log  *slog.Logger
	fwd  *forwarder
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
	v, err := s.core.TableGet(ctx, req.GetTable(), req.GetKey(), ws)
	var notOwned *app.NotOwnedError
	if errors.As(err, &notOwned) {
		resp, err := s.forwardGet(ctx, req, notOwned)
		if err == nil && resp.Key == nil {
			resp.Key = req.GetKey() // an owner that predates the field
		}
		return resp, err
	}
	if err != nil {
		return nil, toStatus(s.log, err)
	}
	return &eddyv1.GetResponse{Key: req.GetKey(), Value: v.Value, Partition: v.Partition, ServedBy: v.ServedBy}, nil
}

// forwardGet asks the owner of the key's partition, unless the call was
// forwarded already.
func (s *tableServer) forwardGet(ctx context.Context, req *eddyv1.GetRequest, no *app.NotOwnedError) (*eddyv1.GetResponse, error) {
	if by := metadata.ValueFromIncomingContext(ctx, ForwardedHeader); len(by) > 0 {
		return nil, toStatus(s.log, fmt.Errorf(
			"%w: worker %s forwarded the read of table %q partition %d here, but this worker does not own it (%s); the partition probably moved: try again",
			app.ErrUnavailable, by[0], no.Table, no.Partition, no.Error()))
	}
	if s.fwd == nil {
		return nil, toStatus(s.log, fmt.Errorf("%w; this worker does not forward reads", no))
	}
	me := s.core.Status().WorkerID
	resp, err := s.fwd.get(ctx, me, no.WorkerID, no.Addr, req)
	if c := status.Code(err); c == codes.Unavailable || c == codes.Unknown { // Unknown: not a gRPC status, e.g. no connection
		// The owner named by a cached description may have lost the
		// partition in a rebalance: ask the owner of a fresh one, once.
		if owners, oerr := s.core.TableOwners(ctx, no.Table, []int32{no.Partition}, true); oerr == nil && len(owners) == 1 && owners[0].Addr != no.Addr {
			no = &app.NotOwnedError{Table: no.Table, Partition: no.Partition, WorkerID: owners[0].WorkerID, Addr: owners[0].Addr}
			resp, err = s.fwd.get(ctx, me, no.WorkerID, no.Addr, req)
		}
	}
	if err != nil {
		if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
			return nil, err // the owner's answer (NotFound, ...) as it is
		}
		s.log.Warn("forwarding a table read failed", "table", no.Table, "partition", no.Partition, "owner", no.WorkerID, "addr", no.Addr, "err", err)
		return nil, toStatus(s.log, fmt.Errorf("%w: forwarding to the owner of table %q partition %d (worker %q at %s) failed: %v",
			app.ErrUnavailable, no.Table, no.Partition, no.WorkerID, no.Addr, err))
	}
	return resp, nil
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
	creds := insecure.NewCredentials()
	if f.tls != nil {
		creds = credentials.NewTLS(f.tls)
	}
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
