package agents_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/testutil"
	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/monitor"
	"github.com/eddy-streams/eddy/worker/tables"
)

// fakeRestorer opens stores in a temporary directory without Kafka; a
// restore waits until the test releases it.
type fakeRestorer struct {
	dir     string
	release chan struct{} // closed: restores proceed
	mu      sync.Mutex
	stores  []*tables.Store
	calls   int
}

func newFakeRestorer(t *testing.T) *fakeRestorer {
	return &fakeRestorer{dir: t.TempDir(), release: make(chan struct{})}
}

func (r *fakeRestorer) Restore(ctx context.Context, table string, partition int32) (*tables.Store, tables.Progress, error) {
	r.mu.Lock()
	r.calls++
	r.mu.Unlock()
	select {
	case <-r.release:
	case <-ctx.Done():
		return nil, tables.Progress{}, ctx.Err()
	}
	st, err := tables.Open(r.dir, table, partition)
	if err != nil {
		return nil, tables.Progress{}, err
	}
	r.mu.Lock()
	r.stores = append(r.stores, st)
	r.mu.Unlock()
	return st, tables.Progress{Table: table, Partition: partition, Done: true}, nil
}

func (r *fakeRestorer) Resume(ctx context.Context, st *tables.Store) (tables.Progress, error) {
	return tables.Progress{Table: st.Table(), Partition: st.Partition(), Done: true}, ctx.Err()
}

func (r *fakeRestorer) store(i int) *tables.Store {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stores[i]
}

// tableConfig has one agent "count" on topic "in" with table "counts", in
// the given ordering.
func tableConfig(r *fakeRestorer, ordering string) agents.Config {
	cfg := testConfig()
	a := agentCfg("count", ordering, 3, "in")
	a.Tables = []string{"counts"}
	cfg.Agents = []config.Agent{a}
	cfg.Restorer = r
	return cfg
}

func set(off int64, key, value string) agents.Result {
	return agents.Result{Offset: off, Status: agents.StatusOK,
		Mutations: []agents.Mutation{{Table: "counts", Key: []byte(key), Value: []byte(value)}}}
}

func stateOf(t *testing.T, e agents.Event) (string, bool) {
	t.Helper()
	if len(e.State) != 1 || e.State[0].Table != "counts" {
		t.Fatalf("event %d state %+v, want one entry for counts", e.Offset, e.State)
	}
	return string(e.State[0].Value), e.State[0].HasValue
}

func TestRecoveryBeforeDelivery(t *testing.T) {
	r := newFakeRestorer(t)
	h := start(t, tableConfig(r, ""))
	a := h.open("count", "a", 100)
	h.m.Assigned(tps("in", 3))
	h.sendRange("in", 3, 0, 3)
	h.settle()
	a.noBatch()
	if got := h.m.Recovering(); got != 1 {
		t.Errorf("Recovering() = %d while restoring, want 1", got)
	}
	close(r.release)
	evs := a.takeEvents(3)
	for _, e := range evs {
		if v, has := stateOf(t, e); has || v != "" {
			t.Errorf("event %d: state %q/%v, want absent", e.Offset, v, has)
		}
	}
	if got := h.m.Recovering(); got != 0 {
		t.Errorf("Recovering() = %d after restore, want 0", got)
	}
}

