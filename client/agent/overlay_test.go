package agent_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/eddy-streams/eddy/client/agent"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// TestStateOverlayWithinBatch: an event sees the SetState of the earlier
// events of its key in the same batch (the worker delivered them all with
// the state before the batch), not the changes of a non-OK event, and a
// new batch starts from the state the worker sends.
func TestStateOverlayWithinBatch(t *testing.T) {
	w := startFakeWorker(t)
	handler := func(_ context.Context, ev *agent.Event) error {
		n := 0
		if v, ok := ev.State("counts"); ok {
			n, _ = strconv.Atoi(string(v))
		}
		ev.SetState("counts", []byte(strconv.Itoa(n+1)))
		if string(ev.Value) == "fail" {
			return agent.Retry(errors.New("not now"))
		}
		return nil
	}
	a := newAgent(t, w, handler)
	runAgent(t, a)
	s := w.session(t, 1)
	s.Assign(t, "words", 0, 1)
	withState := func(off int64, key, value string, st *eddyv1.TableState) *eddyv1.Event {
		e := ev(off, key, value)
		if st != nil {
			e.State = []*eddyv1.TableState{st}
		}
		return e
	}
	five := &eddyv1.TableState{Table: "counts", HasValue: true, Value: []byte("5")}
	s.Batch(t, "words", 0, 1,
		withState(0, "a", "", five),
		withState(1, "b", "", nil),
		withState(2, "a", "fail", five), // not OK: its SetState is not seen
		withState(3, "a", "", five),
		withState(4, "b", "", nil),
	)
	res := s.waitResults(t, "words", 0, 5)
	want := map[int64]string{0: "6", 1: "1", 3: "7", 4: "2"}
	for _, r := range res {
		off := r.GetOffset()
		if off == 2 {
			if len(r.GetMutations()) != 0 {
				t.Errorf("RETRY result carries mutations %v", r.GetMutations())
			}
			continue
		}
		m := r.GetMutations()
		if len(m) != 1 || string(m[0].GetValue()) != want[off] {
			t.Errorf("offset %d: mutations %v, want counts=%s", off, m, want[off])
		}
	}
	// The next batch carries fresh state from the worker: the overlay of
	// the previous batch is gone.
	s.Batch(t, "words", 0, 1, withState(5, "a", "", &eddyv1.TableState{Table: "counts", HasValue: true, Value: []byte("100")}))
	res = s.waitResults(t, "words", 0, 6)
	if m := res[len(res)-1].GetMutations(); len(m) != 1 || string(m[0].GetValue()) != "101" {
		t.Errorf("next batch: mutations %v, want counts=101", m)
	}
}
