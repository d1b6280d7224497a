//go:build faults

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// tcpProxy forwards connections from its own loopback port to a target
// that may change (a worker restarted on a new port), and can cut every
// connection it carries: the agents' side of a broken network.
type tcpProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	conns  map[net.Conn]struct{}
	cuts   int
}

func newTCPProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *tcpProxy) Addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) setTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		go p.pipe(c, target)
	}
}

func (p *tcpProxy) pipe(c net.Conn, target string) {
	s, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[s] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(s, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, s); done <- struct{}{} }()
	<-done
	c.Close()
	s.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

// cut closes every connection the proxy carries (new ones are accepted).
func (p *tcpProxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns)
	for c := range p.conns {
		c.Close()
	}
	p.cuts++
	return n / 2
}

// faultProducer writes, every interval until stopped, chunk unique ids to
// the pass-through input ("PREFIX-NNNNNN UNIXMILLI": the id and when it
// was handed to Kafka) and chunk corpus lines to the word count's input.
// Only acknowledged records count as produced.
type faultProducer struct {
	prefix string
	stopc  chan struct{}
	done   chan struct{}

	mu    sync.Mutex
	ids   int
	lines int
	err   error
}

func startFaultProducer(t *testing.T, prefix, idTopic, lineTopic string, lines []string, firstLine, chunk int, interval time.Duration) *faultProducer {
	t.Helper()
	kp, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(t), "acks": "all", "linger.ms": 5,
		"partitioner": "murmur2_random", "go.delivery.report.fields": "none",
		"message.timeout.ms": 120000,
		// A retried produce request must not write an id or a line twice:
		// the checker counts copies of an input, not of a retry.
		"enable.idempotence": true,
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProducer{prefix: prefix, stopc: make(chan struct{}), done: make(chan struct{})}
	var dmu sync.Mutex
	var derr error
	go func() {
		for ev := range kp.Events() {
			if m, ok := ev.(*kafka.Message); ok && m.TopicPartition.Error != nil {
				dmu.Lock()
				derr = cmpOr(derr, m.TopicPartition.Error)
				dmu.Unlock()
			}
		}
	}()
	produce := func(topic, key, value string) error {
		msg := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Key: []byte(key), Value: []byte(value)}
		for {
			err := kp.Produce(msg, nil)
			var kerr kafka.Error
			if errors.As(err, &kerr) && kerr.Code() == kafka.ErrQueueFull {
				kp.Flush(100)
				continue
			}
			return err
		}
	}
	go func() {
		defer close(p.done)
		defer kp.Close()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		ids, ln := 0, 0
		for {
			select {
			case <-p.stopc:
				return
			case <-tick.C:
			}
			if firstLine+ln+chunk > len(lines) {
				p.fail(fmt.Errorf("faultProducer: out of corpus lines at %d", firstLine+ln))
				return
			}
			now := strconv.FormatInt(time.Now().UnixMilli(), 10)
			for j := 0; j < chunk; j++ {
				id := fmt.Sprintf("%s-%06d", prefix, ids+j)
				if err := produce(idTopic, id, id+" "+now); err != nil {
					p.fail(err)
					return
				}
				if err := produce(lineTopic, "line"+strconv.Itoa(firstLine+ln+j), lines[firstLine+ln+j]); err != nil {
					p.fail(err)
					return
				}
			}
			// Waiting for the acknowledgements before counting keeps the
			// truth to what Kafka has; a broker that stands still makes
			// this wait, and the producer with it.
			for kp.Flush(1000) > 0 { // bounded by message.timeout.ms
			}
			dmu.Lock()
			err := derr
			dmu.Unlock()
			if err != nil {
				p.fail(err)
				return
			}
			ids += chunk
			ln += chunk
			p.mu.Lock()
			p.ids, p.lines = ids, ln
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { p.stop() })
	return p
}

func (p *faultProducer) fail(err error) {
	p.mu.Lock()
	p.err = cmpOr(p.err, err)
	p.mu.Unlock()
}

func (p *faultProducer) sent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ids
}

// stop ends the producer and returns how many ids and lines Kafka
// acknowledged, and the first error.
func (p *faultProducer) stop() (ids, lines int, err error) {
	select {
	case <-p.stopc:
	default:
		close(p.stopc)
	}
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ids, p.lines, p.err
}

// offsetWatcher reads the group's committed offsets (require_stable)
// through its own admin client every period and records every one that
// went below one read before. It is paused around broker faults: librdkafka's
// ListConsumerGroupOffsets can crash the process when the broker restarts
// under a request (librdkafka issue 3663), and the admin client is created
// anew after each pause.
type offsetWatcher struct {
	cancel context.CancelFunc
	done   chan struct{}
	paused atomic.Bool
	inUse  sync.Mutex // held by a request in flight

	mu        sync.Mutex
	last      map[string]int64
	backwards []string
	reads     int
}

