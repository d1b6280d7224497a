package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/tables/live"
	"github.com/eddy-streams/eddy/worker/transport"
)

const (
	// scanChunk is the most keys one read on the agents manager's
	// goroutine returns; a larger page takes several.
	scanChunk = 1000
	// ownersTTL is how long a group description is reused to find the
	// owners of partitions (forwarding, standby placement).
	ownersTTL = 2 * time.Second
)

// ErrUnavailable is live.ErrUnavailable: a table partition, or a topic
// write, cannot be served right now; try again. One value, so errors.Is
// and the error map (server/errors.go) see one error.
var ErrUnavailable = live.ErrUnavailable

// UnknownTableError is returned for a table the app file does not declare.
type UnknownTableError struct {
	Name     string
	Declared []string
}

func (e *UnknownTableError) Error() string {
	return fmt.Sprintf("unknown table %q: declared tables are %s", e.Name, quoteList(e.Declared))
}

func quoteList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// groupDescriber describes the consumer group (transport.Admin).
type groupDescriber interface {
	DescribeGroup(ctx context.Context, group string) ([]transport.GroupMember, error)
}

// Member is a worker of the app's consumer group.
type Member struct {
	WorkerID, Addr string
	// Assigned are its source partitions.
	Assigned []TopicPartition
}

// ParseClientID splits a worker's advertised client.id
// "eddy|<worker_id>|<grpc addr>"; ok is false for other clients.
func ParseClientID(id string) (workerID, addr string, ok bool) {
	parts := strings.SplitN(id, "|", 3)
	if len(parts) != 3 || parts[0] != "eddy" {
		return "", "", false
	}
	return parts[1], parts[2], true
}

// members caches the group's description for ownersTTL.
type members struct {
	mu   sync.Mutex
	at   time.Time
	list []Member
}

// Members returns the workers of the group sorted by worker id, from a
// description at most ownersTTL old (fresh when refresh is set).
func (a *App) Members(ctx context.Context, refresh bool) ([]Member, error) {
	a.mu.Lock()
	d := a.describer
	a.mu.Unlock()
	if d == nil {
		return nil, errNotRunning(a.State())
	}
	a.members.mu.Lock()
	defer a.members.mu.Unlock()
	if !refresh && time.Since(a.members.at) < ownersTTL {
		return a.members.list, nil
	}
	ms, err := d.DescribeGroup(ctx, a.cfg.App)
	if err != nil {
		return nil, err
	}
	var out []Member
	for _, m := range ms {
		id, addr, ok := ParseClientID(m.ClientID)
		if !ok {
			continue
		}
		if id == a.cfg.WorkerID && addr != a.advertised() {
			// This worker's predecessor (a live twin is refused at
			// start, checkIdentity): its membership lingers until its
			// session times out, at an address nothing answers on.
			continue
		}
		mem := Member{WorkerID: id, Addr: addr, Assigned: tps(m.Assignment)}
		sortTPs(mem.Assigned)
		out = append(out, mem)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].WorkerID < out[j].WorkerID })
	a.members.list, a.members.at = out, time.Now()
	return out, nil
}

// tableSource is the source topic of a table (the first agent's first
// topic: a table has one source topic, docs/tables.md).
func (a *App) tableSource(table string) (config.Table, string, error) {
	var tc config.Table
	declared := false
	for _, t := range a.cfg.Tables {
		if t.Name == table {
			tc, declared = t, true
		}
	}
	if !declared {
		var names []string
		for _, t := range a.cfg.Tables {
			names = append(names, t.Name)
		}
		return tc, "", &UnknownTableError{Name: table, Declared: names}
	}
	for _, ag := range a.cfg.Agents {
		if slices.Contains(ag.Tables, table) && len(ag.Topics) > 0 {
			return tc, ag.Topics[0], nil
		}
	}
	return tc, "", fmt.Errorf("table %q is used by no agent, so it has no partitions: %w", table, agents.ErrBadRequest)
}

