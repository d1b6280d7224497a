package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
)

// Limits of a scan's page.
const (
	// DefaultScanLimit is the page size when the request gives none.
	DefaultScanLimit = 100
	// MaxScanLimit is the largest page a scan returns.
	MaxScanLimit = 10000
)

// Errors of the table service.
var (
	// ErrKeyNotFound: the key is not in the table.
	ErrKeyNotFound = errors.New("key not found")
	// ErrUnavailable: the partition cannot be read right now (restoring,
	// owned by no worker, the owner unknown or unreachable); try again.
	ErrUnavailable = errors.New("table partition unavailable")
)

// NotOwnedError is returned when another worker owns the table partition;
// Addr is its control-plane address, to forward the read to.
type NotOwnedError struct {
	Table     string
	Partition int32
	WorkerID  string
	Addr      string
}

func (e *NotOwnedError) Error() string {
	return fmt.Sprintf("table %q partition %d is owned by worker %q at %s", e.Table, e.Partition, e.WorkerID, e.Addr)
}

// Value is the answer of a Get.
type Value struct {
	// Key is the key read (a peer that predates the field leaves it nil).
	Key       []byte
	Value     []byte
	Partition int32
	ServedBy  string // worker id
}

// Page is one worker's page of a scan.
type Page struct {
	Entries []Entry
	// More is set when entries after the last one match: the page token
	// continues after it (EncodePageToken).
	More bool
	// Partitions are the partitions read: those the worker owns.
	Partitions []int32
	// Skipped are owned partitions still restoring, not read.
	Skipped  []int32
	ServedBy string
}

// Owner is a worker owning some partitions of a table.
type Owner struct {
	WorkerID, Addr string
	Partitions     []int32
}

// GetRequest reads one key of a table (TableService.Get).
type GetRequest struct {
	Table string
	Key   []byte
	// WindowStart names the window of a windowed table; nil for a plain
	// table.
	WindowStart *time.Time
}

// ScanRequest reads a page of a table (TableService.Scan).
type ScanRequest struct {
	Table     string
	Prefix    []byte
	Limit     int // 0: DefaultScanLimit
	PageToken string
	// Partitions, when not empty, are the only partitions read.
	Partitions []int32
}

// ScanResponse is a merged page of a scan across the workers.
type ScanResponse struct {
	// Entries in (key, partition) order; for a windowed table, once
	// decoded (DecodeWindowKeys), the plain key and the window start.
	Entries       []Entry
	NextPageToken string // "": the scan is complete
	Partitions    []int32
	Restoring     []int32
	ServedBy      string
	ForwardedTo   []string
}

// Local is this worker's side of the table service (worker/app's App):
// reads of the partitions it owns, and where the others are. Its methods
// are safe for concurrent use.
type Local interface {
	// TableGet reads key locally, or returns a *NotOwnedError naming the
	// owner of its partition.
	TableGet(ctx context.Context, table string, key []byte, windowStart *time.Time) (Value, error)
	// TableScan reads a page of the partitions this worker owns.
	TableScan(ctx context.Context, table string, prefix []byte, limit int, token string, only []int32) (Page, error)
	// TablePartitions is a declared table's partition count.
	TablePartitions(table string) (int32, error)
	// TableWindowed reports whether a declared table is windowed.
	TableWindowed(table string) bool
	// TableOwners groups parts by the other worker owning them, from a
	// fresh description of the group when refresh is set.
	TableOwners(ctx context.Context, table string, parts []int32, refresh bool) ([]Owner, error)
}

// Peers calls the table service of other workers (server/ implements it
// over gRPC). A forwarded call is answered by the peer locally: it is
// never forwarded again. An error is either the peer's answer (returned to
// the caller as it is) or a *PeerError. Safe for concurrent use.
type Peers interface {
	Get(ctx context.Context, workerID, addr string, req GetRequest) (Value, error)
	Scan(ctx context.Context, workerID, addr string, req ScanRequest) (ScanResponse, error)
}

// PeerFailure is how a call to a peer failed without an answer to pass on.
type PeerFailure int

// The kinds of PeerError.
const (
	// PeerUnreachable: no answer came (no connection, the worker is
	// shutting down, not an answer of the peer's).
	PeerUnreachable PeerFailure = iota + 1
	// PeerUnavailable: the peer cannot answer now (the partition moved,
	// it is stopping).
	PeerUnavailable
	// PeerTimeout: the call ran out of time.
	PeerTimeout
)

// PeerError is a call to a peer that failed with Kind; Err is the call's
// error, returned as it is where the peer's answer is passed on.
type PeerError struct {
	Kind PeerFailure
	Err  error
}

func (e *PeerError) Error() string { return e.Err.Error() }
func (e *PeerError) Unwrap() error { return e.Err }

// Service answers the table service's reads: locally for the partitions
// this worker owns, from the owners for the others. Safe for concurrent
// use.
type Service struct {
	Local Local
	// Peers reaches the owners; nil: this worker does not forward reads.
	Peers Peers
	// Log is where failed forwarded calls are logged; required.
	Log *slog.Logger
}

