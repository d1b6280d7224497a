package server

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/app"
	"github.com/eddy-streams/eddy/worker/monitor"
)

type monitorCore interface {
	State() app.State
	Snapshot() monitor.Snapshot
	WatchDropped()
}

type monitorServer struct {
	eddyv1.UnsafeMonitorServiceServer
	core monitorCore
	log  *slog.Logger
}

// Watch limits.
const (
	defaultWatchInterval = time.Second
	minWatchInterval     = 100 * time.Millisecond
)

func (s *monitorServer) GetSnapshot(context.Context, *eddyv1.GetSnapshotRequest) (*eddyv1.GetSnapshotResponse, error) {
	return &eddyv1.GetSnapshotResponse{Snapshot: s.snapshot()}, nil
}

// Watch sends a snapshot every interval until the caller goes away. A
// snapshot is taken on time whatever the caller does; one the caller is not
// ready for replaces the one waiting and is counted as dropped, so a slow
// reader never holds the worker up.
func (s *monitorServer) Watch(req *eddyv1.WatchRequest, stream grpc.ServerStreamingServer[eddyv1.WatchResponse]) error {
	interval, err := validateWatch(req)
	if err != nil {
		return err
	}
	ctx := stream.Context()
	mailbox := make(chan *eddyv1.WatchResponse, 1)
	var dropped uint64
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			resp := &eddyv1.WatchResponse{Snapshot: s.snapshot(), Dropped: dropped}
			select {
			case mailbox <- resp:
			default:
				// The caller has not taken the previous one: replace it.
				select {
				case <-mailbox:
					dropped++
					s.core.WatchDropped()
					resp.Dropped = dropped
				default:
				}
				select {
				case mailbox <- resp:
				default:
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case resp := <-mailbox:
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}

func (s *monitorServer) snapshot() *eddyv1.Snapshot {
	snap := s.core.Snapshot()
	out := &eddyv1.Snapshot{
		TakenAt:    timestamppb.New(snap.TakenAt),
		State:      stateProto(s.core.State()),
		Rebalances: snap.Rebalances,
		Stalled:    stallsProto(snap.Stalled),
	}
	for _, p := range snap.Partitions {
		out.Partitions = append(out.Partitions, &eddyv1.PartitionStats{
			Topic: p.Topic, Partition: p.Partition, Agent: p.Agent,
			Received: p.Received, Delivered: p.Delivered, Processed: p.Processed, Acked: p.Processed, Retried: p.Retried,
			DeadLettered: p.DeadLettered, InFlight: p.InFlight, Lag: p.Lag, Committed: p.Committed,
			ProcessingP99: durationpb.New(p.ProcessingP99), EndToEndP99: durationpb.New(p.EndToEndP99),
			EventsPerSecond: p.EventsPerSecond,
		})
	}
	for _, a := range snap.Agents {
		out.Agents = append(out.Agents, &eddyv1.AgentStats{
			Agent: a.Agent, Sessions: uint32(max(a.Sessions, 0)), Connects: a.Connects, Disconnects: a.Disconnects,
			Processed: a.Processed, Acked: a.Processed, InFlight: a.InFlight, StaleDropped: a.StaleDropped,
		})
	}
	return out
}

func stallsProto(stalls []monitor.Stall) []*eddyv1.Stall {
	var out []*eddyv1.Stall
	for _, st := range stalls {
		out = append(out, &eddyv1.Stall{
			Partition:  &eddyv1.TopicPartition{Topic: st.Topic, Partition: st.Partition},
			Agent:      st.Agent,
			InstanceId: st.InstanceID,
			Since:      timestamppb.New(st.Since),
			Reason:     st.Reason,
		})
	}
	return out
}
