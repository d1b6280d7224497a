package integration

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// letters writes n in base 26 with the letters a–z, so that every word the
// benchmark makes is a run of letters, split the same way by every system.
func letters(n int) string {
	var b []byte
	for {
		b = append(b, byte('a'+n%26))
		if n /= 26; n == 0 {
			break
		}
	}
	slices.Reverse(b)
	return string(b)
}

// peerCorpus makes n lines of 3–8 words drawn from a Zipf distribution
// (s = 1.1) over vocab words, like text: a few words are very hot.
func peerCorpus(seed uint64, n, vocab int) []string {
	r := rand.New(rand.NewPCG(seed, 11))
	z := rand.NewZipf(r, 1.1, 1, uint64(vocab-1))
	lines := make([]string, n)
	ws := make([]string, 0, 8)
	for i := range n {
		ws = ws[:0]
		for range 3 + r.IntN(6) {
			ws = append(ws, "w"+letters(int(z.Uint64())))
		}
		lines[i] = strings.Join(ws, " ")
	}
	return lines
}

// outWatch reads a topic from the beginning (all partitions, no group
// commits) and tells when it holds the expected output:
//   - mode "counts": records word -> decimal count; done when the last
//     count of every expected word equals its expected count. A count above
//     the expected one is an error (nothing here is redelivered).
//   - mode "copy": records whose values are lines; done when every expected
//     line was seen as often as expected.
//
// Values (copy) or keys (counts) starting with markerPrefix are latency
// markers: the time each is first seen is kept.
type outWatch struct {
	mode string

	mu      sync.Mutex
	want    map[string]int64
	got     map[string]int64
	left    int
	over    map[string]int64
	records int64
	first   time.Time
	doneAt  time.Time
	done    chan struct{}
	markers map[string]time.Time

	cancel  context.CancelFunc
	stopped chan struct{}
}

const markerPrefix = "zmark"

func watchOutput(b testing.TB, topic, mode string, want map[string]int64) *outWatch {
	b.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(b), "group.id": kafkatest.Group(b) + "-watch",
		"enable.auto.commit": false, "fetch.wait.max.ms": 10, "go.logs.channel.enable": false,
		// What a downstream reader sees: committed transactions only
		// (the exactly-once rows); the same as read_uncommitted for the
		// others, which write no transactions.
		"isolation.level": "read_committed",
	})
	if err != nil {
		b.Fatal(err)
	}
	md, err := c.GetMetadata(&topic, false, 10000)
	if err != nil {
		b.Fatal(err)
	}
	var parts []kafka.TopicPartition
	for _, p := range md.Topics[topic].Partitions {
		parts = append(parts, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.OffsetBeginning})
	}
	if err := c.Assign(parts); err != nil {
		b.Fatal(err)
	}
	w := &outWatch{mode: mode, want: want, got: map[string]int64{}, left: len(want), over: map[string]int64{},
		done: make(chan struct{}), markers: map[string]time.Time{}, stopped: make(chan struct{})}
	if w.left == 0 {
		close(w.done)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() {
		defer close(w.stopped)
		defer c.Close()
		for ctx.Err() == nil {
			m, ok := c.Poll(50).(*kafka.Message)
			if !ok || m.TopicPartition.Error != nil {
				continue
			}
			w.add(m, time.Now())
		}
	}()
	b.Cleanup(w.stop)
	return w
}

func (w *outWatch) add(m *kafka.Message, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.records == 0 {
		w.first = at
	}
	w.records++
	var k string
	var v int64
	switch w.mode {
	case "counts":
		k = string(m.Key)
		n, err := strconv.ParseInt(string(m.Value), 10, 64)
		if err != nil {
			w.over[k] = -1 // not a count: wrong
			return
		}
		v = n
	default:
		k, v = string(m.Value), w.got[string(m.Value)]+1
	}
	if strings.HasPrefix(k, markerPrefix) {
		if _, seen := w.markers[k]; !seen {
			w.markers[k] = at
		}
	}
	want, expected := w.want[k]
	prev := w.got[k]
	w.got[k] = v
	if !expected {
		return
	}
	if v > want && w.mode == "counts" {
		w.over[k] = v
	}
	if prev != want && v == want {
		w.left--
	} else if prev == want && v != want && w.mode == "counts" {
		w.left++
	}
	if w.left == 0 && w.doneAt.IsZero() {
		w.doneAt = at
		close(w.done)
	}
}