// Get reads req's key: locally, or from the owner of its partition.
// forwardedBy is the worker that forwarded the call here ("" for a
// client's): a forwarded call is never forwarded again.
func (s *Service) Get(ctx context.Context, req GetRequest, forwardedBy string) (Value, error) {
	v, err := s.Local.TableGet(ctx, req.Table, req.Key, req.WindowStart)
	var no *NotOwnedError
	if !errors.As(err, &no) {
		if err != nil {
			return Value{}, err
		}
		v.Key = req.Key
		return v, nil
	}
	if forwardedBy != "" {
		return Value{}, fmt.Errorf(
			"%w: worker %s forwarded the read of table %q partition %d here, but this worker does not own it (%s); the partition probably moved: try again",
			ErrUnavailable, forwardedBy, no.Table, no.Partition, no.Error())
	}
	if s.Peers == nil {
		return Value{}, fmt.Errorf("%w; this worker does not forward reads", no)
	}
	v, err = s.Peers.Get(ctx, no.WorkerID, no.Addr, req)
	if k := peerFailure(err); k == PeerUnavailable || k == PeerUnreachable {
		// The owner named by a cached description may have lost the
		// partition in a rebalance: ask the owner of a fresh one, once.
		if owners, oerr := s.Local.TableOwners(ctx, no.Table, []int32{no.Partition}, true); oerr == nil && len(owners) == 1 && owners[0].Addr != no.Addr {
			no = &NotOwnedError{Table: no.Table, Partition: no.Partition, WorkerID: owners[0].WorkerID, Addr: owners[0].Addr}
			v, err = s.Peers.Get(ctx, no.WorkerID, no.Addr, req)
		}
	}
	if err != nil {
		var pe *PeerError
		if !errors.As(err, &pe) || pe.Kind != PeerUnreachable {
			if pe != nil {
				return Value{}, pe.Err // the owner's answer (Unavailable, ...) as it is
			}
			return Value{}, err // the owner's answer (NotFound, ...) as it is
		}
		s.Log.Warn("forwarding a table read failed", "table", no.Table, "partition", no.Partition, "owner", no.WorkerID, "addr", no.Addr, "err", err)
		return Value{}, fmt.Errorf("%w: forwarding to the owner of table %q partition %d (worker %q at %s) failed: %v",
			ErrUnavailable, no.Table, no.Partition, no.WorkerID, no.Addr, err)
	}
	if v.Key == nil {
		v.Key = req.Key // an owner that predates the field
	}
	return v, nil
}

// peerFailure is err's PeerFailure; 0 for nil or an answer.
func peerFailure(err error) PeerFailure {
	var pe *PeerError
	if errors.As(err, &pe) {
		return pe.Kind
	}
	return 0
}

// Scan reads the partitions this worker owns and, unless the call was
// forwarded to it, asks the owners of the other partitions for the same
// page and merges the answers in (key, partition) order. The page of a
// client's call of a windowed table has its keys decoded
// (DecodeWindowKeys); a forwarded call's keeps the store keys the merge
// orders by.
func (s *Service) Scan(ctx context.Context, req ScanRequest, forwarded bool) (ScanResponse, error) {
	limit := req.Limit
	if limit == 0 {
		limit = DefaultScanLimit
	}
	local, err := s.Local.TableScan(ctx, req.Table, req.Prefix, limit, req.PageToken, req.Partitions)
	if err != nil {
		return ScanResponse{}, err
	}
	m := newScanMerge(limit, local.ServedBy)
	m.add(local.Entries, lastIf(local.Entries, local.More), local.Partitions, local.Skipped)
	if forwarded {
		return m.response(), nil // answered locally: never forwarded twice
	}
	want := req.Partitions
	if len(want) == 0 {
		n, err := s.Local.TablePartitions(req.Table)
		if err != nil {
			return ScanResponse{}, err
		}
		for p := range n {
			want = append(want, p)
		}
	}
	missing := m.uncovered(want)
	if len(missing) > 0 && s.Peers == nil {
		return ScanResponse{}, fmt.Errorf("%w: table %q partitions %v are owned by other workers and this worker does not forward reads", ErrUnavailable, req.Table, missing)
	}
	// A partition that moved between the group's description and the
	// forwarded call is asked again once, from a fresh description.
	var lastErr error
	for _, refresh := range []bool{false, true} {
		if len(missing) == 0 || ctx.Err() != nil {
			break
		}
		owners, err := s.Local.TableOwners(ctx, req.Table, missing, refresh)
		if err != nil {
			if refresh {
				return ScanResponse{}, err
			}
			continue
		}
		if lastErr, err = s.scanOwners(ctx, req, limit, owners, m); err != nil {
			return ScanResponse{}, err
		}
		missing = m.uncovered(want)
	}
	switch {
	case len(missing) == 0:
		resp := m.response()
		if s.Local.TableWindowed(req.Table) {
			DecodeWindowKeys(resp.Entries)
		}
		return resp, nil
	case ctx.Err() != nil:
		return ScanResponse{}, ctx.Err()
	case lastErr != nil:
		return ScanResponse{}, fmt.Errorf("%w: table %q partitions %v could not be read from their owners (last error: %v); try again", ErrUnavailable, req.Table, missing, lastErr)
	}
	return ScanResponse{}, fmt.Errorf("%w: table %q partitions %v moved while they were scanned (rebalancing?); try again", ErrUnavailable, req.Table, missing)
}

