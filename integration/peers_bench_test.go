package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// BenchmarkPeers is `make bench`: Eddy side by side with the raw
// librdkafka limit, faust-streaming and Kafka Streams on the same input in
// the same run. The input (EDDY_BENCH_LINES lines of 3–8 words, Zipf over a
// 10,000-word vocabulary, 8 partitions) is written once; each system reads
// it with its own consumer group, one after the other. For each: events/s
// (input lines ÷ the time from the system being ready to its output being
// complete and correct, as read by an independent consumer), p50/p99
// end-to-end latency of marker lines written at 100/s once the input is
// done, and the peak RSS of every process. A wrong or incomplete output
// fails the row. Writes bench/RESULTS.md, bench/results.json and (with the
// bench venv) bench/results.png. EDDY_BENCH_SYSTEMS (comma-separated row
// names) runs a subset. b.N is ignored: run with -benchtime 1x.
func BenchmarkPeers(b *testing.B) {
	pb := newPeerBench(b)
	pb.row("raw-read", "confluent-kafka-go consumer, in the bench process", pb.rawRead)
	pb.row("raw-copy", "confluent-kafka-go consumer + producer (linger.ms 5, acks all), in the bench process", pb.rawCopy)
	pb.row("eddy-pass", "worker + 1 Go agent process copying every line; at-least-once, commits on", pb.eddyPass(""))
	pb.row("eddy-pass-eos", "eddy-pass under processing_guarantee exactly_once (a transaction per 100 ms commit cycle; output read read_committed)", pb.eddyPass(eosBody))
	pb.row("eddy-wc-go", "worker + Go agents (examples/wordcount: split -> words topic -> count with the counts table and its changelog)", pb.eddyWordCount("go"))
	pb.row("eddy-wc-go-eos", "eddy-wc-go under processing_guarantee exactly_once (a transaction per 100 ms commit cycle; output read read_committed)", pb.eddyWordCount("go", eosBody))
	pb.row("eddy-wc-python", "worker + Python agents (examples/wordcount/python, same topology)", pb.eddyWordCount("python"))
	pb.row("faust", "faust-streaming word count, table + changelog (bench/peers/faust/README.md); its own input: the first EDDY_BENCH_FAUST_LINES lines of the corpus", pb.faust)
	pb.row("kstreams", "Kafka Streams word count, RocksDB store + changelog, at_least_once, default commit interval (30 s) and cache", pb.kstreams())
	pb.row("kstreams-1s", "Kafka Streams as above with commit.interval.ms=1000 (output flushed every second)", pb.kstreams("--commit-interval-ms", "1000"))
	pb.row("kstreams-nocache", "Kafka Streams with commit.interval.ms=1000 and statestore.cache.max.bytes=0: every update to the changelog and the output, as Eddy and faust do", pb.kstreams("--commit-interval-ms", "1000", "--cache-max-bytes", "0"))
	pb.write()
}

// peerBench is the state shared by the rows of BenchmarkPeers.
type peerBench struct {
	b    *testing.B
	root string
	only []string

	main    *inputSet // the input of every row but faust
	small   *inputSet // faust's: the first lines of the same corpus
	markers int       // latency markers per row
	seq     int       // row number, for marker names

	rows []*peerRow
	meta peerMeta
}

// inputSet is an input topic and what the systems must make of it.
type inputSet struct {
	topic     string
	lines     int64            // lines in the topic (markers included)
	words     int64            // words in them
	wantWords map[string]int64 // word -> count over the topic
	wantLines map[string]int64 // line -> occurrences in the topic
}

func newInputSet(b *testing.B, lines []string) *inputSet {
	in := &inputSet{topic: kafkatest.Topic(b, 8), wantWords: map[string]int64{}, wantLines: map[string]int64{}}
	for _, l := range lines {
		in.add(l)
	}
	keys := make([]string, len(lines)) // no keys: lines are spread over the partitions at random
	produce(b, in.topic, keys, lines)
	return in
}

func (in *inputSet) add(l string) {
	in.lines++
	in.wantLines[l]++
	for _, w := range strings.Fields(l) {
		in.words++
		in.wantWords[w]++
	}
}

