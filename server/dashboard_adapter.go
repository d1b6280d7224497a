package server

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/server/dashboard"
	"github.com/eddy-streams/eddy/worker/tables/live"
)

// DashboardCore is what the dashboard and the gRPC services need of the
// runtime together; *app.App implements it.
type DashboardCore interface {
	Core
	dashboard.Core
}

// Dashboard returns the web dashboard of core (docs/dashboard.md)
// for HTTPHandler, with the server's token settings. Its look-ups go through
// TableService.Get, so a key owned by another worker is read there (like
// `workerctl get`), and it asks the other workers for their status over
// the connections forwarded reads use. Run its Run for the charts.
func (s *Server) Dashboard(core DashboardCore) *dashboard.Dashboard {
	cfg := s.cfg
	return dashboard.New(dashboard.Config{
		Token:        cfg.Token,
		ProtectReads: cfg.ProtectReads,
		Logger:       cfg.Logger,
		Get: func(ctx context.Context, table string, key []byte) (dashboard.GetResult, error) {
			if _, err := core.TablePartitions(table); err != nil {
				return dashboard.GetResult{}, err
			}
			resp, err := s.tables.Get(ctx, &eddyv1.GetRequest{Table: table, Key: key})
			if status.Code(err) == codes.NotFound {
				return dashboard.GetResult{}, live.ErrKeyNotFound
			}
			if err != nil {
				return dashboard.GetResult{}, errors.New(status.Convert(err).Message())
			}
			return dashboard.GetResult{Value: resp.GetValue(), Partition: resp.GetPartition(), ServedBy: resp.GetServedBy()}, nil
		},
		PeerStatus: func(ctx context.Context, addr string) (dashboard.Peer, error) {
			conn, ctx, cancel, err := s.fwd.peer(ctx, core.Status().WorkerID, addr)
			if err != nil {
				return dashboard.Peer{}, err
			}
			defer cancel()
			st, err := eddyv1.NewLifecycleServiceClient(conn).GetStatus(ctx, &eddyv1.GetStatusRequest{})
			if err != nil {
				return dashboard.Peer{}, fmt.Errorf("GetStatus of %s: %s", addr, status.Convert(err).Message())
			}
			return dashboard.Peer{WorkerID: st.GetWorkerId(), HTTPAddr: st.GetHttpAddress(), State: stateName(st.GetState()),
				Version: st.GetVersion(), StartedAt: st.GetStartedAt().AsTime(), Assigned: len(st.GetAssigned())}, nil
		},
	}, core)
}

// stateName is a WorkerState without its prefix: RUNNING, PAUSED, ...
func stateName(s eddyv1.WorkerState) string {
	const prefix = "WORKER_STATE_"
	n := s.String()
	if len(n) > len(prefix) && n[:len(prefix)] == prefix {
		return n[len(prefix):]
	}
	return n
}

// peer returns the connection to the worker at addr and the context for a
// call to it by worker me (authorized, bounded), like client. The returned
// cancel also releases the connection.
func (f *forwarder) peer(ctx context.Context, me, addr string) (*grpc.ClientConn, context.Context, context.CancelFunc, error) {
	c, release, err := f.conn(addr)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, stop := context.WithTimeout(ctx, forwardTimeout)
	md := metadata.Pairs(ForwardedHeader, me)
	if f.token != "" {
		md.Append("authorization", "Bearer "+f.token)
	}
	return c, metadata.NewOutgoingContext(ctx, md), func() { stop(); release() }, nil
}
