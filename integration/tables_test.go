package integration

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
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

// wordCountApp is the app file of examples/wordcount with fresh names.
type wordCountApp struct {
	body, app, lines, words, out, table, changelog string
}

func newWordCountApp(t *testing.T) wordCountApp {
	t.Helper()
	a := wordCountApp{app: uniq(t, "wc"), lines: uniq(t, "lines"), words: uniq(t, "words"), out: uniq(t, "counts-out"), table: "counts"}
	a.changelog = a.app + "-" + a.table + "-changelog"
	a.body = fmt.Sprintf(`app: %s
brokers: %s
shutdown_timeout: 30s
kafka: {reach_timeout: 10s, session_timeout: 6s}
topics:
  - {name: %s, partitions: 8}
  - {name: %s, partitions: 8}
  - {name: %s, partitions: 8}
agents:
  - {name: split, topics: [%s]}
  - {name: count, topics: [%s], tables: [%s]}
tables:
  - {name: %s}
`, a.app, kafkatest.Bootstrap(t), a.lines, a.words, a.out, a.lines, a.words, a.table, a.table)
	return a
}

// startWordCount runs examples/wordcount against a worker.
func startWordCount(t testing.TB, addr string, a wordCountApp) *agentProc {
	t.Helper()
	cmd := exec.Command(bin(t, "wordcount"), "--addr", addr, "--app", appAt(t, addr), "--words", a.words, "--table", a.table, "--out", a.out)
	cmd.Env = append(os.Environ(), "EDDY_TOKEN=")
	p := &agentProc{cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start wordcount: %v", err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("wordcount log (first and last 6k):\n%s", headTail(p.log.String(), 6144))
		}
	})
	return p
}

// headTail is s, or its first and last n bytes.
func headTail(s string, n int) string {
	if len(s) > 2*n {
		return s[:n] + "\n[…]\n" + s[len(s)-n:]
	}
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// corpus makes n lines of 1–8 words drawn from a Zipf distribution over
// 5000 words (so some words are very hot), and adds their counts to want.
func corpus(seed uint64, n int, want map[string]int64) (keys, lines []string) {
	r := rand.New(rand.NewPCG(seed, 42))
	z := rand.NewZipf(r, 1.1, 2, 4999)
	for i := range n {
		k := 1 + r.IntN(8)
		ws := make([]string, k)
		for j := range ws {
			ws[j] = "w" + strconv.FormatUint(z.Uint64(), 10)
			want[ws[j]]++
		}
		keys = append(keys, "line"+strconv.Itoa(i))
		lines = append(lines, strings.Join(ws, " "))
	}
	return keys, lines
}

// readAll reads every record of topic (8 partitions) up to its current end
// with an independent consumer.
func readAll(t *testing.T, topic string) []record {
	t.Helper()
	end := endOffsets(t, topic, 8)
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(t), "group.id": "verify-" + strconv.FormatInt(rand.Int64(), 10),
		"enable.auto.commit": false,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var parts []kafka.TopicPartition
	for p := range int32(8) {
		parts = append(parts, kafka.TopicPartition{Topic: &topic, Partition: p, Offset: kafka.OffsetBeginning})
	}
	if err := c.Assign(parts); err != nil {
		t.Fatal(err)
	}
	next := make([]int64, 8) // next offset wanted per partition
	done := func() bool {
		for p := range next {
			if next[p] < end[p] {
				return false
			}
		}
		return true
	}
	var out []record
	deadline := time.Now().Add(2 * time.Minute)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("reading %s: timed out at %v of %v", topic, next, end)
		}
		ev := c.Poll(100)
		m, ok := ev.(*kafka.Message)
		if !ok || m.TopicPartition.Error != nil {
			continue
		}
		p := m.TopicPartition.Partition
		r := record{Partition: p, Offset: int64(m.TopicPartition.Offset), Key: string(m.Key), Value: string(m.Value)}
		if m.Value == nil {
			r.Headers = map[string]string{"tombstone": "1"}
		}
		out = append(out, r)
		next[p] = r.Offset + 1
	}
	return out
}

