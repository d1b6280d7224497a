package tables_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/eddy-streams/eddy/worker/tables"
)

func startStandby(t testing.TB, e *env, table string, p int32) *tables.Standby {
	t.Helper()
	sb, err := e.r.StartStandby(table, p)
	if err != nil {
		t.Fatalf("StartStandby: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("Standby.Close: %v", err)
		}
	})
	return sb
}

// waitCaughtUp waits until the standby's store holds the changelog
// partition up to its current end (asked of the broker independently).
func waitCaughtUp(t testing.TB, sb *tables.Standby, topic string, p int32) {
	t.Helper()
	_, high := watermarks(t, topic, p)
	waitFor(t, waitTimeout, func() string {
		return fmt.Sprintf("standby store at offset %d (progress %+v, err %v), want %d",
			sb.Store().LastOffset(), sb.Progress(), sb.Err(), high-1)
	}, func() bool { return sb.Store().LastOffset() >= high-1 })
}

func TestStandbyTailsAndTakesOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.changelog("counts", 2, nil)
	first := mutations(30, "s", 1200)
	e.produce(cl, 1, first)

	sb := startStandby(t, e, "counts", 1)
	waitCaughtUp(t, sb, cl.Topic(), 1)
	checkState(t, sb.Store(), fold(nil, first))

	// It tails new records as they come.
	second := mutations(31, "s", 400)
	e.produce(cl, 1, second)
	waitCaughtUp(t, sb, cl.Topic(), 1)
	checkState(t, sb.Store(), fold(nil, first, second))
	// Progress is published right after the store commit.
	waitFor(t, waitTimeout, func() string {
		return fmt.Sprintf("standby Progress %+v to count %d records", sb.Progress(), len(first)+len(second))
	}, func() bool {
		p := sb.Progress()
		return p.Standby && p.Records == int64(len(first)+len(second)) && p.Position == p.To
	})
	if sb.Err() != nil {
		t.Errorf("standby Err = %v", sb.Err())
	}

	// Takeover: stop the standby, more records arrive meanwhile, and the
	// restore from its store reads only those.
	st, err := sb.Stop()
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	defer st.Close()
	if _, err := sb.Stop(); !errors.Is(err, tables.ErrClosed) {
		t.Errorf("second Stop: %v, want ErrClosed", err)
	}
	tail := mutations(32, "s", 77)
	e.produce(cl, 1, tail)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	p, err := e.r.Resume(ctx, st)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	checkProgress(t, p, int64(len(tail)), false)
	checkState(t, st, fold(nil, first, second, tail))
}

// TestStandbyCloseThenRestore: a closed standby leaves its store
// checkpointed on disk; a later Restore continues from it.
func TestStandbyCloseThenRestore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.changelog("counts", 1, nil)
	first := mutations(33, "c", 900)
	e.produce(cl, 0, first)

	sb, err := e.r.StartStandby("counts", 0)
	if err != nil {
		t.Fatal(err)
	}
	// While it runs, the partition's store is locked.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, _, err := e.r.Restore(ctx, "counts", 0); !errors.Is(err, tables.ErrLocked) {
		t.Errorf("Restore while a standby runs: %v, want ErrLocked", err)
	}
	waitCaughtUp(t, sb, cl.Topic(), 0)
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sb.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	st, p := e.restore("counts", 0)
	checkProgress(t, p, 0, false)
	checkState(t, st, fold(nil, first))
}

// TestStandbyEmptyThenRecords: a standby started on an empty partition
// picks up the first records.
func TestStandbyEmptyThenRecords(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.changelog("counts", 1, nil)
	sb := startStandby(t, e, "counts", 0)
	muts := mutations(34, "e", 50)
	e.produce(cl, 0, muts)
	waitCaughtUp(t, sb, cl.Topic(), 0)
	checkState(t, sb.Store(), fold(nil, muts))
}

// TestStandbyWithoutChangelog: a standby whose changelog does not exist
// yet keeps trying, reports why, and catches up once it exists.
func TestStandbyWithoutChangelog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sb := startStandby(t, e, "counts", 0)
	waitFor(t, waitTimeout, func() string { return "the standby to report the missing changelog" }, func() bool {
		return errors.Is(sb.Err(), tables.ErrNoChangelog)
	})
	cl := e.changelog("counts", 1, nil)
	muts := mutations(35, "w", 40)
	e.produce(cl, 0, muts)
	waitCaughtUp(t, sb, cl.Topic(), 0)
	checkState(t, sb.Store(), fold(nil, muts))
}
