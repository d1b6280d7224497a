package app

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/config"
)

type fakeCounts struct {
	mu     sync.Mutex
	counts map[string]int
	calls  int
}

func (f *fakeCounts) PartitionCounts(_ context.Context, topics []string) (map[string]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	out := map[string]int{}
	for _, t := range topics {
		if n, ok := f.counts[t]; ok {
			out[t] = n
		}
	}
	return out, nil
}

func (f *fakeCounts) set(topic string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[topic] = n
}

func (f *fakeCounts) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

type fakeBlocker struct {
	mu      sync.Mutex
	blocked map[string][]string
}

func (f *fakeBlocker) Block(agent, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blocked[agent] = append(f.blocked[agent], reason)
}

func (f *fakeBlocker) reasons(agent string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.blocked[agent]...)
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A grown source topic blocks the agent that keeps tables on it (once,
// with an Error naming topic and counts) and is only news for a stateless
// agent.
func TestWatchPartitions(t *testing.T) {
	cfg := config.DefaultConfig()
	cfg.App = "wc"
	cfg.Kafka.MetadataRefresh = config.Duration(time.Millisecond)
	cfg.Topics = []config.Topic{{Name: "lines", Partitions: 8}, {Name: "words", Partitions: 8}}
	cfg.Agents = []config.Agent{
		{Name: "split", Topics: []string{"lines"}},
		{Name: "count", Topics: []string{"words"}, Tables: []string{"counts"}},
	}
	cfg.Tables = []config.Table{{Name: "counts"}}
	var logs syncBuf
	a := &App{cfg: cfg, log: slog.New(slog.NewTextHandler(&logs, nil))}
	counts := &fakeCounts{counts: map[string]int{"lines": 8, "words": 8}}
	bl := &fakeBlocker{blocked: map[string][]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.watchPartitions(ctx, counts, bl) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watchPartitions: %v", err)
		}
	}()
	waitUntil(t, "a few checks", func() bool { return counts.callCount() >= 3 })
	if r := bl.reasons("count"); len(r) != 0 {
		t.Fatalf("blocked with unchanged counts: %v", r)
	}

	counts.set("words", 12)
	counts.set("lines", 10)
	waitUntil(t, "count blocked", func() bool { return len(bl.reasons("count")) > 0 })
	n := counts.callCount()
	waitUntil(t, "more checks", func() bool { return counts.callCount() >= n+3 })
	r := bl.reasons("count")
	if len(r) != 1 || !strings.Contains(r[0], `"words"`) || !strings.Contains(r[0], "from 8 to 12") {
		t.Errorf("count blocked with %q, want once, naming words and both counts", r)
	}
	if r := bl.reasons("split"); len(r) != 0 {
		t.Errorf("stateless split blocked: %v", r)
	}
	out := logs.String()
	if got := strings.Count(out, "level=ERROR"); got != 1 || !strings.Contains(out, "topic=words from=8 to=12") {
		t.Errorf("want one Error naming words 8 -> 12, log:\n%s", out)
	}
	if !strings.Contains(out, "level=INFO") || !strings.Contains(out, "topic=lines from=8 to=10 agent=split") {
		t.Errorf("want an Info for split's topic, log:\n%s", out)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
