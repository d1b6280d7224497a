package server

import (
	"context"

	"google.golang.org/grpc"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

type monitorServer struct {
	eddyv1.UnsafeMonitorServiceServer
}

func (s *monitorServer) GetSnapshot(context.Context, *eddyv1.GetSnapshotRequest) (*eddyv1.GetSnapshotResponse, error) {
	return nil, unimplemented("MonitorService.GetSnapshot (monitor)")
}

func (s *monitorServer) Watch(*eddyv1.WatchRequest, grpc.ServerStreamingServer[eddyv1.WatchResponse]) error {
	return unimplemented("MonitorService.Watch (monitor)")
}
