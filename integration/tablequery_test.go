package integration

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
)

// TestTableQueriesFromAnyWorker: two workers share the word count; either
// answers `workerctl get counts WORD` for words of every partition (the
// other worker's by forwarding), with the true count; the words topic, keyed
// by the worker's own producer, confirms the murmur2 partition of every key;
// ListTables shows each worker's own partitions; Scan on either worker
// reads every partition (the other worker's by forwarding).
func TestTableQueriesFromAnyWorker(t *testing.T) {
	a := newWordCountApp(t)
	want := map[string]int64{}
	w1 := startWorkerIn(t, t.TempDir(), a.body)
	w2 := startWorkerIn(t, t.TempDir(), a.body)
	startWordCount(t, w1.GRPC, a)
	startWordCount(t, w2.GRPC, a)
	waitFor(t, 90*time.Second, "the 16 partitions split over both workers", func() bool {
		n1, n2 := len(w1.status(t)["assigned"].([]any)), 0
		if as, ok := w2.status(t)["assigned"].([]any); ok {
			n2 = len(as)
		}
		return n1 > 0 && n2 > 0 && n1+n2 == 16
	})
	keys, lines := corpus(7, 5000, want)
	produce(t, a.lines, keys, lines)
	waitDrained(t, w1, a.app, 3*time.Minute, a.lines, a.words)

	// The worker's producer placed every word by murmur2: so does Get.
	for _, r := range readAll(t, a.words) {
		if p := tables.KeyPartition([]byte(r.Key), 8); p != r.Partition {
			t.Fatalf("word %q is on partition %d of %s, KeyPartition says %d", r.Key, r.Partition, a.words, p)
		}
	}

	// A few words of each partition, asked of both workers.
	perPart := map[int32][]string{}
	for w := range want {
		p := tables.KeyPartition([]byte(w), 8)
		if len(perPart[p]) < 3 {
			perPart[p] = append(perPart[p], w)
		}
	}
	if len(perPart) != 8 {
		t.Fatalf("the corpus covers %d partitions, want 8", len(perPart))
	}
	served := map[string]int{}
	forwarded := 0
	ids := map[*workerProc]string{w1: fmt.Sprint(w1.status(t)["worker_id"]), w2: fmt.Sprint(w2.status(t)["worker_id"])}
	for p, words := range perPart {
		for _, word := range words {
			for _, w := range []*workerProc{w1, w2} {
				out, errOut, code := w.ctl(t, "get", "counts", word, "-o", "json")
				if code != 0 {
					t.Fatalf("workerctl get counts %s on %s: exit %d: %s", word, w.GRPC, code, errOut)
				}
				var g struct {
					Value     []byte `json:"value"`
					Partition int32  `json:"partition"`
					ServedBy  string `json:"served_by"`
				}
				if err := json.Unmarshal([]byte(out), &g); err != nil {
					t.Fatal(err)
				}
				n, _ := strconv.ParseInt(string(g.Value), 10, 64)
				if n != want[word] || g.Partition != p {
					t.Errorf("get %s on %s = %d (partition %d), want %d (partition %d)", word, w.GRPC, n, g.Partition, want[word], p)
				}
				served[g.ServedBy]++
				if g.ServedBy != ids[w] {
					forwarded++
				}
			}
		}
	}
	// Every key was asked of both workers, so unless one worker owns no
	// partition of the table, both served; either way some calls were
	// forwarded to the owner. (The sticky assignor balances all partitions
	// of the group, not each topic, so one worker may own all of the table.)
	if forwarded == 0 {
		t.Errorf("answers served by %v: no call was forwarded", served)
	}
	if _, errOut, code := w1.ctl(t, "get", "counts", "no-such-word-xyz"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("get of a missing word: exit %d, %s", code, errOut)
	}
	if _, errOut, code := w1.ctl(t, "get", "cnts", "x"); code != 1 || !strings.Contains(errOut, `declared tables are "counts"`) {
		t.Errorf("get of an unknown table: exit %d, %s", code, errOut)
	}

	// Each worker lists its own partitions; together, all. Each scans all.
	var total int64
	active := 0
	for _, w := range []*workerProc{w1, w2} {
		out, _, _ := w.ctl(t, "tables", "-o", "json")
		var lt struct {
			Tables []struct {
				Keys             string  `json:"keys"`
				ActivePartitions []int32 `json:"active_partitions"`
			} `json:"tables"`
		}
		if err := json.Unmarshal([]byte(out), &lt); err != nil || len(lt.Tables) != 1 {
			t.Fatalf("tables -o json: %v\n%s", err, out)
		}
		active += len(lt.Tables[0].ActivePartitions)
		out, errOut, code := w.ctl(t, "scan", "counts", "--all", "--limit", "500", "-o", "json")
		if code != 0 {
			t.Fatalf("scan: exit %d: %s", code, errOut)
		}
		var sc struct {
			Entries []struct {
				Key   []byte `json:"key"`
				Value []byte `json:"value"`
			} `json:"entries"`
		}
		if err := json.Unmarshal([]byte(out), &sc); err != nil {
			t.Fatal(err)
		}
		if len(sc.Entries) != len(want) {
			t.Errorf("worker %s: scan --all returned %d entries, want %d (every word)", w.GRPC, len(sc.Entries), len(want))
		}
		for i, e := range sc.Entries {
			if i > 0 && string(sc.Entries[i-1].Key) >= string(e.Key) {
				t.Fatalf("scan out of order at %q", e.Key)
			}
			n, _ := strconv.ParseInt(string(e.Value), 10, 64)
			if n != want[string(e.Key)] {
				t.Errorf("scan: %s = %d, want %d", e.Key, n, want[string(e.Key)])
			}
		}
		total += keysOf(lt.Tables[0].Keys)
	}
	if active != 8 || total != int64(len(want)) {
		t.Errorf("both workers hold %d partitions and %d keys, want 8 and %d", active, total, len(want))
	}
}

func keysOf(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