// foldChangelog folds the changelog: the last value of each key, tombstones
// deleting.
func foldChangelog(t *testing.T, topic string) map[string]int64 {
	t.Helper()
	table := map[string]int64{}
	for _, r := range readAll(t, topic) {
		if r.Headers["tombstone"] == "1" {
			delete(table, r.Key)
			continue
		}
		n, err := strconv.ParseInt(r.Value, 10, 64)
		if err != nil {
			t.Fatalf("changelog %s[%d]@%d: value %q is not a count", topic, r.Partition, r.Offset, r.Value)
		}
		table[r.Key] = n
	}
	return table
}

// waitDrained waits until the app's group committed the end of each topic.
func waitDrained(t testing.TB, w *workerProc, app string, timeout time.Duration, topics ...string) {
	t.Helper()
	for _, topic := range topics {
		end := endOffsets(t, topic, 8)
		waitFor(t, timeout, "committed offsets of "+topic+" at the end", func() bool {
			if w.exited() {
				t.Fatalf("worker exited with %d", w.exitCode)
			}
			return atEnd(committed(t, app, topic, 8), end)
		})
	}
}

var restoredRe = regexp.MustCompile(`msg="table partition restored".* records=(\d+)`)

// restoredRecords waits until the worker logged n restored table
// partitions and returns the changelog records they read.
func restoredRecords(t testing.TB, w *workerProc, n int) int64 {
	t.Helper()
	var ms [][]string
	waitFor(t, 2*time.Minute, fmt.Sprintf("%d restored table partitions in the log", n), func() bool {
		ms = restoredRe.FindAllStringSubmatch(w.log.String(), -1)
		return len(ms) >= n
	})
	var sum int64
	for _, m := range ms {
		v, _ := strconv.ParseInt(m[1], 10, 64)
		sum += v
	}
	return sum
}

