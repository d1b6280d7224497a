package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// silentRSSBound is the most the worker's resident set may grow by while
// it holds 1,000 Connect streams that never say Hello
// (docs/operations.md#security states it): measured at about 5 MiB.
const silentRSSBound = 32 << 20

// TestSilentStreams: a client (at 127.0.0.2) opens 1,000 Connect streams
// and never says Hello; the worker admits limits.max_pending_hello_per_client
// of them and refuses the rest at once, its resident set grows by less than
// silentRSSBound, and a real agent (at 127.0.0.1) connects meanwhile and
// processes every event, checked with an independent consumer. The silent
// streams are still open throughout (limits.hello_timeout 2m).
func TestSilentStreams(t *testing.T) {
	const streams, conns, perClient = 1000, 4, 32
	body, _, in, out := passApp(t, "")
	body += fmt.Sprintf("limits: {hello_timeout: 2m, max_pending_hello_per_client: %d}\n", perClient)
	w := startWorker(t, body)
	w.waitAssigned(t, 8)
	before := rssOf(t, w.cmd.Process.Pid)

	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	refusedBy := map[codes.Code]int{}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for c := range conns {
		conn, err := grpc.NewClient(w.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return dialer.DialContext(ctx, "tcp", addr)
			}))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ac := eddyv1.NewAgentServiceClient(conn)
		for range streams / conns {
			s, err := ac.Connect(ctx)
			if err != nil {
				t.Fatalf("connection %d: open a Connect stream: %v", c, err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.Recv()
				mu.Lock()
				refusedBy[status.Code(err)]++
				mu.Unlock()
			}()
		}
	}
	refusedNow := func() (n int, other string) {
		mu.Lock()
		defer mu.Unlock()
		for code, k := range refusedBy {
			if code != codes.ResourceExhausted && code != codes.Canceled {
				other += fmt.Sprintf(" %d %v", k, code)
			}
		}
		return refusedBy[codes.ResourceExhausted], other
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("%d silent streams refused", streams-perClient), func() bool {
		n, other := refusedNow()
		if other != "" {
			t.Fatalf("silent streams ended with%s, want only RESOURCE_EXHAUSTED refusals", other)
		}
		return n == streams-perClient
	})
	during := rssOf(t, w.cmd.Process.Pid)
	t.Logf("worker RSS: %d MiB before, %d MiB holding %d silent streams (%d admitted)", before>>20, during>>20, streams, perClient)
	if during-before > silentRSSBound {
		t.Errorf("worker RSS grew by %d MiB with %d silent streams, want at most %d MiB", (during-before)>>20, streams, silentRSSBound>>20)
	}

	startAgent(t, w.GRPC, "pass", out)
	w.waitInstances(t, "pass", 1, 8)
	keys, values := keyedValues(200, 10)
	produce(t, in, keys, values)
	got := newConsumer(t, out).readUntil(60*time.Second, "every value on the output topic", allPresent(out, values))
	checkOutputs(t, values, got[out], false)
	if n, other := refusedNow(); n != streams-perClient || other != "" {
		t.Errorf("after the agent worked: %d refused, other ends%s; want the %d admitted silent streams still open", n, other, perClient)
	}
}

// rssOf returns the resident set size of process pid in bytes.
func rssOf(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the worker's RSS: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
