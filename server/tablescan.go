package server

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/app"
	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/tables/live"
)

// Scan reads the partitions this worker owns and, unless the call was
// forwarded to it, asks the owners of the other partitions for the same
// page and merges the answers in (key, partition) order.
func (s *tableServer) Scan(ctx context.Context, req *eddyv1.ScanRequest) (*eddyv1.ScanResponse, error) {
	if err := validateScan(req); err != nil {
		return nil, err
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = app.DefaultScanLimit
	}
	local, err := s.core.TableScan(ctx, req.GetTable(), req.GetPrefix(), limit, req.GetPageToken(), req.GetPartitions())
	if err != nil {
		return nil, toStatus(s.log, err)
	}
	m := newScanMerge(limit, local.ServedBy)
	m.add(local.Entries, lastIf(local.Entries, local.More), local.Partitions, local.Skipped)
	if len(metadata.ValueFromIncomingContext(ctx, ForwardedHeader)) > 0 {
		return m.response(), nil // answered locally: never forwarded twice
	}
	want := req.GetPartitions()
	if len(want) == 0 {
		n, err := s.core.TablePartitions(req.GetTable())
		if err != nil {
			return nil, toStatus(s.log, err)
		}
		for p := range n {
			want = append(want, p)
		}
	}
	missing := m.uncovered(want)
	if len(missing) > 0 && s.fwd == nil {
		return nil, toStatus(s.log, fmt.Errorf("%w: table %q partitions %v are owned by other workers and this worker does not forward reads", app.ErrUnavailable, req.GetTable(), missing))
	}
	// A partition that moved between the group's description and the
	// forwarded call is asked again once, from a fresh description.
	var lastErr error
	for _, refresh := range []bool{false, true} {
		if len(missing) == 0 || ctx.Err() != nil {
			break
		}
		owners, err := s.core.TableOwners(ctx, req.GetTable(), missing, refresh)
		if err != nil {
			if refresh {
				return nil, toStatus(s.log, err)
			}
			continue
		}
		if lastErr, err = s.scanOwners(ctx, req, limit, owners, m); err != nil {
			return nil, err
		}
		missing = m.uncovered(want)
	}
	switch {
	case len(missing) == 0:
		resp := m.response()
		if s.core.TableWindowed(req.GetTable()) {
			splitWindowKeys(resp)
		}
		return resp, nil
	case ctx.Err() != nil:
		return nil, toStatus(s.log, ctx.Err())
	case lastErr != nil:
		return nil, toStatus(s.log, fmt.Errorf("%w: table %q partitions %v could not be read from their owners (last error: %v); try again", app.ErrUnavailable, req.GetTable(), missing, lastErr))
	}
	return nil, toStatus(s.log, fmt.Errorf("%w: table %q partitions %v moved while they were scanned (rebalancing?); try again", app.ErrUnavailable, req.GetTable(), missing))
}

// scanOwners asks each owner, in parallel, for the page of its partitions
// and adds the answers to m. An owner that is unreachable or no longer owns
// the partitions leaves them uncovered (unreachable is the first result);
// any other error of an owner (a bad page token, say) is the answer.
func (s *tableServer) scanOwners(ctx context.Context, req *eddyv1.ScanRequest, limit int, owners []app.Owner, m *scanMerge) (unreachable, err error) {
	me := s.core.Status().WorkerID
	resps := make([]*eddyv1.ScanResponse, len(owners))
	errs := make([]error, len(owners))
	var wg sync.WaitGroup
	for i, o := range owners {
		wg.Go(func() {
			resps[i], errs[i] = s.fwd.scan(ctx, me, o.WorkerID, o.Addr, &eddyv1.ScanRequest{
				Table: req.GetTable(), Prefix: req.GetPrefix(), Limit: uint32(limit),
				PageToken: req.GetPageToken(), Partitions: o.Partitions,
			})
		})
	}
	wg.Wait()
	for i, o := range owners {
		if err := errs[i]; err != nil {
			if st, ok := status.FromError(err); ok && st.Code() != codes.Unavailable && st.Code() != codes.Unknown && st.Code() != codes.DeadlineExceeded {
				return nil, err
			}
			s.log.Warn("forwarding a table scan failed", "table", req.GetTable(), "partitions", o.Partitions, "owner", o.WorkerID, "addr", o.Addr, "err", err)
			unreachable = fmt.Errorf("worker %q at %s: %w", o.WorkerID, o.Addr, err)
			continue
		}
		r := resps[i]
		m.forwardedTo = append(m.forwardedTo, o.WorkerID)
		var es []live.Entry
		for _, e := range r.GetEntries() {
			es = append(es, live.Entry{Key: e.GetKey(), Value: e.GetValue(), Partition: e.GetPartition()})
		}
		// Only the partitions asked count: a stale owner may hold others.
		cut := lastIf(es, r.GetNextPageToken() != "")
		m.add(keepParts(es, o.Partitions), cut, intersect(r.GetPartitions(), o.Partitions), intersect(r.GetRestoringPartitions(), o.Partitions))
	}
	return unreachable, nil
}

