package agents_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/monitor"
)

// blockConfig is tableConfig plus a stateless agent "split" on topic
// "lines", with a monitor the test reads stalls from.
func blockConfig(r *fakeRestorer) agents.Config {
	cfg := tableConfig(r, "")
	cfg.Agents = append(cfg.Agents, agentCfg("split", "", 3, "lines"))
	cfg.Monitor = monitor.New("app", "", false)
	return cfg
}

// TestBlockedAgentDeliversAndCommitsNothing: once an agent is blocked
// (its source topic changed its partition count under its table), its
// instances lose their partitions at once, results they still send are
// stale (no changelog record), nothing more is delivered or produced, a
// failed changelog write is not produced again, the partitions are paused
// and their frontier stays where the done events put it. The stateless
// agent goes on.
func TestBlockedAgentDeliversAndCommitsNothing(t *testing.T) {
	r := newFakeRestorer(t)
	close(r.release)
	cfg := blockConfig(r)
	h := start(t, cfg)
	a := h.open("count", "a", 100)
	s := h.open("split", "s", 100)
	h.m.Assigned(append(tps("in", 0, 1), tps("lines", 0)...))
	h.sendRange("in", 0, 0, 5)
	a.takeEvents(5)
	ref := agents.PartitionRef{Topic: "in", Partition: 0, Epoch: a.epoch[tp{"in", 0}]}
	a.reply(&agents.Batch{PartitionRef: ref}, set(0, "k0", "1"), set(1, "k1", "1"))
	h.prod.waitCalls(t, 2)
	h.prod.answer(t, 0, nil) // offset 0 done; offset 1's write is in flight
	h.waitCommitted("in", 0, 1)

	h.m.Block("count", `source topic "in" changed its partition count from 2 to 3`)
	h.settle()
	a.pump()
	if len(a.revokes) != 2 || len(a.ownedParts()) != 0 {
		t.Fatalf("count's instance got revokes %+v and owns %v, want both partitions revoked", a.revokes, a.ownedParts())
	}
	// Kafka fails the write in flight: it is held, never produced again.
	h.prod.answer(t, 1, kafkaErr(kafka.ErrAllBrokersDown))
	// Results of the old epoch are stale: no changelog record.
	a.reply(&agents.Batch{PartitionRef: ref}, set(2, "k2", "1"), set(3, "k3", "1"), set(4, "k4", "1"))
	h.sendRange("in", 0, 5, 10)
	h.sendRange("in", 1, 0, 3)
	h.settle()
	a.noBatch()
	if !h.cons.isPaused("in", 0) || !h.cons.isPaused("in", 1) {
		t.Errorf("blocked partitions paused in Kafka: in[0] %v, in[1] %v, want both", h.cons.isPaused("in", 0), h.cons.isPaused("in", 1))
	}

	// The stateless agent works on, across many commit cycles and retry
	// backoffs of the blocked partition.
	since := time.Now()
	for i := int64(0); i < 5; i++ {
		h.sendRange("lines", 0, i, i+1)
		s.okAll(s.nextBatch())
		h.waitCommitted("lines", 0, i+1)
	}
	waitFor(t, wait, func() string { return "ten retry backoffs to pass" }, func() bool {
		return time.Since(since) > 10*cfg.RetryBackoffMax
	})
	h.settle()
	if n := h.prod.len(); n != 2 {
		for i := 2; i < n; i++ {
			rec := h.prod.record(i)
			t.Errorf("produced after the block: %s[%d] %q=%q", rec.Topic, rec.Partition, rec.Key, rec.Value)
		}
	}
	if got := h.cons.committedAt("in", 0); got != 1 {
		t.Errorf("in[0] committed at %d after the block, want 1 (offset 1 is not done)", got)
	}
	if got := h.cons.committedAt("in", 1); got != -1 {
		t.Errorf("in[1] committed at %d, want nothing", got)
	}
	a.noBatch()

	// A new instance of the blocked agent gets nothing either.
	b := h.open("count", "b", 100)
	h.settle()
	b.pump()
	if len(b.log) != 0 {
		t.Errorf("a new instance of the blocked agent received %d messages, first %+v", len(b.log), b.log[0])
	}

	info := h.info("count")
	if !strings.Contains(info.Blocked, "partition count") || info.BlockedSince.IsZero() {
		t.Errorf("Info: Blocked %q since %v, want the reason and a time", info.Blocked, info.BlockedSince)
	}
	if got := h.info("split").Blocked; got != "" {
		t.Errorf("split: Blocked %q, want none", got)
	}
	// Reported as stalls, with the reason, without waiting StallTimeout.
	waitFor(t, wait, func() string { return fmt.Sprintf("stalls of both count partitions, have %+v", cfg.Monitor.Stalls()) }, func() bool {
		n := 0
		for _, st := range cfg.Monitor.Stalls() {
			if st.Agent == "count" && strings.Contains(st.Reason, "blocked") && strings.Contains(st.Reason, "partition count") {
				n++
			}
			if st.Agent == "split" {
				t.Fatalf("split reported stalled: %+v", st)
			}
		}
		return n == 2
	})
}

// TestPartitionBeyondChangelogNeverRestored: a partition of an agent with
// tables numbered at or above the changelog's partition count (the source
// topic grew) is never restored, so no store or changelog partition is
// made for it; the agent is blocked, naming the partition.
func TestPartitionBeyondChangelogNeverRestored(t *testing.T) {
	r := newFakeRestorer(t)
	close(r.release)
	cfg := blockConfig(r)
	cfg.SourcePartitions = map[string]int{"in": 2, "lines": 2}
	h := start(t, cfg)
	a := h.open("count", "a", 100)
	s := h.open("split", "s", 100)
	h.m.Assigned(append(tps("in", 0, 2), tps("lines", 2)...))
	h.sendRange("in", 0, 0, 3)
	h.sendRange("in", 2, 0, 3)
	h.sendRange("lines", 2, 0, 3)
	// A stateless agent's new partition is just a partition (its three
	// events may come in more than one batch).
	waitFor(t, wait, func() string { return "lines[2] committed at 3" }, func() bool {
		s.pump()
		for _, b := range s.batches {
			s.okAll(b)
		}
		s.batches = nil
		return h.cons.committedAt("lines", 2) == 3
	})
	h.settle()
	a.noBatch()
	if _, err := os.Stat(filepath.Join(r.dir, "counts", "2.db")); !os.IsNotExist(err) {
		t.Errorf("a store was made for table partition 2 (stat: %v)", err)
	}
	r.mu.Lock()
	for _, st := range r.stores {
		if st.Partition() >= 2 {
			t.Errorf("restored table partition %d, which has no changelog partition", st.Partition())
		}
	}
	r.mu.Unlock()
	if got := h.info("count").Blocked; !strings.Contains(got, "partition 2") || !strings.Contains(got, `"in"`) {
		t.Errorf("count: Blocked %q, want it to name partition 2 of \"in\"", got)
	}
	if n := h.prod.len(); n != 0 {
		t.Errorf("%d records produced, want none", n)
	}
}