// peerRow is one system's result.
type peerRow struct {
	Name       string             `json:"name"`
	Setup      string             `json:"setup"`
	Lines      int64              `json:"lines"`
	Words      int64              `json:"words"`
	Seconds    float64            `json:"seconds"`
	EventsPerS float64            `json:"events_per_s"`
	WordsPerS  float64            `json:"words_per_s,omitempty"`
	Ratio      float64            `json:"ratio_to_raw_read"`
	StartupS   float64            `json:"startup_s"`
	P50Ms      float64            `json:"p50_ms"`
	P99Ms      float64            `json:"p99_ms"`
	Markers    int                `json:"latency_markers"`
	RSSMiB     map[string]float64 `json:"peak_rss_mib,omitempty"`
	RSSTotal   float64            `json:"peak_rss_total_mib"`
	CPUSeconds map[string]float64 `json:"cpu_seconds"` // during the throughput part, by process, broker included
	OK         bool               `json:"correct"`
	Error      string             `json:"error,omitempty"`
	Profile    string             `json:"worker_cpu_profile_top,omitempty"`

	procs map[string]int     // the system's processes, by name
	cpu0  map[string]float64 // their CPU seconds at the start
}

// track adds a process of the system: its CPU time is counted from mark
// and its peak RSS read by rssAll (unless it is the bench process).
func (r *peerRow) track(name string, pid int) {
	if r.procs == nil {
		r.procs = map[string]int{}
	}
	r.procs[name] = pid
}

// mark notes the CPU time of the system's processes and of the broker at
// the start of the throughput part.
func (r *peerRow) mark(b *testing.B) {
	r.track("broker", kafkatest.BrokerPID(b))
	r.cpu0 = map[string]float64{}
	for name, pid := range r.procs {
		r.cpu0[name] = cpuSeconds(pid)
	}
}

// rssAll records the peak RSS of the system's processes, just before they
// stop (the broker and the bench process are not the system's).
func (r *peerRow) rssAll(b *testing.B) {
	for name, pid := range r.procs {
		if name == "broker" || pid == os.Getpid() {
			continue
		}
		v := peakRSSMiB(b, pid)
		r.RSSMiB[name] = v
		r.RSSTotal += v
	}
}

func newPeerBench(b *testing.B) *peerBench {
	root, err := repoRoot()
	if err != nil {
		b.Fatal(err)
	}
	n := envInt(b, "EDDY_BENCH_LINES", 200000)
	nf := min(n, envInt(b, "EDDY_BENCH_FAUST_LINES", 10000))
	pb := &peerBench{b: b, root: root, markers: 300}
	if s := os.Getenv("EDDY_BENCH_SYSTEMS"); s != "" {
		pb.only = strings.Split(s, ",")
	}
	lines := peerCorpus(42, n, 10000)
	start := time.Now()
	pb.main = newInputSet(b, lines)
	b.Logf("input: %d lines, %d words, %d distinct, written in %s", pb.main.lines, pb.main.words, len(pb.main.wantWords), time.Since(start).Round(time.Millisecond))
	if pb.want("faust") {
		pb.small = newInputSet(b, lines[:nf])
	}
	warmProducerIDs(b)
	bin(b, "worker") // builds the binaries now, not in the first Eddy row's start-up
	pb.meta = collectMeta(b, root, n, nf)
	return pb
}

// warmProducerIDs makes the broker hand out its first producer id: on a
// fresh broker that loads the transaction coordinator ("Coordinator load
// in progress" while it does), which would otherwise be charged to the
// start-up of the first system with an idempotent producer.
func warmProducerIDs(b *testing.B) {
	topic := kafkatest.Topic(b, 1)
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(b), "enable.idempotence": true,
		"go.delivery.reports": false})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0}, Value: []byte("warm")}, nil); err != nil {
		b.Fatal(err)
	}
	if p.Flush(60000) > 0 {
		b.Fatal("the broker gave no producer id in 60s")
	}
}

// envInt reads a size from the environment (at least 1000).
func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1000 {
		b.Fatalf("%s=%q: want a number of lines >= 1000", name, s)
	}
	return n
}

func (pb *peerBench) want(name string) bool {
	return len(pb.only) == 0 || slices.Contains(pb.only, name)
}

// row runs one system as a sub-benchmark and keeps its result.
func (pb *peerBench) row(name, setup string, run func(b *testing.B, r *peerRow)) {
	if !pb.want(name) {
		return
	}
	pb.seq++
	in := pb.main
	if name == "faust" {
		in = pb.small
	}
	r := &peerRow{Name: name, Setup: setup, Lines: in.lines, Words: in.words, RSSMiB: map[string]float64{}}
	pb.rows = append(pb.rows, r)
	ok := pb.b.Run(name, func(b *testing.B) {
		run(b, r)
		if r.Error != "" {
			b.Error(r.Error)
			return
		}
		r.OK = true
		b.ReportMetric(r.EventsPerS, "events/s")
		b.ReportMetric(r.P50Ms, "p50-ms")
		b.ReportMetric(r.P99Ms, "p99-ms")
		b.ReportMetric(r.RSSTotal, "peak-RSS-MiB")
	})
	if !ok && r.Error == "" {
		r.Error = "failed: see the benchmark log"
	}
	if r.OK {
		b := pb.b
		b.Logf("%-15s %9.0f events/s  p50 %7.1f ms  p99 %7.1f ms  RSS %6.0f MiB", name, r.EventsPerS, r.P50Ms, r.P99Ms, r.RSSTotal)
	}
}

