package live

import (
	"fmt"
	"slices"
	"sort"
)

// Owner routing: which other worker owns a table partition. The candidates
// are the other workers of the app's consumer group, each with the
// partitions of the table's source topic assigned to it (worker/app builds
// them from the group's description; this worker's own entry is left out:
// a stale description may still list partitions it gave up).

// FindOwner returns the candidate owning part of table, as the
// *NotOwnedError to forward the read with; nil when none does.
func FindOwner(table string, candidates []Owner, part int32) *NotOwnedError {
	for _, c := range candidates {
		if slices.Contains(c.Partitions, part) {
			return &NotOwnedError{Table: table, Partition: part, WorkerID: c.WorkerID, Addr: c.Addr}
		}
	}
	return nil
}

// GroupOwners groups parts of table (source topic topic) by the candidate
// that owns them, sorted by worker id. A partition no candidate owns is
// ErrUnavailable: during a rebalance the caller tries again.
func GroupOwners(table, topic string, candidates []Owner, parts []int32) ([]Owner, error) {
	var out []Owner
	var orphans []int32
	for _, p := range parts {
		i := slices.IndexFunc(candidates, func(c Owner) bool { return slices.Contains(c.Partitions, p) })
		if i < 0 {
			orphans = append(orphans, p)
			continue
		}
		c := candidates[i]
		j := slices.IndexFunc(out, func(o Owner) bool { return o.WorkerID == c.WorkerID })
		if j < 0 {
			out = append(out, Owner{WorkerID: c.WorkerID, Addr: c.Addr})
			j = len(out) - 1
		}
		out[j].Partitions = append(out[j].Partitions, p)
	}
	if len(orphans) > 0 {
		return nil, fmt.Errorf("%w: table %q partitions %v (topic %q) are assigned to no other worker right now (rebalancing?)", ErrUnavailable, table, orphans, topic)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].WorkerID < out[j].WorkerID })
	return out, nil
}