// scanOwners asks each owner, in parallel, for the page of its partitions
// and adds the answers to m. An owner that fails without an answer (a
// *PeerError) leaves them uncovered (unreachable is the first result); any
// other error of an owner (a bad page token, say) is the answer.
func (s *Service) scanOwners(ctx context.Context, req ScanRequest, limit int, owners []Owner, m *scanMerge) (unreachable, err error) {
	resps := make([]ScanResponse, len(owners))
	errs := make([]error, len(owners))
	var wg sync.WaitGroup
	for i, o := range owners {
		wg.Go(func() {
			resps[i], errs[i] = s.Peers.Scan(ctx, o.WorkerID, o.Addr, ScanRequest{
				Table: req.Table, Prefix: req.Prefix, Limit: limit,
				PageToken: req.PageToken, Partitions: o.Partitions,
			})
		})
	}
	wg.Wait()
	for i, o := range owners {
		if err := errs[i]; err != nil {
			if peerFailure(err) == 0 {
				return nil, err
			}
			s.Log.Warn("forwarding a table scan failed", "table", req.Table, "partitions", o.Partitions, "owner", o.WorkerID, "addr", o.Addr, "err", err)
			unreachable = fmt.Errorf("worker %q at %s: %w", o.WorkerID, o.Addr, err)
			continue
		}
		r := resps[i]
		m.forwardedTo = append(m.forwardedTo, o.WorkerID)
		// Only the partitions asked count: a stale owner may hold others.
		es := r.Entries
		cut := lastIf(es, r.NextPageToken != "")
		m.add(keepParts(es, o.Partitions), cut, intersect(r.Partitions, o.Partitions), intersect(r.Restoring, o.Partitions))
	}
	return unreachable, nil
}

// scanMerge merges the pages of several workers, each in (key, partition)
// order and each at most limit entries long.
type scanMerge struct {
	limit    int
	servedBy string

	entries     []Entry
	cut         *Entry // the smallest last entry of a page that has more
	parts, rest []int32
	forwardedTo []string
}

func newScanMerge(limit int, servedBy string) *scanMerge {
	return &scanMerge{limit: limit, servedBy: servedBy}
}

// lastIf returns the last entry of a page that has more entries after it,
// else nil.
func lastIf(es []Entry, more bool) *Entry {
	if !more || len(es) == 0 {
		return nil
	}
	last := es[len(es)-1]
	return &last
}

// add merges one worker's page. cut is the page's last entry when it has
// more: nothing after it may be returned, since that worker's next entries
// would come first.
func (m *scanMerge) add(es []Entry, cut *Entry, parts, restoring []int32) {
	m.entries = append(m.entries, es...)
	if cut != nil && (m.cut == nil || CompareEntries(*cut, *m.cut) < 0) {
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

func (m *scanMerge) response() ScanResponse {
	es := slices.Clone(m.entries)
	slices.SortFunc(es, CompareEntries)
	more := false
	if m.cut != nil {
		i, found := slices.BinarySearchFunc(es, *m.cut, CompareEntries)
		if found {
			i++
		}
		es, more = es[:i], true
	}
	if len(es) > m.limit {
		es, more = es[:m.limit], true
	}
	resp := ScanResponse{ServedBy: m.servedBy, ForwardedTo: m.forwardedTo, Entries: es}
	resp.Partitions = sortedSet(m.parts)
	resp.Restoring = sortedSet(m.rest)
	switch {
	case more && len(es) > 0:
		last := es[len(es)-1]
		resp.NextPageToken = EncodePageToken(last.Partition, last.Key)
	case more:
		// Every entry read sorts after the cut, which came from a
		// partition not asked for (a stale owner's): continue after it.
		resp.NextPageToken = EncodePageToken(m.cut.Partition, m.cut.Key)
	}
	return resp
}

// DecodeWindowKeys turns the window keys of a windowed table's entries into
// the plain key and the window start (tables.SplitWindowKey), in place.
// Only for the page going to the client: forwarded pages keep the store
// keys the merge orders by, and the page token is built from them. A key
// that is not a window key is left as it is.
func DecodeWindowKeys(es []Entry) {
	for i := range es {
		if key, start, err := tables.SplitWindowKey(es[i].Key); err == nil {
			es[i].Key, es[i].WindowStart = key, start
		}
	}
}

func keepParts(es []Entry, parts []int32) []Entry {
	return slices.DeleteFunc(es, func(e Entry) bool { return !slices.Contains(parts, e.Partition) })
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
