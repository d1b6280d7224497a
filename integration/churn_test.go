package integration

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestChurnFreezeAndKill is the acceptance run that lost counts before
// (docs/architecture.md, "Handover"): the word count on three workers with a
// standby each, a producer writing throughout, one worker frozen with
// SIGSTOP past its session timeout and resumed, another killed -9 and
// restarted. Then, read by an independent consumer:
//   - the changelog never goes backwards for any word (a frozen worker's
//     late writes landing after the new owner's did exactly that);
//   - its fold is never below the truth (at-least-once may count twice);
//   - the last output of each word equals the fold, and so does a scan of
//     the owners' stores;
//   - every partition of every topic is committed to its end (none was
//     left assigned but silent).
func TestChurnFreezeAndKill(t *testing.T) {
	a := newWordCountApp(t)
	a.body = strings.Replace(a.body, "  - {name: counts}\n", "  - {name: counts, standby_replicas: 1}\n", 1)
	if !strings.Contains(a.body, "standby_replicas: 1") {
		t.Fatalf("app file without standby_replicas:\n%s", a.body)
	}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	ws := make([]*workerProc, 3)
	ags := make([]*agentProc, 3)
	for i := range ws {
		ws[i] = startWorkerIn(t, dirs[i], a.body)
		ags[i] = startWordCount(t, ws[i].GRPC, a)
	}
	waitFor(t, 90*time.Second, "the 16 partitions spread over the three workers", func() bool {
		n := 0
		for _, w := range ws {
			as, _ := w.status(t)["assigned"].([]any)
			if len(as) == 0 {
				return false
			}
			n += len(as)
		}
		return n == 16
	})

	// A producer writes throughout the faults.
	want := map[string]int64{}
	keys, lines := corpus(21, 70000, want)
	prod := startSteadyProducer(t, a.lines, keys, lines, 500, 200*time.Millisecond)

	// The worker that owns most count partitions is frozen past its session
	// timeout (6s) while it has work in flight, then resumed.
	waitFor(t, time.Minute, "10,000 lines written", func() bool { return prod.sent() >= 10000 })
	frozen := ownerOfMostCount(t, ws)
	t.Logf("freezing worker %d (%s), count partitions %v", frozen, ws[frozen].GRPC, countParts(t, ws[frozen]))
	ws[frozen].signal(syscall.SIGSTOP)
	frozenAt := time.Now()
	others := []int{(frozen + 1) % 3, (frozen + 2) % 3}
	waitFor(t, time.Minute, "the other workers to take the frozen worker's partitions", func() bool {
		n := 0
		for _, i := range others {
			as, _ := ws[i].status(t)["assigned"].([]any)
			n += len(as)
		}
		return n == 16
	})
	// Let the new owners write for a while before the frozen one resumes.
	waitFor(t, time.Minute, "4,000 more lines written", func() bool { return prod.sent() >= 14000 })
	for time.Since(frozenAt) < 12*time.Second {
		time.Sleep(100 * time.Millisecond) // a freeze of fixed length is the fault itself, not synchronisation
	}
	ws[frozen].signal(syscall.SIGCONT)
	t.Logf("worker %d resumed after %s", frozen, time.Since(frozenAt).Round(time.Millisecond))
	if !pollUntil(30*time.Second, func() bool {
		return strings.Contains(ws[frozen].log.String(), "the worker's process stood still")
	}) {
		t.Error("the resumed worker did not report that it stood still")
	}

	// Once it is back in the group, another worker is killed -9 and
	// restarted on its data directory.
	waitFor(t, 2*time.Minute, "the resumed worker to own partitions again", func() bool {
		as, _ := ws[frozen].status(t)["assigned"].([]any)
		return len(as) > 0
	})
	victim := others[0]
	ws[victim].signal(syscall.SIGKILL)
	ws[victim].wait(10 * time.Second)
	ags[victim].kill()
	t.Logf("killed worker %d", victim)
	ws[victim] = startWorkerIn(t, dirs[victim], a.body)
	ags[victim] = startWordCount(t, ws[victim].GRPC, a)

	if err := prod.wait(3 * time.Minute); err != nil {
		t.Fatalf("producer: %v", err)
	}
	for _, topic := range []string{a.lines, a.words} {
		end := endOffsets(t, topic, 8)
		waitFor(t, 4*time.Minute, "committed offsets of "+topic+" at the end", func() bool {
			for i, w := range ws {
				if w.exited() {
					t.Fatalf("worker %d exited with %d", i, w.exitCode)
				}
			}
			return atEnd(committed(t, a.app, topic, 8), end)
		})
	}

	// The group settled on the three live workers (the killed one's member
	// may have outlived it by a session timeout).
	waitFor(t, time.Minute, "the 16 partitions on the three live workers", func() bool {
		n := 0
		for _, w := range ws {
			as, _ := w.status(t)["assigned"].([]any)
			n += len(as)
		}
		return n == 16
	})

	// The changelog, in offset order per partition, never goes backwards.
	cl := readAll(t, a.changelog)
	last := map[string]int64{}
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
	}
	if backwards > 0 {
		t.Errorf("%d changelog records went backwards", backwards)
	}
	fold := foldChangelog(t, a.changelog)
	below, over := 0, 0
	for k, v := range want {
		switch {
		case fold[k] < v:
			if below++; below <= 10 {
				t.Errorf("changelog fold: %s = %d, below the truth %d", k, fold[k], v)
			}
		case fold[k] > v:
			over++
		}
	}
	t.Logf("%d words: %d below the truth, %d counted more than once (at-least-once)", len(want), below, over)
	if below > 0 {
		t.Errorf("%d of %d counts below the truth", below, len(want))
	}
	checkExact(t, "last output per word against the changelog fold", lastByKey(t, readAll(t, a.out)), fold)
	checkExact(t, "scan of the owners' stores against the changelog fold", scanCounts(t, ws[frozen]), fold)
}