func startOffsetWatcher(t *testing.T, group string, topics []string, partitions int, period time.Duration) *offsetWatcher {
	t.Helper()
	boot := kafkatest.Bootstrap(t)
	ctx, cancel := context.WithCancel(context.Background())
	w := &offsetWatcher{cancel: cancel, done: make(chan struct{}), last: map[string]int64{}}
	var tps []kafka.TopicPartition
	for _, topic := range topics {
		for p := range partitions {
			tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: int32(p)})
		}
	}
	go func() {
		defer close(w.done)
		var a *kafka.AdminClient
		defer func() {
			if a != nil {
				a.Close()
			}
		}()
		for ctx.Err() == nil {
			w.inUse.Lock()
			switch {
			case w.paused.Load():
				if a != nil {
					a.Close()
					a = nil
				}
			case a == nil:
				a, _ = kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": boot})
			default:
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				res, err := a.ListConsumerGroupOffsets(rctx, []kafka.ConsumerGroupTopicPartitions{{Group: group, Partitions: tps}},
					kafka.SetAdminRequireStableOffsets(true))
				rcancel()
				if err == nil {
					w.observe(res)
				}
			}
			w.inUse.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(period):
			}
		}
	}()
	t.Cleanup(w.stop)
	return w
}

// pause stops the reads until resume, once the one in flight has ended.
func (w *offsetWatcher) pause() {
	w.paused.Store(true)
	w.inUse.Lock()
	w.inUse.Unlock() //nolint:staticcheck // waits for the request in flight
}

func (w *offsetWatcher) resume() { w.paused.Store(false) }

func (w *offsetWatcher) observe(res kafka.ListConsumerGroupOffsetsResult) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reads++
	for _, g := range res.ConsumerGroupsTopicPartitions {
		for _, tp := range g.Partitions {
			if tp.Error != nil || tp.Offset < 0 {
				continue // unstable (a transaction's markers on their way) or none yet
			}
			k := fmt.Sprintf("%s[%d]", *tp.Topic, tp.Partition)
			if prev, ok := w.last[k]; ok && int64(tp.Offset) < prev {
				w.backwards = append(w.backwards, fmt.Sprintf("%s: %d after %d at %s", k, tp.Offset, prev, time.Now().Format("15:04:05.000")))
			}
			w.last[k] = max(w.last[k], int64(tp.Offset))
		}
	}
}

// since returns the decreases recorded after the first n, and the total.
func (w *offsetWatcher) since(n int) ([]string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.backwards[min(n, len(w.backwards)):]...), len(w.backwards)
}

func (w *offsetWatcher) stop() {
	w.cancel()
	<-w.done
}

// peakRSS returns the process's peak resident set (VmHWM) in bytes, 0 when
// it cannot be read (the process is gone).
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// passOutput is one record of the pass-through output, as the checker
// reads it.
type passOutput struct {
	id        string
	srcPart   int
	srcOffset int64     // the input record's offset (src.offset)
	outPart   int       // the output record's partition
	outOffset int64     // the output record's offset
	agentPID  string    // the agent process that produced it (agent.pid)
	produced  time.Time // when the producer handed the input to Kafka
	outCreate time.Time // the output record's append time (its topic has LogAppendTime)
}

// passReader reads the pass-through output read_committed with a consumer
// of its own, from where it stopped last time to the current end.
type passReader struct {
	topic string
	next  []int64
}

