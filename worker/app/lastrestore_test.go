package app

import (
	"log/slog"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/tables"
)

// TestStatusKeepsLastRestores: once a restore is done, status keeps it —
// from the checkpoint or full, records, duration, and the error of one that
// failed — one entry per table partition, the latest, while restores under
// way stay in Recovery only; standby tailing is left out.
func TestStatusKeepsLastRestores(t *testing.T) {
	cfg := &config.Config{App: "wc", Tables: []config.Table{{Name: "counts"}}}
	a := New(cfg, Options{Logger: slog.New(slog.DiscardHandler)})

	a.onRestoreProgress(tables.Progress{Table: "counts", Partition: 3, From: 100, To: 1000, Position: 400, Records: 300})
	if st := a.Status(); len(st.Recovery) != 1 || len(st.LastRestores) != 0 {
		t.Fatalf("a restore under way: got recovery %+v, last restores %+v; want 1 and 0", st.Recovery, st.LastRestores)
	}
	a.onRestoreProgress(tables.Progress{Table: "counts", Partition: 3, From: 100, To: 1000, Position: 1000, Records: 900,
		Elapsed: 2 * time.Second, Done: true})
	a.onRestoreProgress(tables.Progress{Table: "counts", Partition: 1, Rebuild: true, Reason: "no local state", To: 50,
		Position: 50, Records: 50, Elapsed: time.Second, Done: true})
	a.onRestoreProgress(tables.Progress{Table: "counts", Partition: 7, Standby: true, To: 50, Position: 50, Records: 50, Done: true})

	st := a.Status()
	if len(st.Recovery) != 0 {
		t.Errorf("recovery after the restores: got %+v, want none", st.Recovery)
	}
	want := []LastRestore{
		{Table: "counts", Partition: 1, Full: true, Reason: "no local state", From: 0, To: 50, Records: 50, Duration: time.Second},
		{Table: "counts", Partition: 3, From: 100, To: 1000, Records: 900, Duration: 2 * time.Second},
	}
	check := func(step string, got, want []LastRestore) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: got %d last restores %+v, want %d", step, len(got), got, len(want))
		}
		for i := range want {
			g := got[i]
			if g.FinishedAt.IsZero() {
				t.Errorf("%s: last restore %d has no finish time", step, i)
			}
			g.FinishedAt = time.Time{}
			if g != want[i] {
				t.Errorf("%s: last restore %d: got %+v, want %+v", step, i, g, want[i])
			}
		}
	}
	check("two restores", st.LastRestores, want)

	// A later restore of partition 3 replaces the entry; so does a failed one.
	a.onRestoreProgress(tables.Progress{Table: "counts", Partition: 3, From: 1000, To: 1200, Position: 1200, Records: 200,
		Elapsed: time.Second, Done: true})
	want[1] = LastRestore{Table: "counts", Partition: 3, From: 1000, To: 1200, Records: 200, Duration: time.Second}
	check("restored again", a.Status().LastRestores, want)
	a.onRestoreProgress(tables.Progress{Table: "counts", Partition: 3, From: 1200, To: 1500, Position: 1300, Records: 100,
		Elapsed: time.Second, Done: true, Err: "changelog partition has no leader"})
	want[1] = LastRestore{Table: "counts", Partition: 3, From: 1200, To: 1500, Records: 100, Duration: time.Second,
		Err: "changelog partition has no leader"}
	check("failed", a.Status().LastRestores, want)
}