func (w *outWatch) stop() {
	w.cancel()
	<-w.stopped
}

// wait waits for the expected output until timeout; it returns when it was
// complete, or an error saying what is missing or wrong.
func (w *outWatch) wait(timeout time.Duration) (time.Time, error) {
	select {
	case <-w.done:
	case <-time.After(timeout):
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.over) > 0 {
		var ex []string
		for k, v := range w.over {
			if len(ex) < 3 {
				ex = append(ex, fmt.Sprintf("%s=%d want %d", k, v, w.want[k]))
			}
		}
		return time.Time{}, fmt.Errorf("%d counts above the truth or not numbers (e.g. %s)", len(w.over), strings.Join(ex, ", "))
	}
	if w.left > 0 {
		var ex []string
		for k, n := range w.want {
			if w.got[k] != n && len(ex) < 3 {
				ex = append(ex, fmt.Sprintf("%s=%d want %d", k, w.got[k], n))
			}
		}
		return time.Time{}, fmt.Errorf("output incomplete after %s: %d of %d keys not at their expected value (e.g. %s; %d records read)",
			timeout, w.left, len(w.want), strings.Join(ex, ", "), w.records)
	}
	return w.doneAt, nil
}

// markerSeen returns when marker was first read, if it was.
func (w *outWatch) markerSeen(marker string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.markers[marker]
	return t, ok
}

// sysProc is a process of a peer system: READY on its stdout tells that
// it processes; everything else it writes is kept for failures.
type sysProc struct {
	name  string
	cmd   *exec.Cmd
	log   *syncBuffer
	ready chan struct{}
	done  chan struct{}
}

func startSysProc(b testing.TB, name, dir string, env []string, args ...string) *sysProc {
	b.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	p := &sysProc{name: name, cmd: cmd, log: &syncBuffer{}, ready: make(chan struct{}), done: make(chan struct{})}
	cmd.Stderr = p.log
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "READY" {
				once.Do(func() { close(p.ready) })
			} else {
				fmt.Fprintln(p.log, sc.Text())
			}
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	b.Cleanup(func() {
		p.stop(30 * time.Second)
		if b.Failed() {
			b.Logf("%s log (last 4k):\n%s", name, tail(p.log.String(), 4096))
		}
	})
	return p
}

// waitReady waits for READY, the process's exit, or the timeout.
func (p *sysProc) waitReady(b testing.TB, timeout time.Duration) {
	b.Helper()
	select {
	case <-p.ready:
	case <-p.done:
		b.Fatalf("%s exited before READY:\n%s", p.name, tail(p.log.String(), 4096))
	case <-time.After(timeout):
		b.Fatalf("%s not READY after %s:\n%s", p.name, timeout, tail(p.log.String(), 4096))
	}
}

// stop sends SIGTERM, then SIGKILL after timeout.
func (p *sysProc) stop(timeout time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// peakRSSMiB is the peak resident set (VmHWM) of a running process.
func peakRSSMiB(b testing.TB, pid int) float64 {
	hwm, _ := procMemKiB(b, pid)
	return float64(hwm) / 1024
}

// cpuSeconds is the user+system CPU time of a process so far (0 when it
// has gone). /proc/PID/stat fields 14 and 15 count clock ticks of 1/100 s
// (USER_HZ, 100 on Linux).
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count from after ")".
	i := strings.LastIndexByte(string(data), ')')
	f := strings.Fields(string(data)[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// percentile returns the p-th percentile (0–100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}
