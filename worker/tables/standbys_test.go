package tables_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"testing"

	"github.com/eddy-streams/eddy/worker/tables"
)

func TestPlaceStandbys(t *testing.T) {
	t.Parallel()
	// Partitions 0..5 owned round-robin by a, b, c.
	abc := map[int32]string{0: "a", 1: "b", 2: "c", 3: "a", 4: "b", 5: "c"}
	tests := []struct {
		name     string
		members  []string
		owners   map[int32]string
		replicas int
		self     string
		want     []int32
	}{
		{"no replicas", []string{"a", "b", "c"}, abc, 0, "b", nil},
		{"alone", []string{"a"}, map[int32]string{0: "a"}, 1, "a", nil},
		{"one replica: next member", []string{"a", "b", "c"}, abc, 1, "b", []int32{0, 3}},
		{"one replica: wraps around", []string{"a", "b", "c"}, abc, 1, "a", []int32{2, 5}},
		{"members in any order", []string{"c", "a", "b"}, abc, 1, "c", []int32{1, 4}},
		{"two replicas", []string{"a", "b", "c"}, abc, 2, "a", []int32{1, 2, 4, 5}},
		{"more replicas than other members", []string{"a", "b", "c"}, abc, 5, "c", []int32{0, 1, 3, 4}},
		{"two members", []string{"w1", "w2"}, map[int32]string{0: "w1", 1: "w2", 2: "w1"}, 1, "w2", []int32{0, 2}},
		{"owner not a member", []string{"a", "b"}, map[int32]string{0: "x", 1: "a"}, 1, "b", []int32{1}},
		{"self not a member", []string{"a", "b"}, map[int32]string{0: "a", 1: "b"}, 1, "z", nil},
		{"unowned partitions get none", []string{"a", "b"}, map[int32]string{}, 1, "b", nil},
		{"duplicate members", []string{"a", "a", "b"}, map[int32]string{0: "a", 1: "b"}, 1, "b", []int32{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tables.PlaceStandbys(tt.members, tt.owners, tt.replicas, tt.self)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// Every partition gets min(replicas, members-1) standbys, none on its owner.
func TestPlaceStandbysCoverage(t *testing.T) {
	t.Parallel()
	members := []string{"w0", "w1", "w2", "w3", "w4"}
	owners := map[int32]string{}
	for p := range int32(20) {
		owners[p] = members[(p*7)%5]
	}
	for replicas := 0; replicas <= 6; replicas++ {
		count := map[int32]int{}
		for _, self := range members {
			for _, p := range tables.PlaceStandbys(members, owners, replicas, self) {
				if owners[p] == self {
					t.Errorf("replicas %d: %s keeps a standby of its own partition %d", replicas, self, p)
				}
				count[p]++
			}
		}
		for p := range owners {
			if got, want := count[p], min(replicas, len(members)-1); got != want {
				t.Errorf("replicas %d: partition %d has %d standbys, want %d", replicas, p, got, want)
			}
		}
	}
}

func TestStandbysReconcileAndTake(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.changelog("counts", 3, nil)
	for p := range int32(3) {
		e.produce(cl, p, mutations(uint64(40+p), "k", 500))
	}
	sbs := tables.NewStandbys(e.r, nil, 2)
	t.Cleanup(func() { _ = sbs.Close() })

	sbs.Reconcile(map[string][]int32{"counts": {0, 1, 2}}, nil)
	if got := sbs.Partitions()["counts"]; !slices.Equal(got, []int32{0, 1, 2}) {
		t.Fatalf("Partitions after Reconcile = %v, want [0 1 2]", got)
	}
	for p := range int32(3) {
		waitStandbyCaughtUp(t, e, p)
	}
	// Placement moves 0 away; 2 is unowned right now (kept).
	sbs.Reconcile(map[string][]int32{"counts": {1}}, map[string][]int32{"counts": {2}})
	if got := sbs.Partitions()["counts"]; !slices.Equal(got, []int32{1, 2}) {
		t.Fatalf("Partitions after the move = %v, want [1 2]", got)
	}
	// The stopped replica left its store closed and checkpointed.
	st0, p0 := e.restore("counts", 0)
	closeStore(t, st0)
	if p0.Records != 0 {
		t.Errorf("restore after the standby of partition 0 stopped read %d records, want 0", p0.Records)
	}

	// Takeover of partition 1: the store is handed over, and only the tail
	// is read.
	waitFor(t, waitTimeout, func() string { return "standby of partition 1 to report position 500" }, func() bool {
		pr, ok := sbs.Progress("counts", 1)
		return ok && pr.Position == 500
	})
	st := sbs.Take(context.Background(), "counts", 1)
	if st == nil {
		t.Fatal("Take returned no store")
	}
	defer closeStore(t, st)
	tail := mutations(50, "k", 30)
	e.produce(cl, 1, tail)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	p, err := e.r.Resume(ctx, st)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if p.Records != int64(len(tail)) {
		t.Errorf("takeover read %d records, want the tail's %d", p.Records, len(tail))
	}
	// Owned here: no replica is started for it until Release.
	sbs.Reconcile(map[string][]int32{"counts": {1, 2}}, nil)
	if got := sbs.Partitions()["counts"]; !slices.Equal(got, []int32{2}) {
		t.Errorf("Partitions while 1 is taken = %v, want [2]", got)
	}
	if sbs.Take(context.Background(), "counts", 0) != nil {
		t.Error("Take of a partition without a replica returned a store")
	}
	sbs.Release("counts", 1)
	if err := sbs.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	sbs.Reconcile(map[string][]int32{"counts": {2}}, nil)
	if got := sbs.Partitions(); len(got) != 0 {
		t.Errorf("Partitions after Close = %v, want none", got)
	}
}

// waitStandbyCaughtUp waits until partition p's replica logged that it
// caught up (its store is then marked current).
func waitStandbyCaughtUp(t testing.TB, e *env, p int32) {
	t.Helper()
	re := regexp.MustCompile(fmt.Sprintf(`msg="standby replica caught up".* partition=%d `, p))
	waitFor(t, waitTimeout, func() string { return fmt.Sprintf("standby of partition %d to catch up", p) },
		func() bool { return re.MatchString(e.logs.String()) })
}

// TestStandbysLateTakeAfterRelease: the restore of a partition takes its
// standby replica on a goroutine of its own; when the partition is revoked
// before that goroutine reaches Take, the Take comes after its Release. It
// must claim nothing: else no replica of the partition is ever started on
// this worker again.
func TestStandbysLateTakeAfterRelease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.changelog("counts", 1, nil)
	e.produce(cl, 0, mutations(60, "k", 50))
	sbs := tables.NewStandbys(e.r, nil, 1)
	t.Cleanup(func() { _ = sbs.Close() })
	sbs.Reconcile(map[string][]int32{"counts": {0}}, nil)
	waitStandbyCaughtUp(t, e, 0)

	// Assigned here: the restore goroutine starts; revoked before it ran
	// (its context cancelled, then Release).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sbs.Release("counts", 0)
	if st := sbs.Take(ctx, "counts", 0); st != nil {
		closeStore(t, st)
		t.Error("a Take after its Release handed a store over")
	}
	// Placed here again: the replica runs.
	sbs.Reconcile(map[string][]int32{"counts": {0}}, nil)
	if got := sbs.Partitions()["counts"]; !slices.Equal(got, []int32{0}) {
		t.Errorf("Partitions after the late Take = %v, want [0]: the partition stays claimed for good", got)
	}
	// A takeover under a live context still claims it.
	st := sbs.Take(context.Background(), "counts", 0)
	if st == nil {
		t.Fatal("Take of the running replica returned no store")
	}
	closeStore(t, st)
	sbs.Reconcile(map[string][]int32{"counts": {0}}, nil)
	if got := sbs.Partitions()["counts"]; len(got) != 0 {
		t.Errorf("Partitions while taken = %v, want none", got)
	}
}
