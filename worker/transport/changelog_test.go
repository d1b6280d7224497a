package transport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/worker/transport"
)

// produceTo writes n records to one partition of topic (keys
// "p<partition>-<i>") and waits until Kafka acknowledged them all.
func produceTo(t testing.TB, cfg transport.Config, topic string, partition int32, n int) {
	t.Helper()
	p := newProducer(t, cfg)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	wg.Add(n)
	for i := range n {
		p.Produce(transport.Record{
			Topic: topic, Partition: partition,
			Key: fmt.Appendf(nil, "p%d-%d", partition, i), Value: bytes.Repeat([]byte("v"), 100),
		}, func(err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
		})
	}
	wg.Wait()
	if first != nil {
		t.Fatalf("produce to %s[%d]: %v", topic, partition, first)
	}
}

func newTopic(t testing.TB, cfg transport.Config, partitions int) string {
	t.Helper()
	topic := strings.ToLower(kafkatest.Group(t))
	a := newAdmin(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := a.EnsureTopics(ctx, []transport.TopicSpec{{Name: topic, Partitions: partitions}}); err != nil {
		t.Fatalf("EnsureTopics: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		_ = a.DeleteTopics(ctx, []string{topic})
	})
	return topic
}

func newReader(t testing.TB, cfg transport.Config, opts ...transport.Option) *transport.ChangelogReader {
	t.Helper()
	r, err := transport.NewChangelogReader(cfg, nil, append([]transport.Option{transport.WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatalf("NewChangelogReader: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("ChangelogReader.Close: %v", err)
		}
	})
	return r
}

// readToEOF fetches s until an EOF at end and returns the records' offsets
// and keys.
func readToEOF(t testing.TB, s *transport.ChangelogStream, end int64) (offs []int64, keys []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		evs, err := s.Fetch(ctx, 100*time.Millisecond)
		if err != nil {
			t.Fatalf("Fetch after %d records: %v", len(offs), err)
		}
		for _, ev := range evs {
			if ev.EOF {
				if ev.Offset == end {
					return offs, keys
				}
				continue
			}
			offs = append(offs, ev.Offset)
			keys = append(keys, string(ev.Key))
		}
	}
}

// TestChangelogReaderRoutesPartitions reads four partitions through one
// reader: each stream gets exactly its partition's records, in order, and
// its end; a partition whose stream is not fetched for a while (paused,
// full) holds up none of the others, and loses nothing.
func TestChangelogReaderRoutesPartitions(t *testing.T) {
	cfg := testConfig(t)
	topic := newTopic(t, cfg, 4)
	counts := []int{3*transport.ChangelogStreamRecords + 17, 300, 0, 1}
	for p, n := range counts {
		produceTo(t, cfg, topic, int32(p), n)
	}
	r := newReader(t, cfg)
	streams := make([]*transport.ChangelogStream, len(counts))
	for p := range counts {
		s, err := r.Add(topic, int32(p), 0)
		if err != nil {
			t.Fatalf("Add(%d): %v", p, err)
		}
		streams[p] = s
	}
	if _, err := r.Add(topic, 1, 0); err == nil {
		t.Errorf("second Add of partition 1 succeeded")
	}
	if got := r.Partitions(); got != 4 {
		t.Errorf("Partitions() = %d, want 4", got)
	}
	check := func(p int) {
		offs, keys := readToEOF(t, streams[p], int64(counts[p]))
		if len(offs) != counts[p] {
			t.Fatalf("partition %d: %d records, want %d", p, len(offs), counts[p])
		}
		for i := range offs {
			if offs[i] != int64(i) || keys[i] != fmt.Sprintf("p%d-%d", p, i) {
				t.Fatalf("partition %d: record %d is offset %d key %q", p, i, offs[i], keys[i])
			}
		}
	}
	// Partition 0 fills its stream and waits, paused, while the others
	// are read to their ends.
	for p := 1; p < len(counts); p++ {
		check(p)
	}
	check(0)

	// Removed and added again: read from the new offset.
	r.Remove(topic, 1)
	if _, err := streams[1].Fetch(context.Background(), 0); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Fetch after Remove: %v, want ErrClosed", err)
	}
	s, err := r.Add(topic, 1, 250)
	if err != nil {
		t.Fatalf("Add again: %v", err)
	}
	if offs, _ := readToEOF(t, s, 300); len(offs) != 50 || offs[0] != 250 {
		t.Errorf("re-added partition read %d records from %v, want 50 from 250", len(offs), offs[:min(1, len(offs))])
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := streams[0].Fetch(context.Background(), 0); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Fetch after Close: %v, want ErrClosed", err)
	}
	if _, err := r.Add(topic, 2, 0); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Add after Close: %v, want ErrClosed", err)
	}
}

