package app

import (
	"context"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
)

// standbyInterval is how often the standby placement is re-evaluated from
// the consumer group's description (also after every assignment change).
const standbyInterval = 3 * time.Second

// runStandbys keeps the standby replicas of this worker placed as
// tables.PlaceStandbys says, re-reading the group description every
// standbyInterval and after each assignment change (kick), until ctx ends.
// It never runs on the agents manager's goroutine. The caller closes sbs.
func (a *App) runStandbys(ctx context.Context, sbs *tables.Standbys, kick <-chan struct{}) error {
	t := time.NewTicker(standbyInterval)
	defer t.Stop()
	for {
		a.placeStandbys(ctx, sbs)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-kick:
			// Let the group settle a moment: the description lags the
			// assignment callbacks.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// placeStandbys reconciles the standby replicas with one fresh group
// description. A failed description changes nothing.
func (a *App) placeStandbys(ctx context.Context, sbs *tables.Standbys) {
	ms, err := a.Members(ctx, true)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Debug("standby placement: describing the group", "err", err)
		}
		return
	}
	want, keep := a.standbyPlacement(ms)
	sbs.Reconcile(want, keep)
}

// standbyPlacement returns, by table, the partitions this worker keeps
// standby replicas of (want) and those owned by no worker in the
// description (keep: a replica already running stays, for the takeover).
func (a *App) standbyPlacement(ms []Member) (want, keep map[string][]int32) {
	want, keep = map[string][]int32{}, map[string][]int32{}
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		ids = append(ids, m.WorkerID)
	}
	for _, t := range a.cfg.Tables {
		if t.StandbyReplicas <= 0 {
			continue
		}
		_, src, err := a.tableSource(t.Name)
		if err != nil {
			continue
		}
		n := a.tablePartitions(t.Name)
		owners := map[int32]string{}
		for _, m := range ms {
			for _, tp := range m.Assigned {
				if tp.Topic == src && tp.Partition < n {
					owners[tp.Partition] = m.WorkerID
				}
			}
		}
		want[t.Name] = tables.PlaceStandbys(ids, owners, t.StandbyReplicas, a.cfg.WorkerID)
		for p := range n {
			if _, ok := owners[p]; !ok {
				keep[t.Name] = append(keep[t.Name], p)
			}
		}
	}
	return want, keep
}

// wantsStandbys reports whether a table used by an agent has standby
// replicas.
func (a *App) wantsStandbys() bool {
	for _, t := range a.cfg.Tables {
		if t.StandbyReplicas > 0 && a.tablePartitions(t.Name) > 0 {
			return true
		}
	}
	return false
}

// kickStandbys asks the placement loop to run soon; it never blocks (the
// consumer's poll goroutine calls it).
func (a *App) kickStandbys() {
	select {
	case a.standbyKick <- struct{}{}:
	default:
	}
}
