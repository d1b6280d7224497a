package integration

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// passApp is an app with an 8-partition input, an output topic and one
// agent "pass"; extra is appended to the agent's entry.
func passApp(t *testing.T, agentExtra string) (body, app, in, out string) {
	t.Helper()
	app, in, out = uniq(t, "app"), uniq(t, "in"), uniq(t, "out")
	body = fmt.Sprintf(`app: %s
brokers: %s
shutdown_timeout: 30s
kafka: {reach_timeout: 10s, session_timeout: 6s}
topics:
  - {name: %s, partitions: 8}
  - {name: %s, partitions: 8}
agents:
  - {name: pass, topics: [%s]%s}
`, app, kafkatest.Bootstrap(t), in, out, in, agentExtra)
	return body, app, in, out
}

// checkOutputs checks that every input value is in outs, at least once, or
// exactly once when exact; and that each key's values appear in order.
func checkOutputs(t *testing.T, values []string, outs []record, exact bool) {
	t.Helper()
	seen := map[string]int{}
	lastSeq := map[string]int{}
	for _, r := range outs {
		seen[r.Value]++
		k, s, _ := strings.Cut(r.Value, ":")
		seq, _ := strconv.Atoi(s)
		if last, ok := lastSeq[k]; ok && seq < last && exact {
			t.Errorf("key %s: value %d after %d: per-key order broken", k, seq, last)
		}
		lastSeq[k] = seq
	}
	missing, dup := 0, 0
	for _, v := range values {
		switch n := seen[v]; {
		case n == 0:
			missing++
		case n > 1:
			dup++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d inputs have no output", missing, len(values))
	}
	if exact && (dup > 0 || len(outs) != len(values)) {
		t.Errorf("got %d outputs with %d duplicated inputs, want exactly %d", len(outs), dup, len(values))
	}
}

func countAtLeast(topic string, n int) func(map[string][]record) bool {
	return func(got map[string][]record) bool { return len(got[topic]) >= n }
}

// allPresent stops once every value appears in topic.
func allPresent(topic string, values []string) func(map[string][]record) bool {
	want := map[string]bool{}
	for _, v := range values {
		want[v] = true
	}
	seen := map[string]bool{}
	i := 0
	return func(got map[string][]record) bool {
		for ; i < len(got[topic]); i++ {
			if v := got[topic][i].Value; want[v] {
				seen[v] = true
			}
		}
		return len(seen) == len(want)
	}
}

func waitCommittedAtEnd(t *testing.T, w *workerProc, app, topic string) {
	t.Helper()
	end := endOffsets(t, topic, 8)
	waitFor(t, 30*time.Second, "committed offsets at the end offsets", func() bool {
		return atEnd(committed(t, app, topic, 8), end)
	})
}

func TestPassThroughExactOnCleanRun(t *testing.T) {
	for _, ordering := range []string{"partition", "key"} {
		t.Run(ordering, func(t *testing.T) {
			n := 200000
			if ordering == "key" {
				n = 50000
			}
			body, app, in, out := passApp(t, ", ordering: "+ordering)
			w := startWorker(t, body)
			w.waitAssigned(t, 8)
			for i := 0; i < 3; i++ {
				startAgent(t, w.GRPC, "pass", out)
			}
			if ordering == "partition" {
				w.waitInstances(t, "pass", 3, 8)
			} else {
				w.waitInstances(t, "pass", 3, 24) // every instance shares every partition
			}
			keys, values := keyedValues(n, 1000)
			start := time.Now()
			produce(t, in, keys, values)
			got := newConsumer(t, out).readUntil(3*time.Minute, "all outputs", countAtLeast(out, n))
			t.Logf("%d events through 3 agents (%s ordering) in %s", n, ordering, time.Since(start).Round(time.Millisecond))
			checkOutputs(t, values, got[out], true)
			waitCommittedAtEnd(t, w, app, in)
		})
	}
}

func TestAgentKilledMidStream(t *testing.T) {
	body, app, in, out := passApp(t, "")
	w := startWorker(t, body)
	w.waitAssigned(t, 8)
	var agents []*agentProc
	for i := 0; i < 3; i++ {
		agents = append(agents, startAgent(t, w.GRPC, "pass", out, "--delay", "50us"))
	}
	w.waitInstances(t, "pass", 3, 8)
	keys, values := keyedValues(60000, 500)
	produce(t, in, keys, values)
	c := newConsumer(t, out)
	c.readUntil(time.Minute, "the first outputs", countAtLeast(out, 5000))
	agents[0].kill()
	start := time.Now()
	w.waitInstances(t, "pass", 2, 8)
	t.Logf("partitions moved to the other instances %s after the kill", time.Since(start).Round(time.Millisecond))
	got := newConsumer(t, out).readUntil(2*time.Minute, "every input in the output", allPresent(out, values))
	checkOutputs(t, values, got[out], false)
	waitCommittedAtEnd(t, w, app, in)
}

func TestWorkerKilledMidStream(t *testing.T) {
	body, app, in, out := passApp(t, "")
	w1 := startWorker(t, body)
	w2 := startWorker(t, body)
	startAgent(t, w1.GRPC, "pass", out, "--delay", "50us")
	startAgent(t, w2.GRPC, "pass", out, "--delay", "50us")
	waitFor(t, 60*time.Second, "both workers owning partitions", func() bool {
		a1, _ := w1.status(t)["assigned"].([]any)
		a2, _ := w2.status(t)["assigned"].([]any)
		return len(a1) > 0 && len(a2) > 0 && len(a1)+len(a2) == 8
	})
	keys, values := keyedValues(60000, 500)
	produce(t, in, keys, values)
	newConsumer(t, out).readUntil(time.Minute, "the first outputs", countAtLeast(out, 10000))
	w1.signal(syscall.SIGKILL)
	w1.wait(10 * time.Second)
	atKill := committed(t, app, in, 8)

	waitFor(t, 60*time.Second, "the surviving worker owning all 8 partitions", func() bool {
		a, _ := w2.status(t)["assigned"].([]any)
		return len(a) == 8
	})
	got := newConsumer(t, out).readUntil(2*time.Minute, "every input in the output", allPresent(out, values))
	checkOutputs(t, values, got[out], false)
	// No committed offset passed an event whose output is missing.
	outputs := map[[2]int64]bool{}
	for _, r := range got[out] {
		p, _ := strconv.ParseInt(r.Headers["src.partition"], 10, 32)
		o, _ := strconv.ParseInt(r.Headers["src.offset"], 10, 64)
		outputs[[2]int64{p, o}] = true
	}
	for p, c := range atKill {
		for o := int64(0); o < c; o++ {
			if !outputs[[2]int64{int64(p), o}] {
				t.Errorf("partition %d: committed %d at the kill, but offset %d has no output", p, c, o)
				break
			}
		}
	}
	waitCommittedAtEnd(t, w2, app, in)
}

func TestPoisonEventDeadLettered(t *testing.T) {
	body, app, in, out := passApp(t, ", max_retries: 4")
	w := startWorker(t, body)
	w.waitAssigned(t, 8)
	startAgent(t, w.GRPC, "pass", out, "--poison", "POISON")
	w.waitInstances(t, "pass", 1, 8)
	keys, values := keyedValues(2000, 50)
	keys = append(keys, "poison-key")
	values = append(values, "POISON")
	keys2, values2 := keyedValues(2000, 50)
	for i := range values2 {
		values2[i] = "b" + values2[i]
	}
	keys, values = append(keys, keys2...), append(values, values2...)
	pos := produce(t, in, keys, values)
	poison := pos[2000]
	dlq := app + "-pass-dlq"

	// Until the poison event is dead-lettered, its partition's committed
	// offset stays at or below it, while the other outputs flow.
	c := newConsumer(t, dlq)
	var lastCheck time.Time
	got := c.readUntil(time.Minute, "the dead letter", func(got map[string][]record) bool {
		if len(got[dlq]) > 0 {
			return true
		}
		if time.Since(lastCheck) < 300*time.Millisecond {
			return false
		}
		lastCheck = time.Now()
		// The dead letter is acknowledged before the commit can pass the
		// event: a commit past it with no dead letter in Kafka is a bug.
		cm := committed(t, app, in, 8)[poison.Partition]
		if cm > int64(poison.Offset) && endOffsets(t, dlq, 1)[0] == 0 {
			t.Fatalf("committed %d passed the poison event at %d before it was dead-lettered", cm, poison.Offset)
		}
		return false
	})
	d := got[dlq][0]
	for k, want := range map[string]string{
		"eddy.agent": "pass", "eddy.topic": in,
		"eddy.partition": strconv.Itoa(int(poison.Partition)), "eddy.offset": strconv.Itoa(int(poison.Offset)),
		"eddy.attempts": "5",
	} {
		if d.Headers[k] != want {
			t.Errorf("dead letter header %s: got %q, want %q", k, d.Headers[k], want)
		}
	}
	if !strings.Contains(d.Headers["eddy.error"], "poison event") {
		t.Errorf("dead letter eddy.error: got %q, want the agent's error", d.Headers["eddy.error"])
	}
	if d.Value != "POISON" {
		t.Errorf("dead letter value: got %q, want POISON", d.Value)
	}
	var good []string
	for _, v := range values {
		if v != "POISON" {
			good = append(good, v)
		}
	}
	rest := newConsumer(t, out).readUntil(time.Minute, "every other output", allPresent(out, good))
	checkOutputs(t, good, rest[out], false)
	waitCommittedAtEnd(t, w, app, in)
}

func TestNoAgentNothingConsumed(t *testing.T) {
	body, app, in, out := passApp(t, "")
	w := startWorker(t, body)
	w.waitAssigned(t, 8)
	keys, values := keyedValues(500, 20)
	produce(t, in, keys, values)
	// Observe for a while: with no instance, nothing is committed.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for p, c := range committed(t, app, in, 8) {
			if c >= 0 {
				t.Fatalf("partition %d committed at %d with no agent connected", p, c)
			}
		}
		time.Sleep(200 * time.Millisecond) // observation period, not synchronisation
	}
	if a := w.agents(t); len(a) != 1 || len(a[0].GetUnassigned()) != 8 {
		t.Errorf("ListAgents: got %v, want 8 unassigned partitions", a)
	}
	startAgent(t, w.GRPC, "pass", out)
	got := newConsumer(t, out).readUntil(time.Minute, "every output", allPresent(out, values))
	checkOutputs(t, values, got[out], false)
	waitCommittedAtEnd(t, w, app, in)
}