// scanMerge merges the pages of several workers, each in (key, partition)
// order and each at most limit entries long.
type scanMerge struct {
	limit    int
	servedBy string

	entries     []live.Entry
	cut         *live.Entry // the smallest last entry of a page that has more
	parts, rest []int32
	forwardedTo []string
}

func newScanMerge(limit int, servedBy string) *scanMerge {
	return &scanMerge{limit: limit, servedBy: servedBy}
}

func entryCmp(x, y live.Entry) int {
	if c := bytes.Compare(x.Key, y.Key); c != 0 {
		return c
	}
	return int(x.Partition) - int(y.Partition)
}

// lastIf returns the last entry of a page that has more entries after it,
// else nil.
func lastIf(es []live.Entry, more bool) *live.Entry {
	if !more || len(es) == 0 {
		return nil
	}
	last := es[len(es)-1]
	return &last
}

// add merges one worker's page. cut is the page's last entry when it has
// more: nothing after it may be returned, since that worker's next entries
// would come first.
func (m *scanMerge) add(es []live.Entry, cut *live.Entry, parts, restoring []int32) {
	m.entries = append(m.entries, es...)
	if cut != nil && (m.cut == nil || entryCmp(*cut, *m.cut) < 0) {
		m.cut = cut
	}
	m.parts = append(m.parts, parts...)
	m.rest = append(m.rest, restoring...)
}

// uncovered returns the partitions of want neither read nor reported
// restoring.
func (m *scanMerge) uncovered(want []int32) []int32 {
	var out []int32
	for _, p := range want {
		if !slices.Contains(m.parts, p) && !slices.Contains(m.rest, p) {
			out = append(out, p)
		}
	}
	return out
}

func (m *scanMerge) response() *eddyv1.ScanResponse {
	es := slices.Clone(m.entries)
	slices.SortFunc(es, entryCmp)
	more := false
	if m.cut != nil {
		i, found := slices.BinarySearchFunc(es, *m.cut, entryCmp)
		if found {
			i++
		}
		es, more = es[:i], true
	}
	if len(es) > m.limit {
		es, more = es[:m.limit], true
	}
	resp := &eddyv1.ScanResponse{ServedBy: m.servedBy, ForwardedTo: m.forwardedTo}
	resp.Partitions = sortedSet(m.parts)
	resp.RestoringPartitions = sortedSet(m.rest)
	for _, e := range es {
		resp.Entries = append(resp.Entries, &eddyv1.Entry{Key: e.Key, Value: e.Value, Partition: e.Partition})
	}
	switch {
	case more && len(es) > 0:
		last := es[len(es)-1]
		resp.NextPageToken = app.EncodePageToken(last.Partition, last.Key)
	case more:
		// Every entry read sorts after the cut, which came from a
		// partition not asked for (a stale owner's): continue after it.
		resp.NextPageToken = app.EncodePageToken(m.cut.Partition, m.cut.Key)
	}
	return resp
}

// splitWindowKeys turns the window keys of a windowed table's page into
// the plain key and the window start, for the client. Only the page going
// to the client: forwarded pages keep the store keys the merge orders by,
// and the page token is built from them.
func splitWindowKeys(resp *eddyv1.ScanResponse) {
	for _, e := range resp.GetEntries() {
		if key, start, err := tables.SplitWindowKey(e.GetKey()); err == nil {
			e.Key, e.WindowStart = key, timestamppb.New(start)
		}
	}
}

func keepParts(es []live.Entry, parts []int32) []live.Entry {
	return slices.DeleteFunc(es, func(e live.Entry) bool { return !slices.Contains(parts, e.Partition) })
}

func intersect(a, b []int32) []int32 {
	var out []int32
	for _, p := range a {
		if slices.Contains(b, p) {
			out = append(out, p)
		}
	}
	return out
}

func sortedSet(ps []int32) []int32 {
	out := slices.Clone(ps)
	slices.Sort(out)
	return slices.Compact(out)
}