func (r *passReader) readNew(t *testing.T) []passOutput {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(t), "group.id": uniq(t, "faults-checker"),
		"enable.auto.commit": false, "enable.partition.eof": true, "isolation.level": "read_committed",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r.next == nil {
		r.next = make([]int64, 8)
	}
	var tps []kafka.TopicPartition
	for p := range 8 {
		tps = append(tps, kafka.TopicPartition{Topic: &r.topic, Partition: int32(p), Offset: kafka.Offset(r.next[p])})
	}
	if err := c.Assign(tps); err != nil {
		t.Fatal(err)
	}
	var out []passOutput
	eof := map[int32]bool{}
	deadline := time.Now().Add(2 * time.Minute)
	for len(eof) < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("checker: reading %s reached the end of %d of 8 partitions in 2m", r.topic, len(eof))
		}
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			if e.TopicPartition.Error != nil {
				t.Fatalf("checker: reading %s: %v", r.topic, e.TopicPartition.Error)
			}
			p := e.TopicPartition.Partition
			r.next[p] = int64(e.TopicPartition.Offset) + 1
			delete(eof, p)
			o := passOutput{outCreate: e.Timestamp, srcPart: -1, srcOffset: -1, outPart: int(p), outOffset: int64(e.TopicPartition.Offset)}
			id, ms, ok := strings.Cut(string(e.Value), " ")
			if !ok {
				continue // not one of the producer's ids
			}
			o.id = id
			if n, err := strconv.ParseInt(ms, 10, 64); err == nil {
				o.produced = time.UnixMilli(n)
			}
			for _, h := range e.Headers {
				switch h.Key {
				case "src.partition":
					o.srcPart, _ = strconv.Atoi(string(h.Value))
				case "src.offset":
					o.srcOffset, _ = strconv.ParseInt(string(h.Value), 10, 64)
				case "agent.pid":
					o.agentPID = string(h.Value)
				}
			}
			out = append(out, o)
		case kafka.PartitionEOF:
			eof[e.Partition] = true
		case kafka.Error:
			if e.IsFatal() {
				t.Fatalf("checker: reading %s: %v", r.topic, e)
			}
		}
	}
	return out
}

// metricSum scrapes the worker's /metrics and returns the sum of a
// counter's samples (0 when the worker does not answer).
func metricSum(w *workerProc, name string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", w.HTTP)
	if err != nil {
		return 0
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", w.HTTP)
	b, _ := io.ReadAll(conn)
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest != "" && rest[0] != ' ' && rest[0] != '{' {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// produceKV writes one record to a partition of topic and waits for its
// acknowledgement.
func produceKV(t *testing.T, topic string, partition int32, key, value string) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(t), "acks": "all"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dr := make(chan kafka.Event, 1)
	if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: partition},
		Key: []byte(key), Value: []byte(value)}, dr); err != nil {
		t.Fatalf("produce to %s[%d]: %v", topic, partition, err)
	}
	select {
	case ev := <-dr:
		if m := ev.(*kafka.Message); m.TopicPartition.Error != nil {
			t.Fatalf("produce to %s[%d]: %v", topic, partition, m.TopicPartition.Error)
		}
	case <-time.After(time.Minute):
		t.Fatalf("produce to %s[%d]: no acknowledgement within 1m", topic, partition)
	}
}

// alterTopic sets (or, with del, deletes: back to the broker's defaults)
// the given configs of topic.
func alterTopic(t *testing.T, topic string, configs map[string]string, del bool) {
	t.Helper()
	a, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	op := kafka.AlterConfigOpTypeSet
	if del {
		op = kafka.AlterConfigOpTypeDelete
	}
	var entries []kafka.ConfigEntry
	for k, v := range configs {
		entries = append(entries, kafka.ConfigEntry{Name: k, Value: v, IncrementalOperation: op})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := a.IncrementalAlterConfigs(ctx, []kafka.ConfigResource{{Type: kafka.ResourceTopic, Name: topic, Config: entries}})
	if err == nil && len(res) == 1 && res[0].Error.Code() != kafka.ErrNoError {
		err = res[0].Error
	}
	if err != nil {
		t.Fatalf("alter the configs of %s: %v", topic, err)
	}
}

// hasLogLine reports whether one line of log holds every one of parts.
func hasLogLine(log string, parts ...string) bool {
	for _, l := range strings.Split(log, "\n") {
		ok := true
		for _, p := range parts {
			if !strings.Contains(l, p) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// scanTable returns workerctl scan TABLE --all (numeric values), waiting
// for a scan with no partition restoring.
func scanTable(t *testing.T, w *workerProc, table string) map[string]int64 {
	t.Helper()
	var got map[string]int64
	waitFor(t, time.Minute, "a scan of "+table+" with no partition restoring", func() bool {
		out, errOut, code := w.ctl(t, "scan", table, "--all", "--limit", "10000", "-o", "json")
		if code != 0 {
			t.Fatalf("workerctl scan %s: exit %d: %s", table, code, errOut)
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
		got = map[string]int64{}
		for _, e := range sc.Entries {
			n, err := strconv.ParseInt(string(e.Value), 10, 64)
			if err != nil {
				t.Fatalf("scan %s: %q = %q is not a number", table, e.Key, e.Value)
			}
			got[string(e.Key)] = n
		}
		return len(sc.RestoringPartitions) == 0
	})
	return got
}

// fenceProducer starts a transactional producer with transactional.id
// tid and initialises it, which fences the producer that had the id.
func fenceProducer(t *testing.T, tid string) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(t), "transactional.id": tid})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.InitTransactions(ctx); err != nil {
		t.Fatalf("fence %s: InitTransactions: %v", tid, err)
	}
}
