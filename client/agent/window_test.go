package agent

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// TestWindows: a delivered event lists its windows oldest first with their
// values; SetWindowState changes one and produces a mutation with its
// start; a later event of the key in the batch sees it through the
// overlay; misuses fail the event instead of reaching the worker.
func TestWindows(t *testing.T) {
	t1, t2 := time.Unix(1700000000, 0).UTC(), time.Unix(1700000060, 0).UTC()
	pe := &eddyv1.Event{Offset: 3, Key: []byte("k"), State: []*eddyv1.TableState{
		{Table: "plain", HasValue: true, Value: []byte("p")},
		{Table: "pm", WindowStart: timestamppb.New(t1)},
		{Table: "pm", HasValue: true, Value: []byte("4"), WindowStart: timestamppb.New(t2)},
	}}
	ev := newEvent("in", 0, pe)
	ws := ev.Windows("pm")
	if len(ws) != 2 || !ws[0].Start.Equal(t1) || ws[0].Found || !ws[1].Start.Equal(t2) || string(ws[1].Value) != "4" {
		t.Fatalf("Windows = %+v", ws)
	}
	if v, ok := ev.State("plain"); !ok || string(v) != "p" || len(ev.Windows("plain")) != 0 {
		t.Fatalf("plain state %q %v, windows %v", v, ok, ev.Windows("plain"))
	}
	ev.SetWindowState("pm", t2, []byte("5"))
	if ws := ev.Windows("pm"); string(ws[1].Value) != "5" || !ws[1].Found {
		t.Fatalf("after SetWindowState: %+v", ws)
	}
	if len(ev.mutations) != 1 || !ev.mutations[0].GetWindowStart().AsTime().Equal(t2) || string(ev.mutations[0].GetValue()) != "5" {
		t.Fatalf("mutations %v", ev.mutations)
	}

	var o stateOverlay
	o.startEvent(1)
	o.record(ev.Key, ev.mutations)
	next := newEvent("in", 0, &eddyv1.Event{Offset: 4, Key: []byte("k"), State: pe.GetState()})
	o.apply(next)
	if ws := next.Windows("pm"); string(ws[1].Value) != "5" || ws[0].Found {
		t.Fatalf("next event of the key in the batch sees %+v, want window 2 = 5", ws)
	}

	for _, tt := range []struct {
		name string
		do   func(e *Event)
		want string
	}{
		{"SetState on a windowed table", func(e *Event) { e.SetState("pm", []byte("1")) }, "is windowed"},
		{"SetWindowState on a plain table", func(e *Event) { e.SetWindowState("plain", t1, []byte("1")) }, "is not windowed"},
		{"a window not delivered", func(e *Event) { e.SetWindowState("pm", t1.Add(time.Hour), []byte("1")) }, "is not the start of a window"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEvent("in", 0, pe)
			tt.do(e)
			if len(e.errs) != 1 || !strings.Contains(e.errs[0].Error(), tt.want) || len(e.mutations) != 0 {
				t.Errorf("errs %v, mutations %v; want one error mentioning %q", e.errs, e.mutations, tt.want)
			}
		})
	}

	// An Event literal gets its windows for a handler test.
	lit := &Event{Key: []byte("k")}
	lit.DeliverWindows("pm", Window{Start: t1})
	lit.SetWindowState("pm", t1, []byte("1"))
	if ws := lit.Windows("pm"); len(ws) != 1 || string(ws[0].Value) != "1" {
		t.Errorf("literal windows %+v", ws)
	}
}
