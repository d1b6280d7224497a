package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestSourceTopicGrowsUnderTable grows the word count's `words` topic (the
// source of the count agent, which keeps a table) from 8 to 12 partitions
// while the app runs. Keys now hash to other partitions than their state,
// and the changelog has no partitions 8..11: the worker must notice it
// (metadata refresh), say so in status and its log, and stop delivering
// the count agent's partitions, so no changelog write lands afterwards;
// the split agent (stateless) keeps working (docs/tables.md#partitions).
func TestSourceTopicGrowsUnderTable(t *testing.T) {
	a := newWordCountApp(t)
	body := strings.Replace(a.body, "kafka: {reach_timeout: 10s, session_timeout: 6s}",
		"kafka: {reach_timeout: 10s, session_timeout: 6s, metadata_refresh: 1s}", 1)
	if body == a.body {
		t.Fatal("the word count app file changed: cannot set kafka.metadata_refresh")
	}
	w := startWorker(t, body)
	w.waitAssigned(t, 16)
	startWordCount(t, w.GRPC, a)
	w.waitInstances(t, "count", 1, 8)
	w.waitInstances(t, "split", 1, 8)
	keys, lines := corpus(7, 2000, map[string]int64{})
	produce(t, a.lines, keys, lines)
	waitDrained(t, w, a.app, 2*time.Minute, a.lines, a.words)

	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := admin.CreatePartitions(ctx, []kafka.PartitionsSpecification{{Topic: a.words, IncreaseTo: 12}})
	if err != nil {
		t.Fatalf("create partitions: %v", err)
	}
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError {
			t.Fatalf("create partitions of %s: %v", r.Topic, r.Error)
		}
	}

	// Detected within a few refresh intervals: in status and in the log.
	var errs []string
	waitFor(t, 30*time.Second, "the partition count change in status errors", func() bool {
		errs = errs[:0]
		list, _ := w.status(t)["errors"].([]any)
		for _, e := range list {
			if s, _ := e.(string); strings.Contains(s, a.words) && strings.Contains(s, "8") && strings.Contains(s, "12") {
				errs = append(errs, s)
			}
		}
		return len(errs) > 0
	})
	t.Logf("status error: %s", errs[0])
	logLine := ""
	waitFor(t, 10*time.Second, "the change logged at ERROR", func() bool {
		for _, l := range strings.Split(w.log.String(), "\n") {
			if strings.Contains(l, "level=ERROR") && strings.Contains(l, a.words) && strings.Contains(l, "from=8") && strings.Contains(l, "to=12") {
				logLine = l
				return true
			}
		}
		return false
	})
	t.Logf("log: %s", logLine)
	waitFor(t, 10*time.Second, "the count agent's partitions reported stalled", func() bool {
		stalled, _ := w.status(t)["stalled"].([]any)
		for _, s := range stalled {
			st, _ := s.(map[string]any)
			if st["agent"] == "count" && strings.Contains(fmt.Sprint(st["reason"]), "partition count") {
				return true
			}
		}
		return false
	})

	// More lines: split goes on writing words (now over 12 partitions),
	// count writes nothing: no changelog record, no output.
	clBefore, outBefore := endOffsets(t, a.changelog, 8), endOffsets(t, a.out, 8)
	wordsBefore := endOffsets(t, a.words, 12)
	keys, lines = corpus(8, 2000, map[string]int64{})
	for i := range keys {
		keys[i] = "more-" + keys[i]
	}
	produce(t, a.lines, keys, lines)
	waitDrained(t, w, a.app, 2*time.Minute, a.lines) // split keeps working
	wordsAfter := endOffsets(t, a.words, 12)
	if sum(wordsAfter) <= sum(wordsBefore) {
		t.Fatalf("split wrote no words after the change: words end offsets %v, then %v", wordsBefore, wordsAfter)
	}
	if wordsAfter[8]+wordsAfter[9]+wordsAfter[10]+wordsAfter[11] == 0 {
		t.Logf("no words in the new partitions yet (the producer's metadata is older): %v", wordsAfter)
	}
	// Nothing more for a few seconds (several commit intervals), while
	// split's words sit in count's partitions.
	quietUntil := time.Now().Add(3 * time.Second)
	waitFor(t, 10*time.Second, "3s without writes of the count agent", func() bool {
		if clAfter := endOffsets(t, a.changelog, 8); !slices.Equal(clBefore, clAfter) {
			t.Fatalf("changelog written after the change was detected: end offsets %v, then %v", clBefore, clAfter)
		}
		if outAfter := endOffsets(t, a.out, 8); !slices.Equal(outBefore, outAfter) {
			t.Fatalf("count agent produced after the change was detected: end offsets %v, then %v", outBefore, outAfter)
		}
		return time.Now().After(quietUntil)
	})
	if c := committed(t, a.app, a.words, 8); atEnd(c, endOffsets(t, a.words, 8)) {
		t.Errorf("count's committed offsets reached the end of words (%v): it went on processing", c)
	}
}

func sum(xs []int64) (n int64) {
	for _, x := range xs {
		n += x
	}
	return n
}
