package agents_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/tables"
)

// TestWindowedState: an event of a windowed table carries one state per
// window its timestamp falls in, oldest first, with the window start; a
// mutation names its window and reaches the changelog under the window
// key; the next event of the key sees it; windows past their expiry (by
// the partition's stream time) get a tombstone.
func TestWindowedState(t *testing.T) {
	w, err := tables.NewWindow(tables.Hopping, 2*time.Second, time.Second, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1700000000, 0) // msg offset n has timestamp t0 + n ms
	older, newer := t0.Add(-time.Second), t0
	r := newFakeRestorer(t)
	seed(t, r, 0, string(tables.WindowKey([]byte("k"), newer)), "7")
	close(r.release)
	cfg := tableConfig(r, "")
	cfg.Windows = map[string]tables.Window{"counts": w}
	cfg.WindowSweepEvery = 10 * time.Millisecond
	h := start(t, cfg)
	a := h.open("count", "a", 100)
	h.m.Assigned(tps("in", 0))

	h.send(msg("in", 0, 0, "k", ""))
	b := a.nextBatch()
	st := b.Events[0].State
	if len(st) != 2 || !st[0].WindowStart.Equal(older) || st[0].HasValue || !st[1].WindowStart.Equal(newer) || string(st[1].Value) != "7" {
		t.Fatalf("state %+v, want window %v absent then window %v = 7", st, older, newer)
	}
	a.reply(b, agents.Result{Offset: 0, Status: agents.StatusOK, Mutations: []agents.Mutation{
		{Table: "counts", Key: []byte("k"), Value: []byte("8"), WindowStart: newer}}})
	h.prod.waitCalls(t, 1)
	if got := h.prod.record(0); string(got.Key) != string(tables.WindowKey([]byte("k"), newer)) || string(got.Value) != "8" {
		t.Fatalf("changelog record %q=%q, want the window key of k at %v = 8", got.Key, got.Value, newer)
	}
	h.prod.answer(t, 0, nil)

	h.send(msg("in", 0, 1, "k", ""))
	b = a.nextBatch()
	if st := b.Events[0].State; len(st) != 2 || string(st[1].Value) != "8" {
		t.Fatalf("next event's state %+v, want window %v = 8", st, newer)
	}
	a.reply(b, agents.Result{Offset: 1, Status: agents.StatusOK})
	h.waitCommitted("in", 0, 2)

	// Stream time moves 10 s on: both windows of k are past end + expires;
	// the sweep writes their tombstones (the stored one at least).
	h.send(msg("in", 0, 10000, "other", ""))
	b = a.nextBatch()
	if st := b.Events[0].State; len(st) != 2 || !st[0].WindowStart.Equal(t0.Add(9*time.Second)) {
		t.Fatalf("state at t0+10s %+v, want the windows starting at t0+9s and t0+10s", st)
	}
	a.reply(b, agents.Result{Offset: 10000, Status: agents.StatusOK})
	h.prod.waitCalls(t, 2)
	tomb := h.prod.record(1)
	if string(tomb.Key) != string(tables.WindowKey([]byte("k"), newer)) || tomb.Value != nil {
		t.Fatalf("record after the jump: %q=%q, want the tombstone of k at %v", tomb.Key, tomb.Value, newer)
	}
	h.prod.answer(t, 1, nil)
	waitFor(t, wait, func() string { return "the expired window to be gone" }, func() bool {
		_, found, err := h.m.TableGet(context.Background(), "counts", 0, tables.WindowKey([]byte("k"), newer))
		return err == nil && !found
	})
}

// TestWindowedMutationsChecked: a windowed mutation must name one of the
// event's windows; a plain table takes no window start.
func TestWindowedMutationsChecked(t *testing.T) {
	w, err := tables.NewWindow(tables.Tumbling, time.Minute, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		windowed bool
		start    time.Time
		want     string
	}{
		{"no start on a windowed table", true, time.Time{}, "not one of the event's windows"},
		{"another window", true, time.Unix(1700000000, 0).Truncate(time.Minute).Add(-time.Minute), "not one of the event's windows"},
		{"start on a plain table", false, time.Unix(1700000000, 0).Truncate(time.Minute), "not windowed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newFakeRestorer(t)
			close(r.release)
			cfg := tableConfig(r, "")
			if tt.windowed {
				cfg.Windows = map[string]tables.Window{"counts": w}
			}
			h := start(t, cfg)
			a := h.open("count", "a", 100)
			h.m.Assigned(tps("in", 0))
			h.send(msg("in", 0, 0, "k", ""))
			b := a.nextBatch()
			a.reply(b, agents.Result{Offset: 0, Status: agents.StatusOK, Mutations: []agents.Mutation{
				{Table: "counts", Key: []byte("k"), Value: []byte("1"), WindowStart: tt.start}}})
			err := a.waitDone()
			if !errors.Is(err, agents.ErrBadRequest) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("session ended with %v, want ErrBadRequest mentioning %q", err, tt.want)
			}
		})
	}
}