// finish records the throughput part of a row: from t0 (ready) to the
// output complete, or the error.
func (r *peerRow) finish(t0 time.Time, w *outWatch, timeout time.Duration) bool {
	end, err := w.wait(timeout)
	if err != nil {
		r.Error = err.Error()
		return false
	}
	r.Seconds = end.Sub(t0).Seconds()
	r.EventsPerS = float64(r.Lines) / r.Seconds
	r.CPUSeconds = map[string]float64{}
	for name, pid := range r.procs {
		r.CPUSeconds[name] = cpuSeconds(pid) - r.cpu0[name]
	}
	return true
}

// latency writes pb.markers one-word marker lines at 100/s into the input
// and measures the time from each write to its reading on w. The markers
// become part of the input for the rows after.
func (pb *peerBench) latency(b *testing.B, in *inputSet, r *peerRow, w *outWatch) {
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(b), "linger.ms": 0, "acks": "all",
		"partitioner": "murmur2_random", "go.delivery.reports": false})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	// Connected before the clock runs: a marker's latency is not the
	// producer's start-up.
	if _, err := p.GetMetadata(&in.topic, false, 10000); err != nil {
		b.Fatalf("producer metadata: %v", err)
	}
	sent := map[string]time.Time{}
	var names []string
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := range pb.markers {
		<-tick.C
		m := markerPrefix + letters(pb.seq*100000+i)
		names = append(names, m)
		sent[m] = time.Now()
		if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &in.topic, Partition: kafka.PartitionAny},
			Value: []byte(m)}, nil); err != nil {
			b.Fatalf("produce a marker: %v", err)
		}
	}
	if left := p.Flush(30000); left > 0 {
		b.Fatalf("%d markers not acknowledged in 30s", left)
	}
	for _, m := range names {
		in.add(m)
	}
	var lat []time.Duration
	deadline := time.Now().Add(90 * time.Second)
	for _, m := range names {
		for {
			if at, ok := w.markerSeen(m); ok {
				lat = append(lat, at.Sub(sent[m]))
				break
			}
			if time.Now().After(deadline) {
				r.Error = fmt.Sprintf("latency: %d of %d markers not in the output after 90s", len(names)-len(lat), len(names))
				return
			}
			time.Sleep(5 * time.Millisecond) // polling the watcher
		}
	}
	slices.Sort(lat)
	r.Markers = len(lat)
	r.P50Ms = float64(percentile(lat, 50).Microseconds()) / 1000
	r.P99Ms = float64(percentile(lat, 99).Microseconds()) / 1000
}

func (pb *peerBench) rawRead(b *testing.B, r *peerRow) {
	r.track("bench process", os.Getpid())
	r.mark(b)
	t0 := time.Now()
	w := watchOutput(b, pb.main.topic, "copy", pb.main.wantLines)
	if !r.finish(t0, w, 5*time.Minute) {
		return
	}
	pb.latency(b, pb.main, r, w)
}

func (pb *peerBench) rawCopy(b *testing.B, r *peerRow) {
	out := kafkatest.Topic(b, 8)
	w := watchOutput(b, out, "copy", pb.main.wantLines)
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(b), "group.id": kafkatest.Group(b),
		"auto.offset.reset": "earliest", "enable.auto.commit": false, "fetch.wait.max.ms": 10})
	if err != nil {
		b.Fatal(err)
	}
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(b), "linger.ms": 5, "acks": "all",
		"go.delivery.report.fields": "none"})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	go func() {
		for range p.Events() { // delivery reports: drained
		}
	}()
	var stop atomic.Bool
	copied := make(chan struct{})
	r.track("bench process", os.Getpid())
	r.mark(b)
	t0 := time.Now()
	if err := c.Subscribe(pb.main.topic, nil); err != nil {
		b.Fatal(err)
	}
	go func() {
		defer close(copied)
		defer c.Close()
		for !stop.Load() {
			m, ok := c.Poll(50).(*kafka.Message)
			if !ok || m.TopicPartition.Error != nil {
				continue
			}
			for {
				err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &out, Partition: m.TopicPartition.Partition},
					Key: m.Key, Value: m.Value}, nil)
				if kerr, ok := err.(kafka.Error); ok && kerr.Code() == kafka.ErrQueueFull {
					p.Flush(10)
					continue
				}
				break
			}
		}
	}()
	defer func() { stop.Store(true); <-copied }()
	if !r.finish(t0, w, 5*time.Minute) {
		return
	}
	pb.latency(b, pb.main, r, w)
}