// TestFailedStoreReadHoldsTheEvent: an event whose state cannot be read
// from the store is not delivered (as if its key were absent, which would
// reset the agent's state), but held and read again after a backoff, without
// counting an attempt: the worker's failure, not the agent's.
func TestFailedStoreReadHoldsTheEvent(t *testing.T) {
	r := newFakeRestorer(t)
	close(r.release)
	cfg := tableConfig(r, "")
	mon := monitor.New("app", "", false)
	cfg.Monitor = mon
	h := start(t, cfg)
	a := h.open("count", "a", 100)
	h.m.Assigned(tps("in", 0))
	h.send(msg("in", 0, 0, "w", "x"))
	a.reply(a.nextBatch(), set(0, "w", "1"))
	h.prod.waitCalls(t, 1)
	h.prod.answer(t, 0, nil)
	h.waitCommitted("in", 0, 1)
	st := r.store(0)
	waitFor(t, wait, func() string { return "store to hold w=1" }, func() bool {
		v, found, _ := st.Get([]byte("w"))
		return found && string(v) == "1"
	})

	// The store fails: the key's next event waits, the others too (in
	// order behind it only when they share its key).
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	h.send(msg("in", 0, 1, "w", "x"))
	h.settle()
	time.Sleep(3 * cfg.RetryBackoffMax) // several read attempts
	a.noBatch()
	// Reported: counted, and the partition stalled naming the table.
	if n := mon.Agent("count").TableReadErrors.Load(); n < 2 {
		t.Errorf("got %d table read errors counted, want at least 2 (read again after a backoff)", n)
	}
	waitFor(t, wait, func() string { return fmt.Sprintf("a stall naming the failed read, have %+v", mon.Stalls()) }, func() bool {
		s := mon.Stalls()
		return len(s) == 1 && s[0].Partition == 0 && strings.Contains(s[0].Reason, `reading table "counts" failed`) &&
			strings.Contains(s[0].Reason, tables.ErrClosed.Error())
	})

	// The store works again: the event goes out with its state, as its
	// first attempt.
	healed, err := tables.Open(r.dir, "counts", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { healed.Close() })
	h.m.SwapStore("in", 0, "counts", healed)
	e := a.takeEvents(1)[0]
	if v, has := stateOf(t, e); e.Offset != 1 || !has || v != "1" || e.Attempt != 1 {
		t.Errorf("got offset %d state %q/%v attempt %d, want offset 1 state 1 attempt 1", e.Offset, v, has, e.Attempt)
	}
	waitFor(t, wait, func() string { return fmt.Sprintf("the stall to end, have %+v", mon.Stalls()) }, func() bool {
		return len(mon.Stalls()) == 0
	})
	if got := h.info("count").Retried; got != 0 {
		t.Errorf("got %d retries counted, want 0 (the store's failure is not the agent's)", got)
	}
}

// TestMutationsFlow: a mutation goes to the changelog on the source
// partition; the event is done only when the changelog record is
// acknowledged; the key's next event waits for it and then sees the value;
// the commit cycle applies it to the store with its changelog offset.
func TestMutationsFlow(t *testing.T) {
	for _, ordering := range []string{"", "key"} {
		t.Run("ordering="+ordering, func(t *testing.T) {
			r := newFakeRestorer(t)
			close(r.release)
			h := start(t, tableConfig(r, ordering))
			a := h.open("count", "a", 100)
			h.m.Assigned(tps("in", 2))
			h.send(msg("in", 2, 0, "w", "x"), msg("in", 2, 1, "other", "x"))
			h.settle()
			evs := a.takeEvents(2)
			a.reply(&agents.Batch{PartitionRef: agents.PartitionRef{Topic: "in", Partition: 2, Epoch: a.epoch[tp{"in", 2}]}},
				set(0, "w", "1"), set(1, "other", "7"))
			_ = evs
			h.prod.waitCalls(t, 2)
			rec := h.prod.record(0)
			if rec.Topic != "app-counts-changelog" || rec.Partition != 2 || string(rec.Key) != "w" || string(rec.Value) != "1" {
				t.Fatalf("changelog record %s[%d] %q=%q, want app-counts-changelog[2] w=1", rec.Topic, rec.Partition, rec.Key, rec.Value)
			}
			// The key's next event waits for the acknowledgement.
			h.send(msg("in", 2, 2, "w", "x"))
			h.settle()
			a.noBatch()
			if got := h.cons.committedAt("in", 2); got > 0 {
				t.Fatalf("committed %d before the changelog record was acknowledged", got)
			}
			h.prod.answer(t, 0, nil)
			h.prod.answer(t, 1, nil)
			h.waitCommitted("in", 2, 2)
			e := a.takeEvents(1)[0]
			if v, has := stateOf(t, e); !has || v != "1" {
				t.Fatalf("next event of w sees %q/%v, want 1", v, has)
			}
			// The commit cycle applied the acknowledged mutations.
			st := r.store(0)
			waitFor(t, wait, func() string { return "store to hold w=1 at changelog offset 1" }, func() bool {
				v, found, _ := st.Get([]byte("w"))
				return found && string(v) == "1" && st.LastOffset() == 1
			})
			// A delete: the next event sees the key absent.
			a.reply(&agents.Batch{PartitionRef: agents.PartitionRef{Topic: "in", Partition: 2, Epoch: a.epoch[tp{"in", 2}]}},
				agents.Result{Offset: 2, Status: agents.StatusOK, Mutations: []agents.Mutation{{Table: "counts", Key: []byte("w"), Delete: true}}})
			h.prod.waitCalls(t, 3)
			if rec := h.prod.record(2); rec.Value != nil {
				t.Errorf("delete produced value %q, want a tombstone", rec.Value)
			}
			h.prod.answer(t, 2, nil)
			h.send(msg("in", 2, 3, "w", "x"))
			if v, has := stateOf(t, a.takeEvents(1)[0]); has {
				t.Errorf("after delete the key has %q, want absent", v)
			}
		})
	}
}

