package server

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/tables/live"
)

// Scan reads the partitions this worker owns and, unless the call was
// forwarded to it, asks the owners of the other partitions for the same
// page and merges the answers in (key, partition) order (live.Service).
func (s *tableServer) Scan(ctx context.Context, req *eddyv1.ScanRequest) (*eddyv1.ScanResponse, error) {
	if err := validateScan(req); err != nil {
		return nil, err
	}
	r, err := s.svc.Scan(ctx, live.ScanRequest{
		Table: req.GetTable(), Prefix: req.GetPrefix(), Limit: int(req.GetLimit()),
		PageToken: req.GetPageToken(), Partitions: req.GetPartitions(),
	}, forwardedBy(ctx) != "")
	if err != nil {
		return nil, toStatus(s.log, err)
	}
	resp := &eddyv1.ScanResponse{NextPageToken: r.NextPageToken, Partitions: r.Partitions,
		RestoringPartitions: r.Restoring, ServedBy: r.ServedBy, ForwardedTo: r.ForwardedTo}
	for _, e := range r.Entries {
		pe := &eddyv1.Entry{Key: e.Key, Value: e.Value, Partition: e.Partition}
		if !e.WindowStart.IsZero() {
			pe.WindowStart = timestamppb.New(e.WindowStart)
		}
		resp.Entries = append(resp.Entries, pe)
	}
	return resp, nil
}
