package server

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/app"
)

type agentsCore interface {
	AgentInfos() []app.AgentInfo
}

type agentServer struct {
	eddyv1.UnsafeAgentServiceServer
	core agentsCore
	log  *slog.Logger
}

func (s *agentServer) Connect(grpc.BidiStreamingServer[eddyv1.ConnectRequest, eddyv1.ConnectResponse]) error {
	return unimplemented("AgentService.Connect (remote agents)")
}

func (s *agentServer) ListAgents(context.Context, *eddyv1.ListAgentsRequest) (*eddyv1.ListAgentsResponse, error) {
	resp := &eddyv1.ListAgentsResponse{}
	for _, a := range s.core.AgentInfos() {
		resp.Agents = append(resp.Agents, &eddyv1.AgentInfo{
			Name:       a.Name,
			Topics:     a.Topics,
			Ordering:   a.Ordering,
			Tables:     a.Tables,
			Paused:     a.Paused,
			Unassigned: tpsProto(a.Unassigned),
		})
	}
	return resp, nil
}
