package agents_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/worker/agents"
)

// stateGet sends a StateGet and waits for its reply.
func (a *fakeAgent) stateGet(req agents.StateGetRequest) agents.StateReply {
	a.t.Helper()
	a.s.StateGet(req)
	var got agents.StateReply
	waitFor(a.t, wait, func() string { return a.instance + " to receive a StateReply" }, func() bool {
		a.pump()
		for i, r := range a.replies {
			if r.RequestID == req.RequestID {
				got = r
				a.replies = append(a.replies[:i], a.replies[i+1:]...)
				return true
			}
		}
		return false
	})
	return got
}

func TestStateGet(t *testing.T) {
	r := newFakeRestorer(t)
	h := start(t, tableConfig(r, "key"))
	a := h.open("count", "a", 100)
	h.m.Assigned(tps("in", 2))
	h.settle()
	a.pump()
	epoch := a.epoch[tp{"in", 2}]
	if epoch == 0 {
		t.Fatalf("no Assign for in[2]")
	}
	get := func(id uint64, table, key string) agents.StateReply {
		return a.stateGet(agents.StateGetRequest{RequestID: id, Topic: "in", Partition: 2, Epoch: epoch, Table: table, Key: []byte(key)})
	}
	// Still restoring: refused, the session goes on.
	if rep := get(1, "counts", "w"); rep.Error != agents.StateErrRestoring {
		t.Fatalf("StateGet while restoring = %+v, want error %q", rep, agents.StateErrRestoring)
	}
	close(r.release)
	h.send(msg("in", 2, 0, "w", "x"))
	b := a.nextBatch()
	if rep := get(2, "counts", "w"); rep.Error != "" || rep.HasValue {
		t.Fatalf("StateGet of an absent key = %+v, want absent without error", rep)
	}
	a.reply(b, set(0, "w", "1"))
	h.prod.waitCalls(t, 1)
	// Not acknowledged by Kafka yet: not visible.
	if rep := get(3, "counts", "w"); rep.HasValue {
		t.Fatalf("StateGet before the changelog ack = %+v, want absent", rep)
	}
	h.prod.answer(t, 0, nil)
	// Acknowledged: visible through the overlay, then the store.
	waitFor(t, wait, func() string { return "StateGet to see w=1" }, func() bool {
		rep := get(4, "counts", "w")
		return rep.Error == "" && rep.HasValue && string(rep.Value) == "1"
	})
	h.waitCommitted("in", 2, 1)
	st := r.store(0)
	waitFor(t, wait, func() string { return "store to hold w=1" }, func() bool {
		v, found, _ := st.Get([]byte("w"))
		return found && string(v) == "1"
	})
	if rep := get(5, "counts", "w"); rep.Error != "" || !rep.HasValue || string(rep.Value) != "1" {
		t.Fatalf("StateGet from the store = %+v, want 1", rep)
	}
	// Undeclared table, empty key: errors, the session goes on.
	if rep := get(6, "nope", "w"); !strings.Contains(rep.Error, `"nope"`) {
		t.Fatalf("StateGet of an undeclared table = %+v, want an error naming it", rep)
	}
	if rep := get(7, "counts", ""); rep.Error == "" {
		t.Fatalf("StateGet of an empty key = %+v, want an error", rep)
	}
	// A stale epoch (an issued one that is not the lane's) and a partition
	// not owned: "stale epoch".
	if rep := a.stateGet(agents.StateGetRequest{RequestID: 8, Topic: "in", Partition: 2, Epoch: epoch - 1, Table: "counts", Key: []byte("w")}); rep.Error != agents.StateErrStaleEpoch {
		t.Fatalf("StateGet with a stale epoch = %+v, want %q", rep, agents.StateErrStaleEpoch)
	}
	if rep := a.stateGet(agents.StateGetRequest{RequestID: 9, Topic: "in", Partition: 5, Epoch: epoch, Table: "counts", Key: []byte("w")}); rep.Error != agents.StateErrStaleEpoch {
		t.Fatalf("StateGet of a partition not owned = %+v, want %q", rep, agents.StateErrStaleEpoch)
	}
	if !a.alive() {
		t.Fatalf("session ended: %v", a.s.Err())
	}
	// An epoch never issued is a protocol violation.
	a.s.StateGet(agents.StateGetRequest{RequestID: 10, Topic: "in", Partition: 2, Epoch: epoch + 1000, Table: "counts", Key: []byte("w")})
	if err := a.waitDone(); !errors.Is(err, agents.ErrBadRequest) {
		t.Fatalf("session ended with %v, want ErrBadRequest", err)
	}
}
