package tables_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/worker/tables"
)

// TestRestoreCompactedChangelog lets the broker really compact a changelog
// (short segments, eager cleaner) and restores over the gaps it leaves:
// from scratch, and from a checkpoint taken before compaction removed
// records after it.
func TestRestoreCompactedChangelog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.changelog("counts", 1, map[string]string{
		"segment.ms":                "100",
		"min.cleanable.dirty.ratio": "0.01",
		"min.compaction.lag.ms":     "0",
		"max.compaction.lag.ms":     "100",
	})
	// Few keys, many overwrites: compaction has much to remove.
	first := mutations(20, "k", 600)[:300]
	e.produce(cl, 0, first)
	st, _ := e.restore("counts", 0)
	closeStore(t, st) // checkpoint before the records compaction will remove

	second := mutations(21, "k", 600)
	e.produce(cl, 0, second)
	all := [][]tables.Mutation{first, second}
	produced := len(first) + len(second)

	// Compaction only cleans rolled segments: keep writing (a filler key)
	// so the active segment rolls, until the log has gaps.
	fillers := 0
	waitFor(t, 3*waitTimeout, func() string {
		return fmt.Sprintf("the broker to compact %s (%d fillers written)", cl.Topic(), fillers)
	}, func() bool {
		filler := []tables.Mutation{set("filler", fmt.Sprint(fillers))}
		e.produce(cl, 0, filler)
		all = append(all, filler)
		fillers++
		n, high := countRecords(t, cl.Topic(), 0)
		return n < high-int64(produced/2) // well over half of the offsets are gone
	})
	n, high := countRecords(t, cl.Topic(), 0)
	t.Logf("compacted: %d records left at %d offsets (%d fillers)", n, high, fillers)

	// From the checkpoint: over gaps, and the result is the fold.
	st, p := e.restore("counts", 0)
	if p.Rebuild || p.Records >= high-int64(len(first)) {
		t.Errorf("restore from the checkpoint: %+v; want no rebuild and fewer records than the %d offsets after it",
			p, high-int64(len(first)))
	}
	checkState(t, st, fold(nil, all...))
	closeStore(t, st)

	// From scratch (another data directory).
	cfg := e.cfg
	cfg.Dir = t.TempDir()
	r, err := tables.NewRestorer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	e2 := *e
	e2.r = r
	st, p = e2.restore("counts", 0)
	checkProgress(t, p, p.Records, true)
	if p.Records > n+2 { // a filler or two may have come since
		t.Errorf("restore from scratch read %d records, want about the %d that are left", p.Records, n)
	}
	checkState(t, st, fold(nil, all...))
}

// countRecords reads a partition from the beginning with an independent
// consumer and returns how many records it holds and its high watermark.
func countRecords(t testing.TB, topic string, p int32) (n, high int64) {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":    kafkatest.Bootstrap(t),
		"group.id":             "verifier",
		"enable.partition.eof": true,
		"enable.auto.commit":   false,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, high, err = c.QueryWatermarkOffsets(topic, p, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: p, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		switch ev := c.Poll(100).(type) {
		case *kafka.Message:
			n++
			if int64(ev.TopicPartition.Offset) >= high-1 {
				return n, high
			}
		case kafka.PartitionEOF:
			if int64(ev.Offset) >= high {
				return n, high
			}
		}
	}
	t.Fatalf("reading %s[%d] did not reach offset %d", topic, p, high)
	return 0, 0
}