// TestSameKeyWaitsInPartitionOrdering: with tables, events of a busy key
// wait even in partition ordering, and other keys go on.
func TestSameKeyWaitsInPartitionOrdering(t *testing.T) {
	r := newFakeRestorer(t)
	close(r.release)
	h := start(t, tableConfig(r, ""))
	a := h.open("count", "a", 100)
	h.m.Assigned(tps("in", 0))
	h.send(msg("in", 0, 0, "a", ""))
	h.settle()
	b := a.nextBatch()
	h.send(msg("in", 0, 1, "a", ""), msg("in", 0, 2, "b", ""), msg("in", 0, 3, "a", ""))
	h.settle()
	if got := eventOffsets(a.takeEvents(1)); !slices.Equal(got, []int64{2}) {
		t.Fatalf("delivered %v while key a is busy, want [2]", got)
	}
	a.reply(b, set(0, "a", "1"))
	h.prod.waitCalls(t, 1)
	h.prod.answer(t, 0, nil)
	got := a.takeEvents(2)
	if !slices.Equal(eventOffsets(got), []int64{1, 3}) {
		t.Fatalf("delivered %v, want [1 3] together", eventOffsets(got))
	}
	for _, e := range got {
		if v, _ := stateOf(t, e); v != "1" {
			t.Errorf("event %d sees %q, want 1", e.Offset, v)
		}
	}
}

