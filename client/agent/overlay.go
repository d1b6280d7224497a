package agent

import (
	"time"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// stateOverlay makes an event see the state changes of the earlier events
// of its key in the same EventBatch. The worker delivers a key's queued
// events together in one batch, each with the state the key had before the
// batch; the worker sends the key's next batch only once every event of
// this one is done, with fresh state. So the overlay covers one batch and
// is dropped at the next: only mutations of events whose outcome is OK go
// in (the others are not applied by the worker either). Owned by the
// partition's goroutine.
type stateOverlay struct {
	batch uint64
	vals  map[string]map[string]*eddyv1.TableState // key → stateKey → state
}

// startEvent drops the overlay when the event starts a new batch.
func (o *stateOverlay) startEvent(batch uint64) {
	if batch != o.batch {
		o.batch = batch
		clear(o.vals)
	}
}

// apply sets ev's state from the overlay, for its key.
func (o *stateOverlay) apply(ev *Event) {
	if o == nil || len(o.vals) == 0 {
		return
	}
	for sk, v := range o.vals[string(ev.Key)] {
		if v.GetWindowStart() != nil {
			if _, delivered := ev.state[sk]; !delivered {
				continue // a window this event's timestamp is not in
			}
		}
		if ev.state == nil {
			ev.state = map[string]*eddyv1.TableState{}
		}
		ev.state[sk] = v
	}
}

// record adds an OK event's mutations of key.
func (o *stateOverlay) record(key []byte, muts []*eddyv1.Mutation) {
	if o == nil {
		return
	}
	for _, m := range muts {
		if string(m.GetKey()) != string(key) {
			continue // only the event's own key travels with events
		}
		if o.vals == nil {
			o.vals = map[string]map[string]*eddyv1.TableState{}
		}
		byTable := o.vals[string(key)]
		if byTable == nil {
			byTable = map[string]*eddyv1.TableState{}
			o.vals[string(key)] = byTable
		}
		var start time.Time
		if ws := m.GetWindowStart(); ws != nil {
			start = ws.AsTime()
		}
		byTable[stateKey(m.GetTable(), start)] = &eddyv1.TableState{Table: m.GetTable(), HasValue: !m.GetDelete(), Value: m.GetValue(), WindowStart: m.GetWindowStart()}
	}
}
