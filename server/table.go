package server

import (
	"context"
	"log/slog"

	"google.golang.org/protobuf/types/known/durationpb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/app"
)

type tablesCore interface {
	TableInfos() []app.TableInfo
}

type tableServer struct {
	eddyv1.UnsafeTableServiceServer
	core tablesCore
	log  *slog.Logger
}

func (s *tableServer) ListTables(context.Context, *eddyv1.ListTablesRequest) (*eddyv1.ListTablesResponse, error) {
	resp := &eddyv1.ListTablesResponse{}
	for _, t := range s.core.TableInfos() {
		info := &eddyv1.TableInfo{
			Name:            t.Name,
			Partitions:      t.Partitions,
			ChangelogTopic:  t.ChangelogTopic,
			StandbyReplicas: uint32(t.StandbyReplicas),
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

func (s *tableServer) Get(context.Context, *eddyv1.GetRequest) (*eddyv1.GetResponse, error) {
	return nil, unimplemented("TableService.Get (tables)")
}

func (s *tableServer) Scan(context.Context, *eddyv1.ScanRequest) (*eddyv1.ScanResponse, error) {
	return nil, unimplemented("TableService.Scan (tables)")
}
