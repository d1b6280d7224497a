package agent_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/client/agent"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// StateGets returns the StateGets received, in order.
func (s *fakeSession) StateGets() []*eddyv1.StateGet {
	var out []*eddyv1.StateGet
	for _, m := range s.Msgs() {
		if g := m.GetStateGet(); g != nil {
			out = append(out, g)
		}
	}
	return out
}

// waitStateGet waits for the n-th (from 1) StateGet.
func (s *fakeSession) waitStateGet(t testing.TB, n int) *eddyv1.StateGet {
	t.Helper()
	waitFor(t, waitTimeout, fmt.Sprintf("StateGet %d", n), func() bool { return len(s.StateGets()) >= n })
	return s.StateGets()[n-1]
}

// StateReply answers a StateGet.
func (s *fakeSession) StateReply(r *eddyv1.StateReply) {
	s.send(&eddyv1.ConnectResponse{Msg: &eddyv1.ConnectResponse_StateReply{StateReply: r}})
}

// TestEventGet: Event.Get sends a StateGet for the event's partition and
// epoch, and returns the matching StateReply: a value, an absent key, an
// error of the worker; a reply for another request id is not taken.
func TestEventGet(t *testing.T) {
	w := startFakeWorker(t)
	type got struct {
		v     string
		found bool
		err   error
	}
	gots := make(chan got, 10)
	a := newAgent(t, w, func(ctx context.Context, ev *agent.Event) error {
		v, found, err := ev.Get(ctx, "counts", ev.Value)
		gots <- got{string(v), found, err}
		return err
	})
	runAgent(t, a)
	s := w.session(t, 1)
	s.Assign(t, "in", 3, 7)

	s.Batch(t, "in", 3, 7, ev(0, "k", "other"))
	g := s.waitStateGet(t, 1)
	if g.GetTopic() != "in" || g.GetPartition() != 3 || g.GetEpoch() != 7 || g.GetTable() != "counts" || string(g.GetKey()) != "other" {
		t.Fatalf("StateGet = %v, want in[3] epoch 7 counts/other", g)
	}
	s.StateReply(&eddyv1.StateReply{RequestId: g.GetRequestId() + 100, HasValue: true, Value: []byte("wrong")})
	s.StateReply(&eddyv1.StateReply{RequestId: g.GetRequestId(), HasValue: true, Value: []byte("42")})
	if r := <-gots; r.err != nil || !r.found || r.v != "42" {
		t.Fatalf("Get = %q, %v, %v; want 42, true, nil", r.v, r.found, r.err)
	}
	s.waitResults(t, "in", 3, 1)

	s.Batch(t, "in", 3, 7, ev(1, "k", "absent"))
	g2 := s.waitStateGet(t, 2)
	if g2.GetRequestId() == g.GetRequestId() {
		t.Fatalf("request id %d reused", g2.GetRequestId())
	}
	s.StateReply(&eddyv1.StateReply{RequestId: g2.GetRequestId()})
	if r := <-gots; r.err != nil || r.found {
		t.Fatalf("Get of an absent key = %q, %v, %v; want not found, nil", r.v, r.found, r.err)
	}

	s.Batch(t, "in", 3, 7, ev(2, "k", "x"))
	g3 := s.waitStateGet(t, 3)
	s.StateReply(&eddyv1.StateReply{RequestId: g3.GetRequestId(), Error: "stale epoch"})
	if r := <-gots; r.err == nil || !strings.Contains(r.err.Error(), "stale epoch") {
		t.Fatalf("Get = %v, want an error with the worker's", r.err)
	}
	res := s.waitResults(t, "in", 3, 3)
	if st := res[2].GetStatus(); st != eddyv1.ResultStatus_RESULT_STATUS_RETRY {
		t.Fatalf("result of the failed Get: %v, want RETRY", st)
	}
}

// TestEventGetContext: Get returns when its context ends; a late reply is
// dropped.
func TestEventGetContext(t *testing.T) {
	w := startFakeWorker(t)
	errs := make(chan error, 1)
	a := newAgent(t, w, func(ctx context.Context, ev *agent.Event) error {
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, _, err := ev.Get(ctx, "counts", []byte("other"))
		errs <- err
		return nil
	})
	runAgent(t, a)
	s := w.session(t, 1)
	s.Assign(t, "in", 0, 1)
	s.Batch(t, "in", 0, 1, ev(0, "k", "v"))
	g := s.waitStateGet(t, 1)
	select {
	case err := <-errs:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get = %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Get did not return after its context ended")
	}
	s.waitResults(t, "in", 0, 1)
	s.StateReply(&eddyv1.StateReply{RequestId: g.GetRequestId(), HasValue: true}) // late: dropped
	s.Batch(t, "in", 0, 1, ev(1, "k", "v"))
	s.waitStateGet(t, 2)
	<-errs
	s.waitResults(t, "in", 0, 2)
}

func TestEventGetLiteral(t *testing.T) {
	ev := &agent.Event{Topic: "in", Key: []byte("k")}
	if _, _, err := ev.Get(context.Background(), "counts", []byte("x")); !errors.Is(err, agent.ErrNoWorker) {
		t.Fatalf("Get on a literal = %v, want ErrNoWorker", err)
	}
}
