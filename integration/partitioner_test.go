package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/worker/transport"
)

// partitionerApp is the word count with a partitioner declared per topic.
func partitionerApp(t *testing.T, linesPartitioner, wordsPartitioner string) wordCountApp {
	a := newWordCountApp(t)
	a.body = strings.Replace(a.body, "{name: "+a.lines+", partitions: 8}", "{name: "+a.lines+", partitions: 8, partitioner: "+linesPartitioner+"}", 1)
	a.body = strings.Replace(a.body, "{name: "+a.words+", partitions: 8}", "{name: "+a.words+", partitions: 8, partitioner: "+wordsPartitioner+"}", 1)
	return a
}

// kcatProduce writes key:value lines to topic with kcat (librdkafka's
// partitioner of kcat's choice unless args set one).
func kcatProduce(t *testing.T, topic string, kvs []string, args ...string) {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is needed (Debian package kcat; .ci/run installs it): %v", err)
	}
	cmdArgs := append([]string{"-b", kafkatest.Bootstrap(t), "-P", "-t", topic, "-K", ":", "-X", "acks=all"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, cmdArgs...)
	cmd.Stdin = strings.NewReader(strings.Join(kvs, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat %v: %v: %s", cmdArgs, err, out)
	}
}

// getCount asks a worker for the count of word (workerctl get -o json).
func getCount(t *testing.T, w *workerProc, word string) (int64, int32, bool) {
	t.Helper()
	out, errOut, code := w.ctl(t, "get", "counts", word, "-o", "json")
	if code != 0 {
		if strings.Contains(errOut, "not found") || strings.Contains(errOut, "NotFound") {
			return 0, -1, false
		}
		t.Fatalf("workerctl get counts %s: exit %d: %s", word, code, errOut)
	}
	var g struct {
		Value     []byte `json:"value"`
		Partition int32  `json:"partition"`
	}
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.ParseInt(string(g.Value), 10, 64)
	return n, g.Partition, true
}

func misrouted(t *testing.T, w *workerProc, topic string) float64 {
	t.Helper()
	v, ok := metricValue(w.metrics(t), "eddy_misrouted_records_total", map[string]string{"topic": topic})
	if !ok {
		t.Fatalf("no eddy_misrouted_records_total{topic=%q} series", topic)
	}
	return v
}

// TestKcatDefaultPartitioner: kcat writes with librdkafka's default
// partitioner, consistent_random (CRC32). Words it writes to a topic
// declared consistent_random are found by `workerctl get` on the CRC32
// partition and nothing is counted misrouted; the words the split agent
// produces to that topic are placed by the worker under the same
// partitioner (found too, on the partition CRC32 gives, as an independent
// consumer confirms). Keyed lines kcat writes to a topic left at the
// default murmur2_random are counted misrouted, and the worker warns once
// naming consistent_random.
func TestKcatDefaultPartitioner(t *testing.T) {
	a := partitionerApp(t, "murmur2_random", "consistent_random")
	w := startWorker(t, a.body)
	startWordCount(t, w.GRPC, a)
	w.waitAssigned(t, 16)

	var kvs []string
	for i := range 40 {
		kvs = append(kvs, fmt.Sprintf("kw%d:%d", i, 1+i%3))
	}
	kcatProduce(t, a.words, kvs)
	kcatProduce(t, a.lines, []string{"l1:split one two", "l2:split two three", "l3:apple pear", "l4:plum fig", "l5:one"})
	// Lines first: the split agent's words land on the words topic after.
	waitDrained(t, w, a.app, 2*time.Minute, a.lines)
	waitDrained(t, w, a.app, 2*time.Minute, a.words)

	for i := range 40 {
		word := fmt.Sprintf("kw%d", i)
		want, _ := transport.ConsistentRandom.KeyPartition([]byte(word), 8)
		n, p, found := getCount(t, w, word)
		if !found || n != int64(1+i%3) || p != want {
			t.Errorf("get %s = %d on partition %d (found %v), want %d on partition %d", word, n, p, found, 1+i%3, want)
		}
	}
	for word, want := range map[string]int64{"split": 2, "two": 2, "one": 2, "apple": 1, "fig": 1} {
		if n, _, found := getCount(t, w, word); !found || n != want {
			t.Errorf("get %s (produced by the split agent) = %d (found %v), want %d", word, n, found, want)
		}
	}
	for _, r := range readAll(t, a.words) {
		if want, _ := transport.ConsistentRandom.KeyPartition([]byte(r.Key), 8); r.Partition != want {
			t.Errorf("word %q is on partition %d of %s, consistent_random says %d", r.Key, r.Partition, a.words, want)
		}
	}
	if got := misrouted(t, w, a.words); got != 0 {
		t.Errorf("eddy_misrouted_records_total{topic=words} = %v, want 0", got)
	}
	// Five keyed lines: the chance that CRC32 and murmur2 agree on all is 8^-5.
	if got := misrouted(t, w, a.lines); got < 1 {
		t.Errorf("eddy_misrouted_records_total{topic=lines} = %v, want at least 1", got)
	}
	log := w.log.String()
	if n := strings.Count(log, "records are not on the partition their key hashes to"); n != 1 ||
		!strings.Contains(log, "topic="+a.lines) || !strings.Contains(log, "fits partitioner consistent_random") {
		t.Errorf("want one warning for %s naming consistent_random; %d in the log:\n%s", a.lines, n, tail(log, 4096))
	}
}

// TestJavaCompatibleProducers: kcat with -X partitioner=murmur2_random and
// franz-go's default partitioner both place keys as the default
// murmur2_random does: every word is found, none misrouted.
func TestJavaCompatibleProducers(t *testing.T) {
	a := partitionerApp(t, "murmur2_random", "murmur2_random")
	w := startWorker(t, a.body)
	startWordCount(t, w.GRPC, a)
	w.waitAssigned(t, 16)

	var kvs []string
	for i := range 30 {
		kvs = append(kvs, fmt.Sprintf("kc%d:1", i))
	}
	kcatProduce(t, a.words, kvs, "-X", "partitioner=murmur2_random")
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkatest.Bootstrap(t)), kgo.DefaultProduceTopic(a.words))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 30 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: fmt.Appendf(nil, "fg%d", i), Value: []byte("2")}).FirstErr(); err != nil {
			t.Fatalf("franz-go produce: %v", err)
		}
	}
	waitDrained(t, w, a.app, 2*time.Minute, a.words)
	for i := range 30 {
		for word, want := range map[string]int64{fmt.Sprintf("kc%d", i): 1, fmt.Sprintf("fg%d", i): 2} {
			p, _ := transport.Murmur2Random.KeyPartition([]byte(word), 8)
			if n, got, found := getCount(t, w, word); !found || n != want || got != p {
				t.Errorf("get %s = %d on partition %d (found %v), want %d on partition %d", word, n, got, found, want, p)
			}
		}
	}
	if got := misrouted(t, w, a.words); got != 0 {
		t.Errorf("eddy_misrouted_records_total{topic=words} = %v, want 0", got)
	}
}
