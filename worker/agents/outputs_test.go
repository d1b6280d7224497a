package agents_test

import (
	"time"

	"strings"
	"testing"

	"github.com/eddy-streams/eddy/worker/transport"
)

// A record an agent produces takes its input's timestamp, and goes to the
// partition the output topic's declared partitioner gives its key (a
// record without key: a partition of the topic, at random; a topic
// without a declared partitioning: the producer's partitioner).
func TestOutputsTakeInputTimestampAndTopicPartitioner(t *testing.T) {
	for _, eos := range []bool{false, true} {
		t.Run(map[bool]string{false: "at_least_once", true: "exactly_once"}[eos], func(t *testing.T) {
			cfg := frontierConfig()
			cfg.Outputs = append(cfg.Outputs, "crc")
			cfg.Partitioners = transport.TopicPartitioners{"crc": {Partitioner: transport.ConsistentRandom, Partitions: 5}}
			var h *harness
			if eos {
				h, _ = startEOS(t, cfg)
			} else {
				h = start(t, cfg)
			}
			h.m.Assigned(tps("in", 0))
			h.sendRange("in", 0, 0, 1)
			h.settle()
			a := h.open("count", "a", 100)
			b := a.nextBatch()
			in := b.Events[0].Timestamp
			if in.IsZero() {
				t.Fatal("the event has no timestamp")
			}
			keyed := out("x")
			keyed.Topic, keyed.Key = "crc", []byte("apple")
			keyless := out("y")
			keyless.Topic = "crc"
			own := out("w")
			own.Timestamp = time.Unix(1600000000, 0)
			a.reply(b, ok(0, keyed, keyless, out("z"), own))
			h.prod.waitCalls(t, 4)
			want, _ := transport.ConsistentRandom.KeyPartition([]byte("apple"), 5)
			got := map[string]transport.Record{}
			for i := range 4 {
				r := h.prod.record(i)
				got[string(r.Value)] = r
				if string(r.Value) != "w" && !r.Timestamp.Equal(in) {
					t.Errorf("record %q timestamp %v, want the input's %v", r.Value, r.Timestamp, in)
				}
			}
			if ts := got["w"].Timestamp; !ts.Equal(own.Timestamp) {
				t.Errorf("record with its own timestamp: %v, want %v", ts, own.Timestamp)
			}
			if p := got["x"].Partition; p != want {
				t.Errorf("keyed record on partition %d, want %d (consistent_random of apple over 5)", p, want)
			}
			if p := got["y"].Partition; p < 0 || p >= 5 {
				t.Errorf("keyless record on partition %d, want one of 0..4", p)
			}
			if p := got["z"].Partition; p != transport.AnyPartition {
				t.Errorf("record for a topic without partitioning on partition %d, want AnyPartition", p)
			}
		})
	}
}

// TestOutputTimestampOutOfRangeIsRefused: a record timestamp Kafka cannot
// hold (before 1970, or past Go's 2262) is a protocol violation of the
// agent, not a record the worker would retry for ever.
func TestOutputTimestampOutOfRangeIsRefused(t *testing.T) {
	h := start(t, frontierConfig())
	h.m.Assigned(tps("in", 0))
	h.sendRange("in", 0, 0, 1)
	a := h.open("count", "a", 100)
	b := a.nextBatch()
	bad := out("x")
	bad.Timestamp = time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC)
	a.reply(b, ok(0, bad))
	if err := a.waitDone(); err == nil || !strings.Contains(err.Error(), "timestamp") {
		t.Fatalf("session ended with %v, want a refusal naming the timestamp", err)
	}
}