// eddyApp is the app file of an Eddy row reading the bench input.
func (pb *peerBench) eddyApp(b *testing.B, agents string, topics ...string) string {
	app := strings.ToLower(kafkatest.Group(b))
	var ts strings.Builder
	for _, t := range append([]string{pb.main.topic}, topics...) {
		fmt.Fprintf(&ts, "  - {name: %s, partitions: 8}\n", t)
	}
	return fmt.Sprintf(`app: %s
brokers: %s
shutdown_timeout: 30s
log: {level: warn}
kafka: {reach_timeout: 10s, session_timeout: 6s}
topics:
%sagents:
%s`, app, kafkatest.Bootstrap(b), ts.String(), agents)
}

// pauseWorker pauses the worker while the agents connect, so the clock
// starts at resumeWorker, like a peer's READY.
func pauseWorker(b *testing.B, w *workerProc) {
	if _, e, code := w.ctl(b, "pause"); code != 0 {
		b.Fatalf("pause: %s", e)
	}
}

func resumeWorker(b *testing.B, w *workerProc) time.Time {
	t0 := time.Now()
	if _, e, code := w.ctl(b, "resume"); code != 0 {
		b.Fatalf("resume: %s", e)
	}
	return t0
}

// eosBody is the app-file line of the exactly-once rows.
const eosBody = "processing_guarantee: exactly_once\n"

func (pb *peerBench) eddyPass(extra string) func(b *testing.B, r *peerRow) {
	return func(b *testing.B, r *peerRow) { pb.eddyPassRow(b, r, extra) }
}

func (pb *peerBench) eddyPassRow(b *testing.B, r *peerRow, extra string) {
	out := kafkatest.Topic(b, 8)
	body := pb.eddyApp(b, fmt.Sprintf("  - {name: pass, topics: [%s]}\n", pb.main.topic), out) + extra
	start := time.Now()
	w := startWorker(b, body)
	w.waitAssigned(b, 8)
	pauseWorker(b, w)
	ag := startAgent(b, w.GRPC, "pass", out)
	w.waitInstances(b, "pass", 1, 8)
	r.StartupS = time.Since(start).Seconds()
	wt := watchOutput(b, out, "copy", pb.main.wantLines)
	profile := make(chan string, 1)
	go func() { profile <- pb.cpuProfile(b, w.HTTP, r.Name) }()
	r.track("worker", w.cmd.Process.Pid)
	r.track("agent", ag.cmd.Process.Pid)
	r.mark(b)
	t0 := resumeWorker(b, w)
	if r.finish(t0, wt, 5*time.Minute) {
		pb.latency(b, pb.main, r, wt)
	}
	r.rssAll(b)
	r.Profile = <-profile
}

func (pb *peerBench) eddyWordCount(lang string, extra ...string) func(b *testing.B, r *peerRow) {
	return func(b *testing.B, r *peerRow) {
		words, out := kafkatest.Topic(b, 8), kafkatest.Topic(b, 8)
		body := pb.eddyApp(b, fmt.Sprintf("  - {name: split, topics: [%s]}\n  - {name: count, topics: [%s], tables: [counts]}\ntables:\n  - {name: counts}\n",
			pb.main.topic, words), words, out) + strings.Join(extra, "")
		start := time.Now()
		w := startWorker(b, body)
		w.waitAssigned(b, 16)
		pauseWorker(b, w)
		var pid int
		if lang == "go" {
			ag := startWordCount(b, w.GRPC, wordCountApp{words: words, out: out, table: "counts"})
			pid = ag.cmd.Process.Pid
		} else {
			py := filepath.Join(pb.root, "sdk/python/.venv/bin/python")
			p := startSysProc(b, "python agents", pb.root, []string{"EDDY_ADDR=" + w.GRPC, "EDDY_APP=" + appAt(b, w.GRPC), "EDDY_TOKEN=", "WORDCOUNT_WORDS_TOPIC=" + words,
				"WORDCOUNT_COUNTS_TABLE=counts", "WORDCOUNT_OUT_TOPIC=" + out}, py, "examples/wordcount/python/wordcount.py")
			pid = p.cmd.Process.Pid
		}
		w.waitInstances(b, "split", 1, 8)
		w.waitInstances(b, "count", 1, 8)
		r.StartupS = time.Since(start).Seconds()
		wt := watchOutput(b, out, "counts", pb.main.wantWords)
		profile := make(chan string, 1)
		if lang == "go" {
			go func() { profile <- pb.cpuProfile(b, w.HTTP, r.Name) }()
		}
		r.track("worker", w.cmd.Process.Pid)
		r.track(lang+" agents", pid)
		r.mark(b)
		t0 := resumeWorker(b, w)
		if r.finish(t0, wt, 8*time.Minute) {
			r.WordsPerS = float64(r.Words) / r.Seconds
			pb.latency(b, pb.main, r, wt)
		}
		r.rssAll(b)
		if lang == "go" {
			r.Profile = <-profile
		}
	}
}