// pollUntil polls cond until it holds (true) or timeout passes (false).
func pollUntil(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// ownerOfMostCount returns the index of the worker owning most partitions
// of the count agent (the stateful stage).
func ownerOfMostCount(t *testing.T, ws []*workerProc) int {
	t.Helper()
	best, n := 0, -1
	for i, w := range ws {
		if c := len(countParts(t, w)); c > n {
			best, n = i, c
		}
	}
	return best
}

// countParts returns the table partitions a worker owns (not its standbys).
func countParts(t *testing.T, w *workerProc) []int32 {
	t.Helper()
	active, _ := tableParts(t, w)
	return active
}

// steadyProducer writes lines in chunks at a steady pace on its own
// goroutine, so faults happen while input keeps arriving.
type steadyProducer struct {
	mu   sync.Mutex
	n    int
	err  error
	done chan struct{}
}

func (p *steadyProducer) sent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *steadyProducer) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("not done after %s (%d sent)", timeout, p.sent())
	}
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// startSteadyProducer writes chunk records every interval until all are
// written and acknowledged.
func startSteadyProducer(t *testing.T, topic string, keys, values []string, chunk int, interval time.Duration) *steadyProducer {
	t.Helper()
	kp, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(t), "acks": "all", "linger.ms": 5,
		"partitioner": "murmur2_random", "go.delivery.report.fields": "none",
		// A retried produce request must not write a line twice: the
		// checks count each line's words once.
		"enable.idempotence": true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sp := &steadyProducer{done: make(chan struct{})}
	var delivery sync.Mutex
	var deliveryErr error
	go func() { // delivery reports: the truth counts only what Kafka has
		for ev := range kp.Events() {
			if m, ok := ev.(*kafka.Message); ok && m.TopicPartition.Error != nil {
				delivery.Lock()
				deliveryErr = cmpOr(deliveryErr, m.TopicPartition.Error)
				delivery.Unlock()
			}
		}
	}()
	go func() {
		defer close(sp.done)
		defer kp.Close()
		defer func() {
			delivery.Lock()
			sp.err = cmpOr(sp.err, deliveryErr)
			delivery.Unlock()
		}()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; i < len(values); {
			select {
			case <-ctx.Done():
				sp.err = ctx.Err()
				return
			case <-tick.C:
			}
			for j := 0; j < chunk && i < len(values); j, i = j+1, i+1 {
				msg := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
					Key: []byte(keys[i]), Value: []byte(values[i])}
				for {
					err := kp.Produce(msg, nil)
					if err == nil {
						break
					}
					if kerr, ok := err.(kafka.Error); ok && kerr.Code() == kafka.ErrQueueFull {
						kp.Flush(100)
						continue
					}
					sp.err = err
					return
				}
			}
			for kp.Flush(1000) > 0 {
				if ctx.Err() != nil {
					sp.err = ctx.Err()
					return
				}
			}
			sp.mu.Lock()
			sp.n = i
			sp.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-sp.done })
	return sp
}
