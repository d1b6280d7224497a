package agent

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// listTimeout bounds one ListWorkers call to one worker.
const listTimeout = 3 * time.Second

// leftAfter is how many lists in a row a worker must be missing from before
// its session is stopped: one list taken in the middle of a rebalance may
// miss a worker that is still there.
const leftAfter = 2

// workers keeps one link (the sessions with one worker, reconnected by
// runLink) per worker of the app, as the workers list them
// (docs/agents.md, "Several workers"). Only run's goroutine touches it.
type workers struct {
	a        *Agent
	ctx      context.Context // the links' parent
	links    []*link
	stopping []*link // stopped, not yet returned
	rejected chan error
	wg       sync.WaitGroup
}

// link is the sessions with one worker.
type link struct {
	addr string
	// workerID is the worker's id, "" while unknown: a link to an address of
	// WithAddr before any worker listed the app's workers. Links are matched
	// to workers by id, so that a worker dialled under another name than the
	// one it advertises ("localhost" for "127.0.0.1") never gets two
	// sessions of the same instance, which would replace each other.
	workerID string
	// expect is workerID for the link's goroutine: a connection that
	// reaches another worker sends no Hello (runLink).
	expect atomic.Pointer[string]
	misses int // lists in a row without it
	cancel context.CancelFunc
	done   chan struct{}
}

func newWorkers(a *Agent) *workers {
	return &workers{a: a, rejected: make(chan error, 1)}
}

// run keeps the links up to date until ctx is cancelled (nil, once every
// link has stopped) or a worker rejects the agent (its error, once the other
// links have stopped).
func (w *workers) run(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	linksCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	w.ctx = linksCtx
	stop := func() {
		cancel()
		w.wg.Wait()
	}
	w.refresh(ctx)
	var tick <-chan time.Time
	if d := w.a.opts.discovery; d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			stop()
			return nil
		case err := <-w.rejected:
			stop()
			if ctx.Err() != nil {
				return nil // a stop wins, as in runLink
			}
			return err
		case <-tick:
			w.refresh(ctx)
		}
	}
}

// refresh reads the app's workers and starts and stops links to match. When
// no worker answers, the links stay as they are (or, when there are none,
// go to the addresses of WithAddr).
func (w *workers) refresh(ctx context.Context) {
	w.reap()
	if w.a.opts.discovery == 0 {
		w.seeds()
		return
	}
	resp, asked := w.list(ctx)
	if resp == nil {
		w.seeds()
		return
	}
	listed := map[string][]string{} // worker id -> the addresses the group lists it at
	for _, wi := range resp.GetWorkers() {
		if id, addr := wi.GetWorkerId(), wi.GetGrpcAddress(); id != "" && addr != "" && !slices.Contains(listed[id], addr) {
			listed[id] = append(listed[id], addr)
		}
	}
	// A link is the worker its own connection reached (identify): at a
	// load-balanced address it may not be the one that answered the list,
	// nor the one it was taken for when it connected again.
	for _, l := range slices.Clone(w.links) {
		switch id := w.a.reachedAt(l.addr); {
		case id == "" || id == l.workerID:
		case l.workerID == "" && w.byID(id) == nil:
			l.setID(id)
		default:
			// Stopped under the worker it reached, so a new link to that
			// worker waits until its session is gone (isStoppingID).
			l.setID(id)
			w.stop(l, "its connection reached worker "+id)
		}
	}
	self := resp.GetWorkerId()
	if self != "" {
		for _, l := range w.links {
			if l.addr == asked && l.workerID == "" && w.byID(self) == nil && w.a.reachedAt(l.addr) == "" {
				// Its connection did not say (a worker too old to list
				// workers): the worker that answered at its address.
				l.setID(self)
			}
		}
	}
	want := map[string]string{} // worker id -> the address to connect at
	for id, addrs := range listed {
		at := ""
		if id == self {
			at = asked
		}
		want[id] = w.where(ctx, id, addrs, at)
	}
	if _, ok := want[self]; self != "" && !ok {
		// The worker that answered is alive at the address asked even
		// when the group does not list it yet (it is joining).
		want[self] = asked
	}
	for _, l := range slices.Clone(w.links) {
		if l.workerID == "" {
			if id := idOf(want, l.addr); id != "" && w.byID(id) == nil {
				l.setID(id)
			} else {
				// An address of WithAddr that no worker advertises: the
				// listed address of the same worker replaces it.
				w.stop(l, "not an advertised worker address")
				continue
			}
		}
		if addr, ok := want[l.workerID]; ok {
			l.misses = 0
			if addr != l.addr && !w.a.connected(l.addr) && w.answersAs(ctx, addr, l.workerID) {
				// Not reachable where it was, and the worker answers
				// where it is listed: restarted on a new address. (A
				// link that is connected stays: the worker answers
				// there, under a name it may not advertise.)
				w.stop(l, "the worker answers at "+addr+" now")
			}
			continue
		}
		l.misses++
		if l.misses >= leftAfter {
			w.stop(l, "the worker left the app")
		}
	}
	for _, id := range sortedKeys(want) {
		if w.byID(id) == nil && !w.isStopping(want[id]) && !w.isStoppingID(id) {
			w.start(want[id], id)
		}
	}
}

// isStoppingID reports whether a link to worker id is still stopping, or a
// link nobody identified (it may have reached id): a new link to id waits
// for it, at whatever address (a link moving to the worker's new address
// waits for the old one).
func (w *workers) isStoppingID(id string) bool {
	return slices.ContainsFunc(w.stopping, func(l *link) bool { return l.workerID == id || l.workerID == "" })
}