// TestChangelogReaderGroupTimeouts: group settings in Overrides that fit
// the worker's consumer (max.poll.interval.ms of 10s with a 6s session)
// do not break the reader, which joins no group; librdkafka refused to
// create it when they did not fit its own default session timeout, and
// every restore and standby failed for ever.
func TestChangelogReaderGroupTimeouts(t *testing.T) {
	cfg := testConfig(t)
	topic := newTopic(t, cfg, 1)
	produceTo(t, cfg, topic, 0, 10)
	rcfg := cfg
	rcfg.Overrides = map[string]string{"max.poll.interval.ms": "10000"}
	if err := rcfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	r, err := transport.NewChangelogReader(rcfg, newAdmin(t, cfg))
	if err != nil {
		t.Fatalf("NewChangelogReader: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	s, err := r.Add(topic, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if offs, _ := readToEOF(t, s, 10); len(offs) != 10 {
		t.Errorf("read %d records, want 10", len(offs))
	}
}

// TestChangelogReaderOutOfRange: records deleted below a stream's offset
// end that stream with ErrOffsetOutOfRange (never a silent reset), even
// when Overrides ask for auto.offset.reset=earliest and no partition EOF,
// which the reader does not take; the other partition reads on.
func TestChangelogReaderOutOfRange(t *testing.T) {
	cfg := testConfig(t)
	topic := newTopic(t, cfg, 2)
	produceTo(t, cfg, topic, 0, 100)
	produceTo(t, cfg, topic, 1, 100)
	kafkatest.DeleteRecordsBefore(t, topic, 0, 50)

	var logs bytes.Buffer
	var mu sync.Mutex
	rcfg := cfg
	rcfg.Overrides = map[string]string{"auto.offset.reset": "earliest", "enable.partition.eof": "false", "fetch.wait.max.ms": "50"}
	r, err := transport.NewChangelogReader(rcfg, newAdmin(t, cfg), transport.WithLogger(slog.New(
		slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))))
	if err != nil {
		t.Fatalf("NewChangelogReader: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	mu.Lock()
	for _, p := range []string{"auto.offset.reset", "enable.partition.eof"} {
		if !strings.Contains(logs.String(), "property="+p) {
			t.Errorf("no log line about skipping %s:\n%s", p, logs.String())
		}
	}
	if strings.Contains(logs.String(), "fetch.wait.max.ms") {
		t.Errorf("fetch.wait.max.ms was skipped:\n%s", logs.String())
	}
	mu.Unlock()

	low, high, err := r.Watermarks(context.Background(), topic, 0)
	if err != nil || low != 50 || high != 100 {
		t.Fatalf("Watermarks = %d, %d, %v; want 50, 100", low, high, err)
	}
	bad, err := r.Add(topic, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	good, err := r.Add(topic, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		evs, err := bad.Fetch(ctx, 100*time.Millisecond)
		if err != nil {
			if !errors.Is(err, transport.ErrOffsetOutOfRange) {
				t.Fatalf("Fetch: %v, want ErrOffsetOutOfRange", err)
			}
			break
		}
		if len(evs) > 0 {
			t.Fatalf("read %d events below the low watermark: %+v", len(evs), evs[0])
		}
	}
	if offs, _ := readToEOF(t, good, 100); len(offs) != 100 {
		t.Errorf("partition 1: %d records, want 100", len(offs))
	}
	r.Remove(topic, 0)
	s, err := r.Add(topic, 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	if offs, _ := readToEOF(t, s, 100); len(offs) != 50 {
		t.Errorf("partition 0 from its low watermark: %d records, want 50", len(offs))
	}
	if _, err := r.DescribeTopic(ctx, topic+"-missing"); !errors.Is(err, transport.ErrUnknownTopic) {
		t.Errorf("DescribeTopic of a missing topic: %v, want ErrUnknownTopic", err)
	}
	if info, err := r.DescribeTopic(ctx, topic); err != nil || info.Partitions != 2 || info.ID == "" {
		t.Errorf("DescribeTopic = %+v, %v; want 2 partitions and an id", info, err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestReaddFromLowerOffsetReadsEverything removes a partition and adds it
// again, many times, from an offset below where the previous stream's
// reading had got to. Each new stream must get exactly the records from
// its own offset on: none that librdkafka fetched for the previous
// assignment (which would move the stream ahead, so that the records in
// between were then dropped as already read).
func TestReaddFromLowerOffsetReadsEverything(t *testing.T) {
	cfg := testConfig(t)
	topic := newTopic(t, cfg, 1)
	produceTo(t, cfg, topic, 0, 20000)
	r := newReader(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	for round := range 30 {
		from := int64((round * 613) % 10000)
		s, err := r.Add(topic, 0, from)
		if err != nil {
			t.Fatal(err)
		}
		for next := from; next < from+2000; {
			evs, err := s.Fetch(ctx, 100*time.Millisecond)
			if err != nil {
				t.Fatalf("round %d from %d: Fetch at %d: %v", round, from, next, err)
			}
			for _, e := range evs {
				if e.EOF {
					t.Fatalf("round %d from %d: EOF at %d after offset %d", round, from, e.Offset, next-1)
				}
				if e.Offset != next {
					t.Fatalf("round %d from %d: got offset %d, want %d", round, from, e.Offset, next)
				}
				next++
			}
		}
		r.Remove(topic, 0)
	}
}

// TestReaddGetsNoStaleEOF reads a partition to its end, removes it and
// adds it again from 0, many times: the new stream's first event must be
// record 0, never the previous stream's end of partition (a restore would
// take that for its end and finish with nothing read).
func TestReaddGetsNoStaleEOF(t *testing.T) {
	cfg := testConfig(t)
	topic := newTopic(t, cfg, 1)
	produceTo(t, cfg, topic, 0, 3000)
	r := newReader(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for round := range 40 {
		s, err := r.Add(topic, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var evs []transport.ChangelogEvent
		for len(evs) == 0 {
			if evs, err = s.Fetch(ctx, 100*time.Millisecond); err != nil {
				t.Fatalf("round %d: Fetch: %v", round, err)
			}
		}
		if e := evs[0]; e.EOF || e.Offset != 0 {
			t.Fatalf("round %d: added from 0, first event is offset %d (EOF %v)", round, e.Offset, e.EOF)
		}
		r.Remove(topic, 0)
	}
}

// TestReaddGetsNoRecordInFlight holds a record the poll goroutine has
// polled for a stream but not yet delivered, removes the partition and
// adds it again from 0: that record belongs to the old stream, and the new
// one reads every record from 0.
func TestReaddGetsNoRecordInFlight(t *testing.T) {
	cfg := testConfig(t)
	topic := newTopic(t, cfg, 1)
	produceTo(t, cfg, topic, 0, 5000)
	r := newReader(t, cfg)
	s1, err := r.Add(topic, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for got := 0; got < 100; {
		evs, err := s1.Fetch(ctx, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		got += len(evs)
	}
	held := make(chan int64, 1)
	release := make(chan struct{})
	var once sync.Once
	transport.SetPollHook(func(off int64) {
		once.Do(func() {
			held <- off
			<-release
		})
	})
	t.Cleanup(func() { transport.SetPollHook(nil) })
	var off int64
	select {
	case off = <-held:
	case <-time.After(waitTimeout):
		t.Fatal("the poll goroutine polled no record")
	}
	var s2 *transport.ChangelogStream
	readded := make(chan error, 1)
	go func() {
		r.Remove(topic, 0)
		var err error
		s2, err = r.Add(topic, 0, 0)
		readded <- err
	}()
	// Remove and Add may wait for the poll goroutine (then the held record
	// is routed first); give them a moment before letting it go.
	select {
	case err := <-readded:
		readded <- err
	case <-time.After(time.Second):
	}
	transport.SetPollHook(nil)
	close(release)
	if err := <-readded; err != nil {
		t.Fatal(err)
	}
	offs, _ := readToEOF(t, s2, 5000)
	if len(offs) != 5000 || offs[0] != 0 {
		t.Errorf("held record %d of the old stream; the stream added again from 0 read %d records from %v, want 5000 from 0",
			off, len(offs), offs[:min(1, len(offs))])
	}
}
