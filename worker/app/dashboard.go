package app

import "sort"

// StandbyLag is where one standby replica of a table partition stands:
// Position is the next changelog offset it reads, End the latest
// changelog end it saw, Lag the records between them.
type StandbyLag struct {
	Table     string
	Partition int32
	Position  int64
	End       int64
	Lag       int64
	// Err is why the tailing last stopped; empty while it runs.
	Err string
}

// StandbyLags lists the standby replicas this worker runs, by table and
// partition; replicas still starting are left out. Safe for concurrent use.
func (a *App) StandbyLags() []StandbyLag {
	a.mu.Lock()
	sbs := a.standbys
	a.mu.Unlock()
	if sbs == nil {
		return nil
	}
	var out []StandbyLag
	for table, parts := range sbs.Partitions() {
		for _, p := range parts {
			pr, ok := sbs.Progress(table, p)
			if !ok {
				continue
			}
			lag := max(pr.To-pr.Position, 0)
			out = append(out, StandbyLag{Table: table, Partition: p, Position: pr.Position, End: pr.To, Lag: lag, Err: pr.Err})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Table != out[j].Table {
			return out[i].Table < out[j].Table
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

// CommitFailures is the number of offset commits Kafka refused since the
// worker started (eddy_commit_failures_total). Safe for concurrent use.
func (a *App) CommitFailures() uint64 { return a.mon.CommitFailures.Load() }
