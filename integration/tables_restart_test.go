package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestLocalStoreAheadOfChangelog: the word count fills the counts table;
// with the worker stopped cleanly, its changelog topic is deleted and
// recreated (same partitions, compacted) and given a few records of its
// own. The restarted worker, on the same data directory, finds stores whose
// checkpoints name the old topic (and lie past the new topic's end): it
// must not trust them but rebuild every partition from the new changelog,
// so that the table is exactly the fold of the new changelog — and the
// word count continues from those values.
func TestLocalStoreAheadOfChangelog(t *testing.T) {
	a := newWordCountApp(t)
	dir := t.TempDir()
	want := map[string]int64{}

	// 1. A few thousand lines counted and committed.
	w := startWorkerIn(t, dir, a.body)
	w.waitAssigned(t, 16)
	ag := startWordCount(t, w.GRPC, a)
	w.waitInstances(t, "count", 1, 8)
	keys, lines := corpus(11, 3000, want)
	produce(t, a.lines, keys, lines)
	waitDrained(t, w, a.app, 3*time.Minute, a.lines, a.words)
	checkExact(t, "changelog fold before the topic is recreated", foldChangelog(t, a.changelog), want)
	oldEnd := endOffsets(t, a.changelog, 8)

	// 2. Clean stop: the stores are checkpointed and closed.
	ag.kill()
	w.signal(syscall.SIGTERM)
	if code := w.wait(45 * time.Second); code != 0 {
		t.Fatalf("worker exited with %d on SIGTERM", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", a.table, "0.db")); err != nil {
		t.Fatalf("no local store left by the first worker: %v", err)
	}

	// 3. The changelog topic is deleted and recreated, with a few records:
	// 16 words of the old table with new counts, 8 words it never had.
	// Every partition's new end is below the old one.
	oldID := recreateTopic(t, a.changelog, 8, map[string]string{
		"cleanup.policy": "compact", "delete.retention.ms": "86400000",
	})
	fresh := map[string]int64{}
	var ck, cv []string
	i := 0
	for word := range want {
		if i == 16 {
			break
		}
		fresh[word] = int64(1000 + i)
		i++
	}
	for j := range 8 {
		fresh["fresh_word_"+strconv.Itoa(j)] = int64(5000 + j)
	}
	for k, v := range fresh {
		ck, cv = append(ck, k), append(cv, strconv.FormatInt(v, 10))
	}
	produce(t, a.changelog, ck, cv)
	newEnd := endOffsets(t, a.changelog, 8)
	for p := range newEnd {
		if newEnd[p] >= oldEnd[p] {
			t.Fatalf("partition %d: new changelog end %d is not below the old end %d", p, newEnd[p], oldEnd[p])
		}
	}
	newFold := foldChangelog(t, a.changelog)
	checkExact(t, "fold of the recreated changelog", newFold, fresh)

	// 4. Restart on the same data directory: every partition rebuilt.
	w = startWorkerIn(t, dir, a.body)
	w.waitAssigned(t, 16)
	var total int64
	for _, n := range newEnd {
		total += n
	}
	if n := restoredRecords(t, w, 8); n != total {
		t.Errorf("restart restored %d changelog records, want the %d of the recreated changelog", n, total)
	}
	log := w.log.String()
	reasons := untrustedReasons(log)
	for p := range int32(8) {
		r, ok := reasons[p]
		if !ok {
			t.Errorf("partition %d: no %q warning; the stale store was trusted", p, "local state not trusted")
			continue
		}
		if !strings.Contains(r, "changelog topic was recreated") && !strings.Contains(r, "is ahead of the changelog end") {
			t.Errorf("partition %d rebuilt for %q, want the recreated topic (or a checkpoint ahead of the end)", p, r)
		}
		if strings.Contains(r, "recreated") && !strings.Contains(r, "built from "+oldID) {
			t.Errorf("partition %d: reason %q does not name the old topic id %s", p, r, oldID)
		}
	}
	if m := regexp.MustCompile(`msg="restoring table partition from its checkpoint".*`).FindString(log); m != "" {
		t.Errorf("a table partition was continued from its stale checkpoint: %s", m)
	}
	t.Logf("rebuild reason (partition 0): %s", reasons[0])

	// The table is the fold of the new changelog: nothing of the old store.
	checkExact(t, "scan after the rebuild", scanCounts(t, w), newFold)
	for word := range want {
		if _, ok := fresh[word]; ok {
			continue
		}
		if _, errOut, code := w.ctl(t, "get", "counts", word); code != 1 || !strings.Contains(errOut, "not found") {
			t.Errorf("get counts %s (only in the old changelog): exit %d, %s; want not found", word, code, errOut)
		}
		break
	}

	// 5. Counting continues from the new values.
	startWordCount(t, w.GRPC, a)
	w.waitInstances(t, "count", 1, 8)
	next := map[string]int64{}
	for k, v := range fresh {
		next[k] = v
	}
	keys, lines = corpus(12, 2000, next)
	for k := range keys {
		keys[k] = "after-" + keys[k]
	}
	produce(t, a.lines, keys, lines)
	waitDrained(t, w, a.app, 3*time.Minute, a.lines, a.words)
	checkExact(t, "changelog fold after counting on the rebuilt table", foldChangelog(t, a.changelog), next)
	checkExact(t, "scan after counting on the rebuilt table", scanCounts(t, w), next)
}

var untrustedRe = regexp.MustCompile(`msg="restoring table partition from the beginning: local state not trusted".*\bpartition=(\d+)\b.*\breason="((?:[^"\\]|\\.)*)"`)

// untrustedReasons returns, by partition, the reason of the last "local
// state not trusted" rebuild in a worker log.
func untrustedReasons(log string) map[int32]string {
	out := map[int32]string{}
	for _, m := range untrustedRe.FindAllStringSubmatch(log, -1) {
		p, _ := strconv.Atoi(m[1])
		out[int32(p)] = m[2]
	}
	return out
}

// scanCounts reads the whole counts table through `workerctl scan --all`
// (the worker must own every partition), once no partition is restoring
// (the table partitions are handed to the agents manager shortly after the
// "table partition restored" log line).
func scanCounts(t testing.TB, w *workerProc) map[string]int64 {
	t.Helper()
	var got map[string]int64
	var restoring []int32
	waitFor(t, time.Minute, "a scan with no partition restoring", func() bool {
		got, restoring = scanCountsOnce(t, w)
		return len(restoring) == 0
	})
	return got
}

func scanCountsOnce(t testing.TB, w *workerProc) (map[string]int64, []int32) {
	t.Helper()
	out, errOut, code := w.ctl(t, "scan", "counts", "--all", "--limit", "10000", "-o", "json")
	if code != 0 {
		t.Fatalf("workerctl scan counts: exit %d: %s", code, errOut)
	}
	var sc struct {
		Entries []struct {
			Key   []byte `json:"key"`
			Value []byte `json:"value"`
		} `json:"entries"`
		RestoringPartitions []int32 `json:"restoring_partitions"`
	}
	if err := json.Unmarshal([]byte(out), &sc); err != nil {
		t.Fatalf("scan JSON: %v\n%s", err, out)
	}
	got := map[string]int64{}
	for _, e := range sc.Entries {
		n, err := strconv.ParseInt(string(e.Value), 10, 64)
		if err != nil {
			t.Fatalf("scan: %q = %q is not a count", e.Key, e.Value)
		}
		got[string(e.Key)] = n
	}
	return got, sc.RestoringPartitions
}

// recreateTopic deletes topic, creates it again with the given partitions
// and configs, waits until every partition has a leader and returns the old
// topic id (the new one must differ).
func recreateTopic(t testing.TB, topic string, partitions int, configs map[string]string) string {
	t.Helper()
	a, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	oldID := topicID(ctx, t, a, topic)
	res, err := a.DeleteTopics(ctx, []string{topic}, kafka.SetAdminOperationTimeout(30*time.Second))
	if err != nil {
		t.Fatalf("delete %s: %v", topic, err)
	}
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError {
			t.Fatalf("delete %s: %v", topic, r.Error)
		}
	}
	// The broker may still be removing it: retry while it "already exists".
	waitFor(t, 30*time.Second, "topic "+topic+" created again", func() bool {
		res, err := a.CreateTopics(ctx, []kafka.TopicSpecification{{
			Topic: topic, NumPartitions: partitions, ReplicationFactor: 1, Config: configs,
		}}, kafka.SetAdminOperationTimeout(30*time.Second))
		if err != nil {
			t.Fatalf("create %s: %v", topic, err)
		}
		switch c := res[0].Error.Code(); c {
		case kafka.ErrNoError:
			return true
		case kafka.ErrTopicAlreadyExists:
			return false
		default:
			t.Fatalf("create %s: %v", topic, res[0].Error)
			return false
		}
	})
	waitFor(t, 30*time.Second, "topic "+topic+" with a leader for each partition", func() bool {
		md, err := a.GetMetadata(&topic, false, 5000)
		if err != nil {
			return false
		}
		tm, ok := md.Topics[topic]
		if !ok || tm.Error.Code() != kafka.ErrNoError || len(tm.Partitions) != partitions {
			return false
		}
		for _, p := range tm.Partitions {
			if p.Leader < 0 || p.Error.Code() != kafka.ErrNoError {
				return false
			}
		}
		return true
	})
	if newID := topicID(ctx, t, a, topic); newID == oldID {
		t.Fatalf("recreated %s has the old topic id %s", topic, oldID)
	}
	return oldID
}

// topicID returns a topic's id as DescribeTopics reports it.
func topicID(ctx context.Context, t testing.TB, a *kafka.AdminClient, topic string) string {
	t.Helper()
	res, err := a.DescribeTopics(ctx, kafka.NewTopicCollectionOfTopicNames([]string{topic}))
	if err != nil {
		t.Fatalf("describe %s: %v", topic, err)
	}
	if len(res.TopicDescriptions) != 1 || res.TopicDescriptions[0].Error.Code() != kafka.ErrNoError {
		t.Fatalf("describe %s: %v", topic, res.TopicDescriptions)
	}
	return res.TopicDescriptions[0].TopicID.String()
}