func TestBadMutationsEndSession(t *testing.T) {
	tests := []struct {
		name string
		mu   agents.Mutation
		want string
	}{
		{"undeclared table", agents.Mutation{Table: "cnts", Key: []byte("k")}, `table "cnts"`},
		{"empty key", agents.Mutation{Table: "counts"}, "empty key"},
		{"another key", agents.Mutation{Table: "counts", Key: []byte("other"), Value: []byte("1")},
			`mutates key "other" of table "counts", but an event may only change its own key ("k")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFakeRestorer(t)
			close(r.release)
			h := start(t, tableConfig(r, ""))
			a := h.open("count", "a", 100)
			h.m.Assigned(tps("in", 0))
			h.send(msg("in", 0, 0, "k", ""))
			b := a.nextBatch()
			a.reply(b, agents.Result{Offset: 0, Status: agents.StatusOK, Mutations: []agents.Mutation{tt.mu}})
			err := a.waitDone()
			if !errors.Is(err, agents.ErrBadRequest) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("session ended with %v, want ErrBadRequest mentioning %q", err, tt.want)
			}
		})
	}
}

// TestRevokeClosesStores: a revoked partition's stores are closed (after
// its acknowledged mutations are applied); a revoke during the restore
// ends it.
func TestRevokeClosesStores(t *testing.T) {
	r := newFakeRestorer(t)
	close(r.release)
	h := start(t, tableConfig(r, ""))
	a := h.open("count", "a", 100)
	h.m.Assigned(tps("in", 0))
	h.send(msg("in", 0, 0, "k", ""))
	b := a.nextBatch()
	a.reply(b, set(0, "k", "5"))
	h.prod.waitCalls(t, 1)
	h.prod.answer(t, 0, nil)
	h.waitCommitted("in", 0, 1)
	h.m.Revoked(tps("in", 0))
	if _, _, err := r.store(0).Get([]byte("k")); !errors.Is(err, tables.ErrClosed) {
		t.Fatalf("store after revoke: Get err %v, want ErrClosed", err)
	}
	st, err := tables.Open(r.dir, "counts", 0)
	if err != nil {
		t.Fatalf("reopen after revoke: %v", err)
	}
	defer st.Close()
	if v, found, _ := st.Get([]byte("k")); !found || string(v) != "5" || st.LastOffset() != 0 {
		t.Errorf("reopened store has k=%q (found %v) at offset %d, want 5 at 0", v, found, st.LastOffset())
	}
}

func TestRevokeDuringRestore(t *testing.T) {
	r := newFakeRestorer(t) // never released
	h := start(t, tableConfig(r, ""))
	h.open("count", "a", 100)
	h.m.Assigned(tps("in", 0))
	waitFor(t, wait, func() string { return "restore to start" }, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.calls == 1
	})
	h.m.Lost(tps("in", 0))
	waitFor(t, wait, func() string { return "Recovering() to drop to 0" }, func() bool { return h.m.Recovering() == 0 })
}

// fakeStandbys hands over a store prepared by the test, once.
type fakeStandbys struct {
	mu       sync.Mutex
	st       *tables.Store
	taken    []string
	released []string
}

func (s *fakeStandbys) Take(_ context.Context, table string, partition int32) *tables.Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.taken = append(s.taken, fmt.Sprintf("%s/%d", table, partition))
	st := s.st
	s.st = nil
	return st
}

func (s *fakeStandbys) Release(table string, partition int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.released = append(s.released, fmt.Sprintf("%s/%d", table, partition))
}

// TestTakeoverFromStandby: a partition with a local standby replica
// continues from the replica's open store (never opening it again) and
// releases it when the partition leaves.
func TestTakeoverFromStandby(t *testing.T) {
	r := newFakeRestorer(t) // Restore never proceeds: it must not be used
	st, err := tables.Open(r.dir, "counts", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply([]tables.Mutation{{Key: []byte("w"), Value: []byte("41")}}, 9); err != nil {
		t.Fatal(err)
	}
	sbs := &fakeStandbys{st: st}
	cfg := tableConfig(r, "")
	cfg.Standbys = sbs
	h := start(t, cfg)
	a := h.open("count", "a", 100)
	h.m.Assigned(tps("in", 1))
	h.send(msg("in", 1, 0, "w", "x"))
	e := a.takeEvents(1)[0]
	if v, has := stateOf(t, e); !has || v != "41" {
		t.Errorf("event sees %q/%v, want the standby's 41", v, has)
	}
	r.mu.Lock()
	calls := r.calls
	r.mu.Unlock()
	if calls != 0 {
		t.Errorf("Restore called %d times, want 0 (the standby's store is resumed)", calls)
	}
	h.m.Revoked(tps("in", 1))
	if _, _, err := st.Get([]byte("w")); !errors.Is(err, tables.ErrClosed) {
		t.Errorf("store after revoke: Get err %v, want ErrClosed", err)
	}
	sbs.mu.Lock()
	defer sbs.mu.Unlock()
	if !slices.Equal(sbs.taken, []string{"counts/1"}) || !slices.Equal(sbs.released, []string{"counts/1"}) {
		t.Errorf("taken %v, released %v; want [counts/1] each", sbs.taken, sbs.released)
	}
}

// gatedStandbys holds every Take at its start until the test opens gate,
// then claims the table partition as tables.Standbys does: unless the
// takeover's context is done. Release ends a claim.
type gatedStandbys struct {
	gate    chan struct{}
	mu      sync.Mutex
	entered int
	returns int
	claims  map[string]int
	release int
}

func (s *gatedStandbys) Take(ctx context.Context, table string, partition int32) *tables.Store {
	s.mu.Lock()
	s.entered++
	s.mu.Unlock()
	<-s.gate
	s.mu.Lock()
	defer s.mu.Unlock()
	s.returns++
	if ctx.Err() == nil {
		s.claims[fmt.Sprintf("%s/%d", table, partition)]++
	}
	return nil
}

func (s *gatedStandbys) Release(table string, partition int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.release++
	delete(s.claims, fmt.Sprintf("%s/%d", table, partition))
}

func (s *gatedStandbys) count(f func() int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return f()
}

// TestLateTakeAfterRevoke: the restore goroutine of a partition reaches
// Standbys.Take only after the partition was revoked and released. Its
// takeover context must be done by then, so the late Take claims nothing;
// a claim left behind would keep the partition's standby replica off this
// worker for good.
func TestLateTakeAfterRevoke(t *testing.T) {
	for _, lost := range []bool{false, true} {
		t.Run(fmt.Sprintf("lost=%v", lost), func(t *testing.T) {
			r := newFakeRestorer(t)
			close(r.release)
			sbs := &gatedStandbys{gate: make(chan struct{}), claims: map[string]int{}}
			cfg := tableConfig(r, "")
			cfg.Standbys = sbs
			h := start(t, cfg)
			h.m.Assigned(tps("in", 2))
			waitFor(t, wait, func() string { return "the restore goroutine to reach Take" },
				func() bool { return sbs.count(func() int { return sbs.entered }) == 1 })
			if lost {
				h.m.Lost(tps("in", 2))
			} else {
				h.m.Revoked(tps("in", 2))
			}
			waitFor(t, wait, func() string { return "Release of the revoked partition" },
				func() bool { return sbs.count(func() int { return sbs.release }) == 1 })
			close(sbs.gate)
			waitFor(t, wait, func() string { return "the late Take to return" },
				func() bool { return sbs.count(func() int { return sbs.returns }) == 1 })
			waitFor(t, wait, func() string { return "Recovering() to drop to 0" }, func() bool { return h.m.Recovering() == 0 })
			sbs.mu.Lock()
			defer sbs.mu.Unlock()
			if len(sbs.claims) != 0 {
				t.Errorf("claims after the partition left: %v, want none (no Release will end them)", sbs.claims)
			}
		})
	}
}

// TestExpirySweepErrorIsLogged: a sweep for expired windows that cannot
// read the store is logged, once per ten seconds however many commit
// cycles try again, not skipped silently.
func TestExpirySweepErrorIsLogged(t *testing.T) {
	w, err := tables.NewWindow(tables.Tumbling, time.Second, 0, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := newFakeRestorer(t)
	close(r.release)
	var logs testutil.Buffer
	cfg := tableConfig(r, "")
	cfg.Windows = map[string]tables.Window{"counts": w}
	cfg.WindowSweepEvery = time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	h := start(t, cfg)
	a := h.open("count", "a", 100)
	h.m.Assigned(tps("in", 0))
	h.send(msg("in", 0, 0, "k", ""))
	a.reply(a.nextBatch(), agents.Result{Offset: 0, Status: agents.StatusOK})
	h.waitCommitted("in", 0, 1)
	if err := r.store(0).Close(); err != nil {
		t.Fatal(err)
	}
	const line = "sweeping the table for expired windows failed"
	waitFor(t, wait, func() string { return "the failed sweep to be logged, have " + logs.String() }, func() bool {
		return strings.Contains(logs.String(), line)
	})
	time.Sleep(20 * cfg.CommitInterval) // more cycles, more failed sweeps
	if n := strings.Count(logs.String(), line); n != 1 {
		t.Errorf("got %d log lines of failed sweeps, want 1 (rate-limited)", n)
	}
}