func (a *App) manager() (*agents.Manager, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mgr == nil {
		return nil, errNotRunning(State(a.state.Load()))
	}
	return a.mgr, nil
}

// TableGet reads key of table. The partition is the key's under the
// source topic's partitioner (topics[].partitioner); when this worker owns it the value is read locally
// through the agents' view (acknowledged mutations included), otherwise a
// *live.NotOwnedError names the owner to forward to. A windowed table needs
// windowStart. Errors: *UnknownTableError, live.ErrKeyNotFound, agents.ErrBadRequest,
// ErrUnavailable, *live.NotOwnedError (all wrapped). Safe for concurrent use.
func (a *App) TableGet(ctx context.Context, table string, key []byte, windowStart *time.Time) (live.Value, error) {
	tc, src, err := a.tableSource(table)
	if err != nil {
		return live.Value{}, err
	}
	if len(key) == 0 {
		return live.Value{}, fmt.Errorf("empty key: tables never store one: %w", agents.ErrBadRequest)
	}
	n := a.tablePartitions(table)
	part := a.keyPartition(src, key, n)
	skey := key
	if tc.Window != nil {
		if windowStart == nil {
			return live.Value{}, fmt.Errorf("table %q is windowed: give the window start: %w", table, agents.ErrBadRequest)
		}
		skey = tables.WindowKey(key, *windowStart)
	} else if windowStart != nil {
		return live.Value{}, fmt.Errorf("table %q is not windowed: no window start: %w", table, agents.ErrBadRequest)
	}
	mgr, err := a.manager()
	if err != nil {
		return live.Value{}, err
	}
	v, found, err := mgr.TableGet(ctx, table, part, skey)
	switch {
	case errors.Is(err, live.ErrRecovering):
		return live.Value{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	case errors.Is(err, live.ErrNotOwned):
		return live.Value{}, a.ownerOf(ctx, table, src, part)
	case err != nil:
		return live.Value{}, err
	case !found:
		return live.Value{}, fmt.Errorf("key %q in table %q (partition %d): %w", key, table, part, live.ErrKeyNotFound)
	}
	return live.Value{Value: v, Partition: part, ServedBy: a.cfg.WorkerID}, nil
}

// ownerOf returns the *live.NotOwnedError naming the owner of a partition, or
// ErrUnavailable when no other worker owns it.
func (a *App) ownerOf(ctx context.Context, table, topic string, part int32) error {
	for _, refresh := range []bool{false, true} {
		ms, err := a.Members(ctx, refresh)
		if err != nil {
			return fmt.Errorf("%w: finding the owner of table %q partition %d: %w", ErrUnavailable, table, part, err)
		}
		if no := live.FindOwner(table, a.candidates(ms, topic), part); no != nil {
			return no
		}
	}
	return fmt.Errorf("%w: table %q partition %d (topic %q) is assigned to no worker right now (rebalancing?)", ErrUnavailable, table, part, topic)
}

// TableScan reads a page of table from the partitions this worker owns
// (those in only, when only is not empty), merged in (key, partition)
// order. It does not ask other workers: the server fans a scan out to the
// owners (TableOwners) and merges their pages. limit 0 is
// live.DefaultScanLimit; above live.MaxScanLimit is agents.ErrBadRequest. token is "" or a
// page token from live.EncodePageToken. Safe for concurrent use.
func (a *App) TableScan(ctx context.Context, table string, prefix []byte, limit int, token string, only []int32) (live.Page, error) {
	if _, _, err := a.tableSource(table); err != nil {
		return live.Page{}, err
	}
	switch {
	case limit == 0:
		limit = live.DefaultScanLimit
	case limit < 0 || limit > live.MaxScanLimit:
		return live.Page{}, fmt.Errorf("limit %d out of range: at most %d: %w", limit, live.MaxScanLimit, agents.ErrBadRequest)
	}
	n := a.tablePartitions(table)
	for _, p := range only {
		if p < 0 || p >= n {
			return live.Page{}, fmt.Errorf("table %q has partitions 0..%d, not %d: %w", table, n-1, p, agents.ErrBadRequest)
		}
	}
	from, err := live.DecodePageToken(token)
	if err != nil {
		return live.Page{}, err
	}
	mgr, err := a.manager()
	if err != nil {
		return live.Page{}, err
	}
	// Read in chunks: each holds the agents manager's goroutine (which owns
	// the overlays and delivers events) for at most scanChunk keys. The
	// partitions the first chunk read are the page's: later chunks read
	// only those, and one that left meanwhile fails the page (rather than
	// a gap, or a partition reported read that was read only in part).
	first, err := mgr.TableScan(ctx, table, prefix, from, min(limit, scanChunk), only)
	if err != nil {
		return live.Page{}, err
	}
	es, more, parts, skipped := first.Entries, first.More, first.Partitions, first.Skipped
	for more && len(es) < limit {
		last := es[len(es)-1]
		from = live.ScanFrom{Set: true, Key: last.Key, Partition: last.Partition}
		chunk, err := mgr.TableScan(ctx, table, prefix, from, min(limit-len(es), scanChunk), parts)
		if err != nil {
			return live.Page{}, err
		}
		if len(chunk.Partitions) != len(parts) {
			return live.Page{}, fmt.Errorf("%w: table %q: partitions %v left this worker during the scan; try again", ErrUnavailable, table, missingFrom(parts, chunk.Partitions))
		}
		es, more = append(es, chunk.Entries...), chunk.More
	}
	return live.Page{Entries: es, More: more && len(es) > 0, Partitions: parts, Skipped: skipped, ServedBy: a.cfg.WorkerID}, nil
}

// missingFrom returns the partitions of want not in got.
func missingFrom(want, got []int32) []int32 {
	var out []int32
	for _, p := range want {
		if !slices.Contains(got, p) {
			out = append(out, p)
		}
	}
	return out
}

// TableWindowed reports whether a declared table is windowed (its keys
// are window keys, tables.WindowKey).
func (a *App) TableWindowed(table string) bool {
	tc, _, err := a.tableSource(table)
	return err == nil && tc.Window != nil
}

// TablePartitions returns the partition count of a declared table.
func (a *App) TablePartitions(table string) (int32, error) {
	if _, _, err := a.tableSource(table); err != nil {
		return 0, err
	}
	return a.tablePartitions(table), nil
}

// TableOwners groups parts of table by the other worker that owns them,
// from the consumer group's description (a fresh one when refresh is set).
// A partition assigned to no other worker is ErrUnavailable: during a
// rebalance the caller tries again. Owners are sorted by worker id.
func (a *App) TableOwners(ctx context.Context, table string, parts []int32, refresh bool) ([]live.Owner, error) {
	_, src, err := a.tableSource(table)
	if err != nil {
		return nil, err
	}
	ms, err := a.Members(ctx, refresh)
	if err != nil {
		return nil, fmt.Errorf("%w: finding the owners of table %q: %w", ErrUnavailable, table, err)
	}
	return live.GroupOwners(table, src, a.candidates(ms, src), parts)
}

// candidates are the other workers of ms, each with the partitions of topic
// assigned to it, for owner routing (live.FindOwner, live.GroupOwners).
// This worker's own entry is left out: a stale description may list
// partitions it does not own now.
func (a *App) candidates(ms []Member, topic string) []live.Owner {
	var out []live.Owner
	for _, m := range ms {
		if m.WorkerID == a.cfg.WorkerID {
			continue
		}
		c := live.Owner{WorkerID: m.WorkerID, Addr: m.Addr}
		for _, tp := range m.Assigned {
			if tp.Topic == topic {
				c.Partitions = append(c.Partitions, tp.Partition)
			}
		}
		out = append(out, c)
	}
	return out
}

// standbyPartitions returns, by table, the partitions this worker keeps
// warm standbys of, sorted.
func (a *App) standbyPartitions() map[string][]int32 {
	a.mu.Lock()
	sbs := a.standbys
	a.mu.Unlock()
	if sbs == nil {
		return nil
	}
	return sbs.Partitions()
}
