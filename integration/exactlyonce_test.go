package integration

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/internal/testutil"
)

// TestExactlyOnceKills is the word count under processing_guarantee
// exactly_once on three workers, a producer writing throughout, and faults
// one after another: three workers killed -9 (each restarted on its data
// directory, so with its worker id and transactional id), an agent process
// killed with events in flight, the broker killed -9 and restarted, and a
// worker frozen with SIGSTOP past its session timeout and resumed (a
// zombie: its transactions must be fenced).
// Then an independent read_committed reader checks (docs/kafka.md,
// "Exactly-once"):
//   - the words topic (the split agent's outputs) holds every word of every
//     line exactly once;
//   - the changelog never goes backwards and folds to the exact counts;
//   - the last output of each word is its exact count;
//   - a scan of the owners' stores (workerctl) gives the exact counts.
func TestExactlyOnceKills(t *testing.T) {
	a := newWordCountApp(t)
	a.body += "processing_guarantee: exactly_once\n"
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	ws := make([]*workerProc, 3)
	ags := make([]*agentProc, 3)
	for i := range ws {
		ws[i] = startWorkerIn(t, dirs[i], a.body)
		ags[i] = startWordCount(t, ws[i].GRPC, a)
	}
	waitSpread := func(what string, live []int) {
		waitFor(t, 2*time.Minute, what, func() bool {
			n := 0
			for _, i := range live {
				if ws[i].exited() {
					t.Fatalf("worker %d exited with %d:\n%s", i, ws[i].exitCode, tail(ws[i].log.String(), 4096))
				}
				as, _ := ws[i].status(t)["assigned"].([]any)
				n += len(as)
			}
			return n == 16
		})
	}
	waitSpread("the 16 partitions on the three workers", []int{0, 1, 2})
	want := map[string]int64{}
	keys, lines := corpus(31, 36000, want)
	prod := startSteadyProducer(t, a.lines, keys, lines, 500, 200*time.Millisecond)

	restart := func(i int) {
		ws[i] = startWorkerIn(t, dirs[i], a.body)
		ags[i] = startWordCount(t, ws[i].GRPC, a)
	}
	for round, at := range []int{5000, 10000, 15000} {
		waitFor(t, 2*time.Minute, fmt.Sprintf("%d lines written", at), func() bool { return prod.sent() >= at })
		v := round % 3
		ws[v].signal(syscall.SIGKILL)
		ws[v].wait(10 * time.Second)
		ags[v].kill()
		t.Logf("killed worker %d at %d lines", v, prod.sent())
		restart(v)
	}

	// An agent process killed with events in flight.
	waitFor(t, 2*time.Minute, "20,000 lines written", func() bool { return prod.sent() >= 20000 })
	ags[1].kill()
	ags[1] = startWordCount(t, ws[1].GRPC, a)
	t.Logf("killed the agents of worker 1 at %d lines", prod.sent())

	// The broker crashes (kill -9) and comes back on its data.
	waitFor(t, 2*time.Minute, "22,000 lines written", func() bool { return prod.sent() >= 22000 })
	restarted := time.Now()
	kafkatest.RestartBroker(t)
	t.Logf("broker killed and restarted at %d lines in %s", prod.sent(), time.Since(restarted).Round(time.Millisecond))

	// A zombie: frozen past its session timeout (6s) while the group moves
	// on, then resumed.
	waitFor(t, 2*time.Minute, "25,000 lines written", func() bool { return prod.sent() >= 25000 })
	z := 2
	ws[z].signal(syscall.SIGSTOP)
	frozenAt := time.Now()
	waitSpread("the other workers to take the frozen worker's partitions", []int{0, 1})
	for time.Since(frozenAt) < 10*time.Second {
		time.Sleep(100 * time.Millisecond) // a freeze of fixed length is the fault itself, not synchronisation
	}
	ws[z].signal(syscall.SIGCONT)
	t.Logf("worker %d resumed after %s", z, time.Since(frozenAt).Round(time.Millisecond))

	if err := prod.wait(3 * time.Minute); err != nil {
		t.Fatalf("producer: %v", err)
	}
	waitSpread("the 16 partitions on the three live workers", []int{0, 1, 2})

	// Drained: the lines are committed to their end (a plain topic).
	end := endOffsets(t, a.lines, 8)
	var linesCommitted []int64
	testutil.WaitFor(t, 4*time.Minute, func() string {
		dumpWorkers(t, ws...)
		return fmt.Sprintf("committed offsets of the lines at the end %v (the group's: %v)", end, linesCommitted)
	}, func() bool {
		linesCommitted = committed(t, a.app, a.lines, 8)
		return atEnd(linesCommitted, end)
	})
	// Then the words to their end: a transactional topic ends with a
	// commit marker, which the committed offset passes too (the
	// consumer's position), or the group would show a lag of 1 for good.
	wordsEnd := endOffsets(t, a.words, 8)
	var wordsCommitted []int64
	testutil.WaitFor(t, 4*time.Minute, func() string {
		dumpWorkers(t, ws...)
		return fmt.Sprintf("committed offsets of the words at their end %v (past the last commit marker; the group's: %v)", wordsEnd, wordsCommitted)
	}, func() bool {
		wordsCommitted = committed(t, a.app, a.words, 8)
		return atEnd(wordsCommitted, wordsEnd)
	})
	words := readCommitted(t, a.words)

	// Every word of every line exactly once in the words topic.
	perWord := map[string]int64{}
	for _, r := range words {
		perWord[r.Key]++
	}
	checkExact(t, "words topic (read_committed) against the lines", perWord, want)

	cl := readCommitted(t, a.changelog)
	last := map[string]int64{}
	fold := map[string]int64{}
	backwards := 0
	for _, r := range cl {
		n, err := strconv.ParseInt(r.Value, 10, 64)
		if err != nil {
			t.Fatalf("changelog %d@%d: %q is not a count", r.Partition, r.Offset, r.Value)
		}
		if prev, ok := last[r.Key]; ok && n < prev {
			if backwards++; backwards <= 10 {
				t.Errorf("changelog went backwards: %s = %d at %d@%d after %d", r.Key, n, r.Partition, r.Offset, prev)
			}
		}
		last[r.Key] = n
		fold[r.Key] = n
	}
	if backwards > 0 {
		t.Errorf("%d changelog records went backwards", backwards)
	}
	checkExact(t, "changelog fold (read_committed) against the truth", fold, want)
	checkExact(t, "last output per word (read_committed) against the truth", lastByKey(t, readCommitted(t, a.out)), want)
	checkExact(t, "scan of the owners' stores against the truth", scanCounts(t, ws[0]), want)
	for i, w := range ws {
		if strings.Contains(w.log.String(), "panic") {
			t.Errorf("worker %d logged a panic", i)
		}
	}
}

// readCommitted reads every record of topic (8 partitions) at
// read_committed with an independent consumer: records of aborted or open
// transactions are not seen.
func readCommitted(t *testing.T, topic string) []record {
	t.Helper()
	var out []record
	for _, r := range kafkatest.ReadAll(t, topic, 8, true) {
		rec := record{Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Value: string(r.Value)}
		if r.Value == nil {
			rec.Headers = map[string]string{"tombstone": "1"}
		}
		out = append(out, rec)
	}
	return out
}
