package app

import (
	"context"
	"fmt"
	"time"

	"github.com/eddy-streams/eddy/worker/config"
)

// partitionCounter reads the partition counts of topics (transport.Admin).
type partitionCounter interface {
	PartitionCounts(ctx context.Context, topics []string) (map[string]int, error)
}

// agentBlocker stops an agent's partitions (agents.Manager).
type agentBlocker interface {
	Block(agent, reason string)
}

// sourcePartitions is the partition count of each agent source topic as
// the app started with it: the declared count, which EnsureTopics checked
// against Kafka, and which the changelogs of the topic's tables have.
func (a *App) sourcePartitions() map[string]int {
	out := map[string]int{}
	for _, t := range a.sourceTopics() {
		if tc, ok := a.cfg.Topic(t); ok {
			out[t] = tc.Partitions
		}
	}
	return out
}

// watchPartitions asks Kafka for the source topics' partition counts every
// kafka.metadata_refresh (one metadata request) until ctx ends, and acts
// on a count that is no longer the one the app started with
// (docs/tables.md#partitions): an agent with tables is blocked — its keys
// no longer hash to the table partitions holding their state, and the
// changelog lacks the new partitions — with an Error logged once and the
// reason in status; for an agent without tables it is only news (Info):
// it gets the new partitions at the group's next rebalance.
func (a *App) watchPartitions(ctx context.Context, pc partitionCounter, mgr agentBlocker) error {
	want := a.sourcePartitions()
	topics := make([]string, 0, len(want))
	for _, t := range a.sourceTopics() {
		if _, ok := want[t]; ok {
			topics = append(topics, t)
		}
	}
	if len(topics) == 0 {
		return nil
	}
	seen := map[string]int{} // the last count acted on, by topic
	failing := false
	tick := time.NewTicker(a.cfg.Kafka.MetadataRefresh.D())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, a.cfg.Kafka.MetadataRefresh.D())
		counts, err := pc.PartitionCounts(rctx, topics)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !failing { // once per failing streak: Kafka errors have their own log
				a.log.Warn("checking the source topics' partition counts failed; trying again", "every",
					a.cfg.Kafka.MetadataRefresh.D(), "err", err)
			}
			failing = true
			continue
		}
		failing = false
		for _, t := range topics {
			n, ok := counts[t]
			if !ok || n == want[t] || n == seen[t] {
				continue // a missing topic is not a count (a deletion has its own errors)
			}
			seen[t] = n
			a.partitionCountChanged(t, want[t], n, mgr)
		}
	}
}

// partitionCountChanged acts on a source topic found with n partitions
// where the app started with was.
func (a *App) partitionCountChanged(topic string, was, n int, mgr agentBlocker) {
	for _, ag := range a.cfg.Agents {
		if !agentReads(ag, topic) {
			continue
		}
		if len(ag.Tables) == 0 {
			a.log.Info("source topic changed its partition count; the agent has no tables and gets the new partitions at the group's next rebalance",
				"topic", topic, "from", was, "to", n, "agent", ag.Name)
			continue
		}
		reason := fmt.Sprintf("source topic %q changed its partition count from %d to %d while the app ran: "+
			"keys no longer hash to the partitions of tables %v holding their state; "+
			"stop the app, then restore the topic or rebuild the tables for the new count (docs/operations.md)",
			topic, was, n, ag.Tables)
		a.log.Error("source topic changed its partition count under the app's tables; nothing more of its agent's partitions is delivered or written",
			"topic", topic, "from", was, "to", n, "agent", ag.Name, "tables", ag.Tables,
			"action", "stop every worker of the app; then either recreate the topic with its old partition count, "+
				"or rebuild the tables: set topics[].partitions to the new count, delete the tables' changelog topics "+
				"and data_dir, and reprocess the topic from the start (docs/operations.md)")
		mgr.Block(ag.Name, reason)
	}
}

func agentReads(ag config.Agent, topic string) bool {
	for _, t := range ag.Topics {
		if t == topic {
			return true
		}
	}
	return false
}