// cpuProfile takes a 10 s CPU profile of the worker through /debug/pprof,
// keeps it under bench/out and returns the top of `go tool pprof -top`.
func (pb *peerBench) cpuProfile(b *testing.B, httpAddr, name string) string {
	resp, err := http.Get("http://" + httpAddr + "/debug/pprof/profile?seconds=10")
	if err != nil {
		return "profile: " + err.Error()
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("profile: %v %s", err, resp.Status)
	}
	dir := filepath.Join(pb.root, "bench", "out")
	_ = os.MkdirAll(dir, 0o755)
	path := filepath.Join(dir, name+".worker.cpu.pprof")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "profile: " + err.Error()
	}
	top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", bin(b, "worker"), path).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("profile: go tool pprof: %v\n%s", err, top)
	}
	return string(top)
}

func (pb *peerBench) faust(b *testing.B, r *peerRow) {
	dir := filepath.Join(pb.root, "bench/peers/faust")
	py := filepath.Join(dir, ".venv/bin/python")
	if _, err := os.Stat(py); err != nil {
		b.Fatalf("faust venv missing (%v): run bench/peers/faust/setup.sh (make bench does)", err)
	}
	out := kafkatest.Topic(b, 8)
	start := time.Now()
	p := startSysProc(b, "faust", dir, nil, py, "wordcount.py", "--bootstrap", kafkatest.Bootstrap(b), "--input", pb.small.topic,
		"--output", out, "--app-id", strings.ToLower(kafkatest.Group(b)), "--state-dir", b.TempDir())
	wt := watchOutput(b, out, "counts", pb.small.wantWords)
	r.track("faust worker", p.cmd.Process.Pid)
	p.waitReady(b, 2*time.Minute)
	r.mark(b)
	t0 := time.Now()
	r.StartupS = t0.Sub(start).Seconds()
	if r.finish(t0, wt, 8*time.Minute) {
		r.WordsPerS = float64(r.Words) / r.Seconds
		pb.latency(b, pb.small, r, wt)
	}
	r.rssAll(b)
}

func (pb *peerBench) kstreams(flags ...string) func(b *testing.B, r *peerRow) {
	return func(b *testing.B, r *peerRow) {
		jar := filepath.Join(pb.root, "bench/peers/kstreams/target/wordcount.jar")
		if _, err := os.Stat(jar); err != nil {
			b.Fatalf("Kafka Streams jar missing (%v): run bench/peers/kstreams/build.sh (make bench does)", err)
		}
		out := kafkatest.Topic(b, 8)
		args := []string{"java", "-jar", jar, "--bootstrap", kafkatest.Bootstrap(b), "--input", pb.main.topic,
			"--output", out, "--app-id", strings.ToLower(kafkatest.Group(b)), "--state-dir", b.TempDir()}
		args = append(args, flags...)
		start := time.Now()
		p := startSysProc(b, "kafka streams", pb.root, nil, args...)
		wt := watchOutput(b, out, "counts", pb.main.wantWords)
		r.track("jvm", p.cmd.Process.Pid)
		p.waitReady(b, 2*time.Minute)
		r.mark(b)
		t0 := time.Now()
		r.StartupS = t0.Sub(start).Seconds()
		if r.finish(t0, wt, 8*time.Minute) {
			r.WordsPerS = float64(r.Words) / r.Seconds
			pb.latency(b, pb.main, r, wt)
		}
		r.rssAll(b)
	}
}
