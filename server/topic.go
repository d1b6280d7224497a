package server

import (
	"context"
	"log/slog"

	"google.golang.org/protobuf/types/known/timestamppb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/app"
)

type topicCore interface {
	Send(ctx context.Context, rec app.SendRecord) (app.SendResult, error)
	Topics() []app.TopicInfo
}

type topicServer struct {
	eddyv1.UnsafeTopicServiceServer
	core topicCore
	log  *slog.Logger
}

func (s *topicServer) Send(ctx context.Context, req *eddyv1.SendRequest) (*eddyv1.SendResponse, error) {
	if err := validateSend(req); err != nil {
		return nil, err
	}
	rec := app.SendRecord{Topic: req.GetTopic(), Key: req.GetKey(), Value: req.GetValue(), Partition: req.Partition}
	for _, h := range req.GetHeaders() {
		rec.Headers = append(rec.Headers, app.Header{Key: h.GetKey(), Value: h.GetValue()})
	}
	res, err := s.core.Send(ctx, rec)
	if err != nil {
		return nil, toStatus(s.log, err)
	}
	return &eddyv1.SendResponse{Partition: res.Partition, Offset: res.Offset, Timestamp: timestamppb.New(res.Timestamp)}, nil
}

func (s *topicServer) ListTopics(context.Context, *eddyv1.ListTopicsRequest) (*eddyv1.ListTopicsResponse, error) {
	resp := &eddyv1.ListTopicsResponse{}
	for _, t := range s.core.Topics() {
		resp.Topics = append(resp.Topics, &eddyv1.TopicInfo{Name: t.Name, Partitions: t.Partitions})
	}
	return resp, nil
}
