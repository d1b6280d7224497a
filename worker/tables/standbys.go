package tables

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
)

// DefaultStandbyStarts is how many standby replicas Standbys.Reconcile
// starts or stops at once.
const DefaultStandbyStarts = 4

// PlaceStandbys returns the partitions whose standby replicas worker self
// keeps, sorted. members are the workers of the group (any order: they
// are sorted by id here), owners the owning worker of each partition that
// has one. For a partition owned by the member at index i (in id order),
// standbys go to the members at i+1 .. i+replicas (mod len(members)),
// never to the owner itself: with fewer members than replicas+1, each
// other member keeps one. Partitions whose owner is not among members get
// no standby. PlaceStandbys is pure and safe for concurrent use.
func PlaceStandbys(members []string, owners map[int32]string, replicas int, self string) []int32 {
	if replicas <= 0 || len(members) < 2 {
		return nil
	}
	ids := slices.Clone(members)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	index := make(map[string]int, len(ids))
	for i, id := range ids {
		index[id] = i
	}
	n := min(replicas, len(ids)-1)
	var out []int32
	for p, owner := range owners {
		i, ok := index[owner]
		if !ok || owner == self {
			continue
		}
		for k := 1; k <= n; k++ {
			if ids[(i+k)%len(ids)] == self {
				out = append(out, p)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// TablePartition names one partition of a table.
type TablePartition struct {
	Table     string
	Partition int32
}

// standbyEntry is one standby replica, running or starting: ready closes
// once StartStandby returned (sb or err set).
type standbyEntry struct {
	ready chan struct{}
	sb    *Standby
	err   error
}

// Standbys runs the standby replicas of one worker: Reconcile starts and
// stops them to match a placement, Take hands a replica's store over to a
// takeover. A partition taken over (owned here) gets no standby until
// Release. Its methods are safe for concurrent use.
//
// Shutdown (Close):
//  1. refuse new standbys (Reconcile and Take become no-ops);
//  2. close every standby replica, leaving each store checkpointed on disk.
type Standbys struct {
	r        *Restorer
	log      *slog.Logger
	parallel int

	mu      sync.Mutex
	closed  bool
	running map[TablePartition]*standbyEntry
	claimed map[TablePartition]bool
}

// NewStandbys returns a Standbys that starts replicas with r, at most
// parallel at once (0: DefaultStandbyStarts), logging to log (nil:
// discard).
func NewStandbys(r *Restorer, log *slog.Logger, parallel int) *Standbys {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if parallel <= 0 {
		parallel = DefaultStandbyStarts
	}
	return &Standbys{r: r, log: log, parallel: parallel,
		running: map[TablePartition]*standbyEntry{}, claimed: map[TablePartition]bool{}}
}

// Reconcile starts the standby replicas of want (by table, the partitions
// to keep warm) that do not run, and stops those that run but are neither
// in want nor in keep (partitions whose placement is unknown right now,
// e.g. owned by no worker during a rebalance: a replica is kept for a
// takeover). Partitions taken over here (Take, until Release) are skipped.
// A replica that fails to start (its store still held by a closing
// partition) is logged and tried again on the next Reconcile. It returns
// once every start and stop is done.
func (s *Standbys) Reconcile(want, keep map[string][]int32) {
	wanted := map[TablePartition]bool{}
	for t, ps := range want {
		for _, p := range ps {
			wanted[TablePartition{t, p}] = true
		}
	}
	kept := map[TablePartition]bool{}
	for t, ps := range keep {
		for _, p := range ps {
			kept[TablePartition{t, p}] = true
		}
	}
	type job struct {
		tp    TablePartition
		e     *standbyEntry
		start bool
	}
	var jobs []job
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	for tp, e := range s.running {
		if !wanted[tp] && !kept[tp] {
			delete(s.running, tp)
			jobs = append(jobs, job{tp: tp, e: e})
		}
	}
	for tp := range wanted {
		if s.running[tp] == nil && !s.claimed[tp] {
			e := &standbyEntry{ready: make(chan struct{})}
			s.running[tp] = e
			jobs = append(jobs, job{tp: tp, e: e, start: true})
		}
	}
	s.mu.Unlock()
	sort.Slice(jobs, func(i, j int) bool {
		a, b := jobs[i].tp, jobs[j].tp
		return a.Table < b.Table || a.Table == b.Table && a.Partition < b.Partition
	})

	sem := make(chan struct{}, s.parallel)
	var wg sync.WaitGroup
	for _, j := range jobs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if j.start {
				s.start(j.tp, j.e)
			} else {
				s.stop(j.tp, j.e, "no longer placed here")
			}
		}()
	}
	wg.Wait()
}

func (s *Standbys) start(tp TablePartition, e *standbyEntry) {
	e.sb, e.err = s.r.StartStandby(tp.Table, tp.Partition)
	close(e.ready)
	if e.err != nil {
		s.mu.Lock()
		if s.running[tp] == e {
			delete(s.running, tp)
		}
		s.mu.Unlock()
		s.log.Warn("standby replica not started; trying again later", "table", tp.Table, "partition", tp.Partition, "err", e.err)
		return
	}
	s.log.Info("standby replica started", "table", tp.Table, "partition", tp.Partition)
}

// stop closes the replica of an entry removed from running.
func (s *Standbys) stop(tp TablePartition, e *standbyEntry, why string) {
	<-e.ready
	if e.sb == nil {
		return
	}
	p := e.sb.Progress()
	if err := e.sb.Close(); err != nil {
		s.log.Warn("closing standby replica", "table", tp.Table, "partition", tp.Partition, "err", err)
	}
	s.log.Info("standby replica stopped", "table", tp.Table, "partition", tp.Partition, "reason", why, "records", p.Records)
}

// Take marks a table partition as owned here (no standby is started for
// it until Release) and, when a standby replica of it runs, stops it and
// returns its open store, checkpointed: the caller owns it (pass it to
// Restorer.Resume, or Close it). It returns nil when there is no replica
// (or it failed to start, or Standbys is closed).
//
// ctx is the takeover's: once it is done, Take claims nothing and returns
// nil. The caller cancels it before it calls Release for the partition, so
// a Take that runs late (on a restore goroutine, after the partition left
// and was released) never leaves a claim that no Release ends: ctx is
// checked under the same lock Release takes.
func (s *Standbys) Take(ctx context.Context, table string, partition int32) *Store {
	tp := TablePartition{table, partition}
	s.mu.Lock()
	if s.closed || ctx.Err() != nil {
		s.mu.Unlock()
		return nil
	}
	s.claimed[tp] = true
	e := s.running[tp]
	delete(s.running, tp)
	s.mu.Unlock()
	if e == nil {
		return nil
	}
	<-e.ready
	if e.sb == nil {
		return nil
	}
	p := e.sb.Progress()
	st, err := e.sb.Stop()
	if err != nil {
		return nil
	}
	s.log.Info("standby replica stopped", "table", table, "partition", partition,
		"reason", "taking the partition over", "offset", st.LastOffset(), "records", p.Records)
	return st
}

// Release ends what Take began: the partition left this worker, and may
// get a standby replica again. Cancel the context given to Take first
// (see Take).
func (s *Standbys) Release(table string, partition int32) {
	s.mu.Lock()
	delete(s.claimed, TablePartition{table, partition})
	s.mu.Unlock()
}

// Partitions returns, by table, the partitions with a standby replica
// running (or starting), sorted.
func (s *Standbys) Partitions() map[string][]int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]int32{}
	for tp := range s.running {
		out[tp.Table] = append(out[tp.Table], tp.Partition)
	}
	for _, ps := range out {
		slices.Sort(ps)
	}
	return out
}

// Progress returns the progress of a table partition's running replica
// (see Standby.Progress); ok is false when none runs (or it is starting).
func (s *Standbys) Progress(table string, partition int32) (p Progress, ok bool) {
	s.mu.Lock()
	e := s.running[TablePartition{table, partition}]
	s.mu.Unlock()
	if e == nil {
		return Progress{}, false
	}
	select {
	case <-e.ready:
	default:
		return Progress{}, false
	}
	if e.sb == nil {
		return Progress{}, false
	}
	return e.sb.Progress(), true
}

// Close stops every standby replica (each store stays checkpointed on
// disk, for a later restore here) and refuses new ones. It is idempotent.
func (s *Standbys) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	running := s.running
	s.running = map[TablePartition]*standbyEntry{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for tp, e := range running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stop(tp, e, "shutting down")
		}()
	}
	wg.Wait()
	return nil
}

// String describes a table partition for logs and errors.
func (tp TablePartition) String() string { return fmt.Sprintf("%s/%d", tp.Table, tp.Partition) }