// where is the address to reach worker id at, which the group lists at
// addrs, and which answered the list at asked ("" when another worker
// answered). A link it has at one of them stays there. Otherwise the one
// listed address, unless more are listed or the worker answered elsewhere:
// a worker restarted on a new address keeps its worker id (it is kept in
// its data directory), and the group lists the old address until the old
// membership's session times out; the addresses are then asked in turn
// which worker they are, and the first that answers as id is taken (the
// address asked when none does: a load-balanced address of WithAddr names
// whichever worker it picks, so it is the last resort).
func (w *workers) where(ctx context.Context, id string, addrs []string, asked string) string {
	if l := w.byID(id); l != nil && (l.addr == asked || slices.Contains(addrs, l.addr)) &&
		(w.a.connected(l.addr) || len(addrs) == 1 && l.addr == addrs[0]) {
		// (Not a link that cannot connect while another address is
		// listed: the old address of a restarted worker.)
		return l.addr
	}
	if len(addrs) == 1 && (asked == "" || asked == addrs[0]) {
		return addrs[0]
	}
	for _, addr := range addrs {
		if w.answersAs(ctx, addr, id) {
			return addr
		}
	}
	if asked != "" {
		return asked
	}
	return addrs[len(addrs)-1]
}

// seeds starts links to the addresses of WithAddr when there are none.
func (w *workers) seeds() {
	if len(w.links) > 0 {
		return
	}
	for _, addr := range w.a.opts.addrs {
		if !slices.ContainsFunc(w.links, func(l *link) bool { return l.addr == addr }) && !w.isStopping(addr) {
			w.start(addr, "")
		}
	}
}

// list asks the known workers, then the addresses of WithAddr, in turn for
// the app's workers; it returns the first answer and the address that gave
// it, or nil when none answered.
func (w *workers) list(ctx context.Context) (*eddyv1.ListWorkersResponse, string) {
	var addrs []string
	for _, l := range w.links {
		if l.workerID == "" { // identify these first
			addrs = append(addrs, l.addr)
		}
	}
	for _, l := range w.links {
		addrs = append(addrs, l.addr)
	}
	addrs = append(addrs, w.a.opts.addrs...)
	tried := map[string]bool{}
	for _, addr := range addrs {
		if tried[addr] || ctx.Err() != nil {
			continue
		}
		tried[addr] = true
		resp, err := w.listAt(ctx, addr)
		if err == nil {
			return resp, addr
		}
		w.a.log.Debug("no list of workers", "addr", addr, "err", err)
	}
	return nil, ""
}

// answersAs reports whether the worker at addr says it is worker id.
func (w *workers) answersAs(ctx context.Context, addr, id string) bool {
	resp, err := w.listAt(ctx, addr)
	return err == nil && resp.GetWorkerId() == id
}

func (w *workers) listAt(ctx context.Context, addr string) (*eddyv1.ListWorkersResponse, error) {
	conn, err := w.a.dial(addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := w.a.listOn(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("list workers at %s: %w", addr, err)
	}
	return resp, nil
}

// listOn asks for the app's workers on conn.
func (a *Agent) listOn(ctx context.Context, conn *grpc.ClientConn) (*eddyv1.ListWorkersResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	if tok := a.opts.token; tok != "" {
		// Needed when the worker protects reads.
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	return eddyv1.NewLifecycleServiceClient(conn).ListWorkers(ctx, &eddyv1.ListWorkersRequest{})
}

// identify is the id of the worker conn reached, "" when it does not say
// (discovery off, a worker too old to list workers, or not running yet).
func (a *Agent) identify(ctx context.Context, conn *grpc.ClientConn) string {
	if a.opts.discovery == 0 {
		return ""
	}
	resp, err := a.listOn(ctx, conn)
	if err != nil {
		return ""
	}
	return resp.GetWorkerId()
}

// setID names the worker l is a link to.
func (l *link) setID(id string) {
	l.workerID = id
	l.expect.Store(&id)
}

// expected is the worker l is a link to, "" unknown (any goroutine).
func (l *link) expected() string {
	if id := l.expect.Load(); id != nil {
		return *id
	}
	return ""
}

func (w *workers) start(addr, workerID string) {
	ctx, cancel := context.WithCancel(w.ctx)
	l := &link{addr: addr, cancel: cancel, done: make(chan struct{})}
	l.setID(workerID)
	w.links = append(w.links, l)
	w.a.log.Info("connecting to a worker", "addr", addr, "worker", workerID)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(l.done)
		if err := w.a.runLink(ctx, addr, l.expected); err != nil {
			select {
			case w.rejected <- err:
			default:
			}
		}
	}()
}

// stop ends l's sessions gracefully (Run's stop order).
func (w *workers) stop(l *link, why string) {
	w.a.log.Info("leaving a worker", "addr", l.addr, "worker", l.workerID, "why", why)
	l.cancel()
	w.links = slices.DeleteFunc(w.links, func(x *link) bool { return x == l })
	w.stopping = append(w.stopping, l)
}

// reap forgets stopped links that have returned.
func (w *workers) reap() {
	w.stopping = slices.DeleteFunc(w.stopping, func(l *link) bool {
		select {
		case <-l.done:
			return true
		default:
			return false
		}
	})
}

// isStopping reports whether a link to addr is still stopping: a new one
// waits for it, so the worker never has two sessions of this instance.
func (w *workers) isStopping(addr string) bool {
	return slices.ContainsFunc(w.stopping, func(l *link) bool { return l.addr == addr })
}

func (w *workers) byID(id string) *link {
	for _, l := range w.links {
		if l.workerID == id {
			return l
		}
	}
	return nil
}

func idOf(want map[string]string, addr string) string {
	for id, a := range want {
		if a == addr {
			return id
		}
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
