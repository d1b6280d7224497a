package server

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/app"
)

type lifecycleCore interface {
	Status() app.Status
	Pause(agent string) (app.State, []string, error)
	Resume(agent string) (app.State, []string, error)
	Shutdown(reason string) time.Time
	Members(ctx context.Context, refresh bool) ([]app.Member, error)
}

type lifecycleServer struct {
	eddyv1.UnsafeLifecycleServiceServer
	core lifecycleCore
	log  *slog.Logger
}

func (s *lifecycleServer) GetStatus(context.Context, *eddyv1.GetStatusRequest) (*eddyv1.GetStatusResponse, error) {
	return statusProto(s.core.Status()), nil
}

func (s *lifecycleServer) Pause(_ context.Context, req *eddyv1.PauseRequest) (*eddyv1.PauseResponse, error) {
	st, paused, err := s.core.Pause(req.GetAgent())
	if err != nil {
		return nil, toStatus(s.log, err)
	}
	return &eddyv1.PauseResponse{State: stateProto(st), PausedAgents: paused}, nil
}

func (s *lifecycleServer) Resume(_ context.Context, req *eddyv1.ResumeRequest) (*eddyv1.ResumeResponse, error) {
	st, paused, err := s.core.Resume(req.GetAgent())
	if err != nil {
		return nil, toStatus(s.log, err)
	}
	return &eddyv1.ResumeResponse{State: stateProto(st), PausedAgents: paused}, nil
}

func (s *lifecycleServer) Shutdown(_ context.Context, req *eddyv1.ShutdownRequest) (*eddyv1.ShutdownResponse, error) {
	if err := validateShutdown(req); err != nil {
		return nil, err
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "Shutdown RPC"
	}
	return &eddyv1.ShutdownResponse{Deadline: timestamppb.New(s.core.Shutdown(reason))}, nil
}

// ListWorkers answers from the consumer group's description (cached for a
// couple of seconds by the app: agents of every process poll it).
func (s *lifecycleServer) ListWorkers(ctx context.Context, _ *eddyv1.ListWorkersRequest) (*eddyv1.ListWorkersResponse, error) {
	ms, err := s.core.Members(ctx, false)
	if err != nil {
		return nil, toStatus(s.log, err)
	}
	resp := &eddyv1.ListWorkersResponse{WorkerId: s.core.Status().WorkerID}
	for _, m := range ms {
		resp.Workers = append(resp.Workers, &eddyv1.WorkerInfo{
			WorkerId: m.WorkerID, GrpcAddress: m.Addr, Assigned: tpsProto(m.Assigned),
		})
	}
	return resp, nil
}

func stateProto(s app.State) eddyv1.WorkerState {
	switch s {
	case app.StateStarting:
		return eddyv1.WorkerState_WORKER_STATE_STARTING
	case app.StateRunning:
		return eddyv1.WorkerState_WORKER_STATE_RUNNING
	case app.StatePaused:
		return eddyv1.WorkerState_WORKER_STATE_PAUSED
	case app.StateStopping:
		return eddyv1.WorkerState_WORKER_STATE_STOPPING
	case app.StateStopped:
		return eddyv1.WorkerState_WORKER_STATE_STOPPED
	}
	return eddyv1.WorkerState_WORKER_STATE_UNSPECIFIED
}

func tpsProto(tps []app.TopicPartition) []*eddyv1.TopicPartition {
	out := make([]*eddyv1.TopicPartition, len(tps))
	for i, tp := range tps {
		out[i] = &eddyv1.TopicPartition{Topic: tp.Topic, Partition: tp.Partition}
	}
	return out
}

func statusProto(st app.Status) *eddyv1.GetStatusResponse {
	resp := &eddyv1.GetStatusResponse{
		State:               stateProto(st.State),
		Version:             st.Version,
		App:                 st.App,
		WorkerId:            st.WorkerID,
		Brokers:             st.Brokers,
		EmbeddedBroker:      st.Embedded,
		ProcessingGuarantee: st.ProcessingGuarantee,
		StartedAt:           timestamppb.New(st.StartedAt),
		Uptime:              durationpb.New(time.Since(st.StartedAt)),
		GrpcAddress:         st.GRPCAddr,
		HttpAddress:         st.HTTPAddr,
		Assigned:            tpsProto(st.Assigned),
		PausedAgents:        st.PausedAgents,
		Warnings:            st.Warnings,
		Errors:              st.Errors,
	}
	for _, a := range st.Agents {
		resp.Agents = append(resp.Agents, &eddyv1.AgentSummary{
			Name: a.Name, Instances: uint32(a.Instances), Partitions: uint32(a.Partitions), Paused: a.Paused,
		})
	}
	resp.Stalled = stallsProto(st.Stalled)
	for _, r := range st.Recovery {
		rp := &eddyv1.RecoveryProgress{Table: r.Table, Partition: r.Partition, Done: r.Done, Total: r.Total,
			RecordsPerSecond: r.Rate}
		if r.Remaining >= 0 {
			rp.Remaining = durationpb.New(r.Remaining)
		}
		resp.Recovery = append(resp.Recovery, rp)
	}
	for _, r := range st.LastRestores {
		resp.LastRestores = append(resp.LastRestores, &eddyv1.LastRestore{
			Table: r.Table, Partition: r.Partition, Full: r.Full, Reason: r.Reason,
			FromOffset: r.From, ToOffset: r.To, Records: r.Records,
			Duration: durationpb.New(r.Duration), FinishedAt: timestamppb.New(r.FinishedAt), Error: r.Err,
		})
	}
	for _, e := range st.KafkaErrors {
		resp.KafkaErrors = append(resp.KafkaErrors, &eddyv1.KafkaError{
			At: timestamppb.New(e.At), Code: e.Code, Message: e.Message, Fatal: e.Fatal,
		})
	}
	return resp
}