// checkLastRestores checks that status keeps the last restore of each of
// the n table partitions, all full or all from the checkpoint, and that
// they read records changelog records in all (as the log says).
func checkLastRestores(t *testing.T, w *workerProc, n int, full bool, records int64) {
	t.Helper()
	out, errOut, code := w.ctl(t, "status", "-o", "json")
	if code != 0 {
		t.Fatalf("workerctl status: exit %d: %s", code, errOut)
	}
	var st struct {
		LastRestores []struct {
			Full    bool   `json:"full"`
			Reason  string `json:"reason"`
			Records int64  `json:"records,string"`
			Error   string `json:"error"`
		} `json:"last_restores"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, out)
	}
	if len(st.LastRestores) != n {
		t.Fatalf("last_restores: got %d, want %d\n%s", len(st.LastRestores), n, out)
	}
	var sum int64
	for i, r := range st.LastRestores {
		if r.Full != full || (full && r.Reason == "") || r.Error != "" {
			t.Errorf("last_restores[%d]: got %+v, want full %v (with a reason when full) and no error", i, r, full)
		}
		sum += r.Records
	}
	if sum != records {
		t.Errorf("last_restores records: got %d in all, want %d (the log's)", sum, records)
	}
}

// checkExact compares a table with the expected counts.
func checkExact(t *testing.T, what string, got, want map[string]int64) {
	t.Helper()
	bad := 0
	for k, v := range want {
		if got[k] != v {
			if bad++; bad <= 10 {
				t.Errorf("%s: %s = %d, want %d", what, k, got[k], v)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			if bad++; bad <= 10 {
				t.Errorf("%s: unexpected key %s = %d", what, k, got[k])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d counts wrong", what, bad, len(want))
	}
}

// lastByKey returns the last value of each key of an output topic (a key's
// records are on one partition, in order).
func lastByKey(t *testing.T, rs []record) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, r := range rs {
		n, err := strconv.ParseInt(r.Value, 10, 64)
		if err != nil {
			t.Fatalf("output %q=%q is not a count", r.Key, r.Value)
		}
		out[r.Key] = n
	}
	return out
}

// TestWordCountTable runs examples/wordcount on a real worker and broker:
// exact counts after drain (in the changelog's fold and the output), a
// clean restart that reads no changelog, a deleted data directory rebuilt
// from the changelog, and kill -9 mid-stream with no count below the truth.
func TestWordCountTable(t *testing.T) {
	a := newWordCountApp(t)
	dir := t.TempDir()
	want := map[string]int64{}

	// 1. 100k lines, exact counts.
	w := startWorkerIn(t, dir, a.body)
	w.waitAssigned(t, 16)
	ag := startWordCount(t, w.GRPC, a)
	w.waitInstances(t, "count", 1, 8)
	keys, lines := corpus(1, 100000, want)
	start := time.Now()
	produce(t, a.lines, keys, lines)
	waitDrained(t, w, a.app, 5*time.Minute, a.lines, a.words)
	var words int64
	for _, v := range want {
		words += v
	}
	t.Logf("phase 1: %d lines, %d words (%d distinct) counted in %s", len(lines), words, len(want), time.Since(start).Round(time.Millisecond))
	checkExact(t, "changelog fold after 100k lines", foldChangelog(t, a.changelog), want)
	checkExact(t, "last output per word after 100k lines", lastByKey(t, readAll(t, a.out)), want)
	if n := restoredRecords(t, w, 8); n != 0 {
		t.Errorf("first start restored %d changelog records, want 0", n)
	}

	// 2. Clean restart: nothing to replay; more input stays exact.
	ag.kill()
	w.signal(syscall.SIGTERM)
	if code := w.wait(45 * time.Second); code != 0 {
		t.Fatalf("worker exited with %d on SIGTERM", code)
	}
	w = startWorkerIn(t, dir, a.body)
	w.waitAssigned(t, 16)
	if n := restoredRecords(t, w, 8); n > 100 {
		t.Errorf("clean restart read %d changelog records, want (nearly) none", n)
	} else {
		t.Logf("phase 2: clean restart read %d changelog records", n)
		checkLastRestores(t, w, 8, false, n)
	}
	ag = startWordCount(t, w.GRPC, a)
	keys, lines = corpus(2, 20000, want)
	produce(t, a.lines, keys, lines)
	waitDrained(t, w, a.app, 3*time.Minute, a.lines, a.words)
	checkExact(t, "changelog fold after a clean restart", foldChangelog(t, a.changelog), want)

	// 3. Data directory deleted: the table is rebuilt from the changelog.
	ag.kill()
	w.signal(syscall.SIGTERM)
	w.wait(45 * time.Second)
	if err := os.RemoveAll(filepath.Join(dir, "data")); err != nil {
		t.Fatal(err)
	}
	w = startWorkerIn(t, dir, a.body)
	w.waitAssigned(t, 16)
	n := restoredRecords(t, w, 8)
	if n < int64(len(want)) {
		t.Errorf("rebuild read %d changelog records, want at least the %d distinct words", n, len(want))
	}
	t.Logf("phase 3: rebuild from the changelog read %d records", n)
	checkLastRestores(t, w, 8, true, n)
	ag = startWordCount(t, w.GRPC, a)
	keys, lines = corpus(3, 5000, want)
	produce(t, a.lines, keys, lines)
	waitDrained(t, w, a.app, 3*time.Minute, a.lines, a.words)
	checkExact(t, "changelog fold after a rebuild", foldChangelog(t, a.changelog), want)

	// 4. kill -9 mid-stream: no count below its true value.
	before := committed(t, a.app, a.words, 8)
	keys, lines = corpus(4, 30000, want)
	produce(t, a.lines, keys, lines)
	waitFor(t, time.Minute, "progress on the words topic", func() bool {
		now := committed(t, a.app, a.words, 8)
		var d int64
		for p := range now {
			d += now[p] - before[p]
		}
		return d > 5000
	})
	w.signal(syscall.SIGKILL)
	w.wait(10 * time.Second)
	ag.kill()
	w = startWorkerIn(t, dir, a.body)
	w.waitAssigned(t, 16)
	startWordCount(t, w.GRPC, a)
	waitDrained(t, w, a.app, 3*time.Minute, a.lines, a.words)
	got := foldChangelog(t, a.changelog)
	above, below := 0, 0
	for k, v := range want {
		switch {
		case got[k] < v:
			if below++; below <= 10 {
				t.Errorf("after kill -9: %s = %d, below its true count %d", k, got[k], v)
			}
		case got[k] > v:
			above++
		}
	}
	t.Logf("phase 4: after kill -9, %d of %d counts above the truth (events processed again after the last commit), %d below", above, len(want), below)
}
