package integration

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
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

// Run with
//
//	go test -run '^$' -bench 'WordCount|Recovery|TableRSS' -benchtime 1x ./integration/
//
// Each benchmark has a fixed built-in size (a minimum, for WordCount), so
// b.N = 1 measures something meaningful; the figures are the custom
// metrics (ns/op is the whole run).

// BenchmarkWordCount is the word count of examples/wordcount on one worker
// with the Go agents (split, then count with the counts table: every word
// is a table update written to the changelog before its commit). The input
// is max(b.N, 50000) lines of 5 words drawn uniformly from a 10,000-word
// vocabulary, written while the worker is paused with both agents connected
// and every partition assigned; the clock runs from Resume until the
// committed offsets of the lines and then of the words topic reach their
// ends. Reports lines/s and words/s (a word is one count event and one
// changelog record).
func BenchmarkWordCount(b *testing.B) {
	lines := max(b.N, 50000)
	const perLine = 5
	a := benchWordCountApp(b, "warn")
	w := startWorker(b, a.body)
	w.waitAssigned(b, 16)
	startWordCount(b, w.GRPC, a)
	w.waitInstances(b, "split", 1, 8)
	w.waitInstances(b, "count", 1, 8)
	if _, e, code := w.ctl(b, "pause"); code != 0 {
		b.Fatalf("pause: %s", e)
	}
	keys, values := vocabLines(1, lines, perLine, 10000)
	produce(b, a.lines, keys, values)
	end := endOffsets(b, a.lines, 8)
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	b.ResetTimer()
	if _, e, code := w.ctl(b, "resume"); code != 0 {
		b.Fatalf("resume: %s", e)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for !atEnd(committedWith(b, admin, a.app, a.lines, 8), end) {
		if time.Now().After(deadline) || w.exited() {
			b.Fatalf("committed offsets of the lines did not reach the end in 3m")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Every word is on the words topic once its line is committed.
	wend := endOffsets(b, a.words, 8)
	for !atEnd(committedWith(b, admin, a.app, a.words, 8), wend) {
		if time.Now().After(deadline) || w.exited() {
			b.Fatalf("committed offsets of the words did not reach the end in 3m")
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.StopTimer()
	var words int64
	for _, n := range wend {
		words += n
	}
	if words < int64(lines*perLine) {
		b.Fatalf("%d words on the words topic, want at least %d", words, lines*perLine)
	}
	s := b.Elapsed().Seconds()
	b.ReportMetric(float64(lines)/s, "lines/s")
	b.ReportMetric(float64(words)/s, "words/s")
}

// BenchmarkRecovery is a rebuild of the counts table from its changelog:
// the word count of 40,000 lines of 5 words over a 10,000-word vocabulary
// writes 200,000 changelog records (one per word; too fresh to be
// compacted); the worker is stopped, its data directory deleted and it is
// started again, without agents. The clock runs from the start of the
// worker process until it is RUNNING and has logged all 8 table partitions
// restored. Fixed size: b.N is ignored. Reports the changelog records the
// log says were restored per second of that wall time (records/s, process
// start and group join included), and per second of the restore itself
// (restore-records/s: from the first "restoring table partition" log line
// to the last "table partition restored").
func BenchmarkRecovery(b *testing.B) {
	const lines, perLine = 40000, 5
	a := benchWordCountApp(b, "info")
	dir := b.TempDir()
	w := startWorkerIn(b, dir, a.body)
	w.waitAssigned(b, 16)
	ag := startWordCount(b, w.GRPC, a)
	w.waitInstances(b, "count", 1, 8)
	keys, values := vocabLines(2, lines, perLine, 10000)
	produce(b, a.lines, keys, values)
	waitDrained(b, w, a.app, 3*time.Minute, a.lines, a.words)
	var changelog int64
	for _, n := range endOffsets(b, a.changelog, 8) {
		changelog += n
	}
	ag.kill()
	w.signal(syscall.SIGTERM)
	if code := w.wait(45 * time.Second); code != 0 {
		b.Fatalf("worker exited with %d on SIGTERM", code)
	}
	if err := os.RemoveAll(filepath.Join(dir, "data")); err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	w = startWorkerIn(b, dir, a.body)
	w.waitState(b, time.Minute, "RUNNING")
	restored := restoredRecords(b, w, 8)
	b.StopTimer()
	if restored < changelog {
		b.Fatalf("restored %d changelog records, the changelog has %d", restored, changelog)
	}
	first, last := logSpan(b, w.log.String(), `msg="restoring table partition`, `msg="table partition restored"`)
	b.ReportMetric(float64(restored), "records")
	b.ReportMetric(float64(restored)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(restored)/last.Sub(first).Seconds(), "restore-records/s")
}

// BenchmarkTableRSS is the worker's memory with 1,000,000 distinct keys in
// the counts table: 1M records with distinct keys ("word" + 7 digits, value
// "1") are written straight to the count agent's source topic and counted;
// once their offsets are committed, the worker's peak resident set
// (VmHWM of /proc/<pid>/status) is reported in MiB (peak-RSS-MiB), with
// the current one (RSS-MiB) and the count rate (keys/s, from the first
// produce to the commit). Fixed size: b.N is ignored. Linux only.
func BenchmarkTableRSS(b *testing.B) {
	const n = 1000000
	a := benchWordCountApp(b, "warn")
	w := startWorker(b, a.body)
	w.waitAssigned(b, 16)
	startWordCount(b, w.GRPC, a)
	w.waitInstances(b, "count", 1, 8)
	keys := make([]string, n)
	values := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("word%07d", i)
		values[i] = "1"
	}
	b.ResetTimer()
	produce(b, a.words, keys, values)
	waitDrained(b, w, a.app, 3*time.Minute, a.words)
	b.StopTimer()
	out, errOut, code := w.ctl(b, "tables", "-o", "json")
	if code != 0 {
		b.Fatalf("workerctl tables: exit %d: %s", code, errOut)
	}
	var lt struct {
		Tables []struct {
			Keys string `json:"keys"`
		} `json:"tables"`
	}
	if err := json.Unmarshal([]byte(out), &lt); err != nil || len(lt.Tables) != 1 {
		b.Fatalf("tables -o json: %v\n%s", err, out)
	}
	if k, _ := strconv.ParseInt(lt.Tables[0].Keys, 10, 64); k != n {
		b.Fatalf("the counts table holds %d keys, want %d", k, n)
	}
	hwm, rss := procMemKiB(b, w.cmd.Process.Pid)
	b.ReportMetric(float64(hwm)/1024, "peak-RSS-MiB")
	b.ReportMetric(float64(rss)/1024, "RSS-MiB")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "keys/s")
}

// benchWordCountApp is newWordCountApp for benchmarks, with a log level.
func benchWordCountApp(b testing.TB, level string) wordCountApp {
	b.Helper()
	base := strings.ToLower(kafkatest.Group(b))
	a := wordCountApp{app: base, lines: base + "-lines", words: base + "-words", out: base + "-out", table: "counts"}
	a.changelog = a.app + "-" + a.table + "-changelog"
	a.body = fmt.Sprintf(`app: %s
brokers: %s
shutdown_timeout: 30s
log: {level: %s}
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
`, a.app, kafkatest.Bootstrap(b), level, a.lines, a.words, a.out, a.lines, a.words, a.table, a.table)
	return a
}

var logTimeRe = regexp.MustCompile(`^time=(\S+) `)

// logSpan returns the time of the first log line containing from and of
// the last containing to.
func logSpan(b testing.TB, log, from, to string) (first, last time.Time) {
	b.Helper()
	for _, line := range strings.Split(log, "\n") {
		m := logTimeRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		if first.IsZero() && strings.Contains(line, from) {
			first = ts
		}
		if strings.Contains(line, to) {
			last = ts
		}
	}
	if first.IsZero() || last.IsZero() || !last.After(first) {
		b.Fatalf("log has no span from %q to %q", from, to)
	}
	return first, last
}

// vocabLines makes n lines of perLine words drawn uniformly from a
// vocabulary of vocab words.
func vocabLines(seed uint64, n, perLine, vocab int) (keys, lines []string) {
	r := rand.New(rand.NewPCG(seed, 7))
	keys, lines = make([]string, n), make([]string, n)
	ws := make([]string, perLine)
	for i := range n {
		for j := range ws {
			ws[j] = "v" + strconv.Itoa(r.IntN(vocab))
		}
		keys[i] = "line" + strconv.Itoa(i)
		lines[i] = strings.Join(ws, " ")
	}
	return keys, lines
}

// procMemKiB returns VmHWM and VmRSS of a process, in KiB.
func procMemKiB(b testing.TB, pid int) (hwm, rss int64) {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("read the worker's memory: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmHWM:":
			hwm = v
		case "VmRSS:":
			rss = v
		}
	}
	if hwm == 0 {
		b.Fatalf("no VmHWM in /proc/%d/status", pid)
	}
	return hwm, rss
}
