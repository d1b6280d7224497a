package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/worker/tables"
)

// TestWildcardListenNeedsAdvertise: a worker listening on every interface
// without listen.advertise refuses to start, naming the field; with it,
// the group description carries the advertised address (read with an
// independent admin client), and table queries are forwarded to the owner
// through it.
func TestWildcardListenNeedsAdvertise(t *testing.T) {
	a := newWordCountApp(t)

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin(t, "worker"), "-c", appFile(t, dir, a.body),
		"--grpc", "0.0.0.0:0", "--http", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("worker with a wildcard listen and no advertise: got %v, want exit status 2\n%s", err, out)
	}
	if want := `listen.advertise: required when listen.grpc "0.0.0.0:0" listens on every interface`; !strings.Contains(string(out), want) {
		t.Errorf("worker output lacks %q:\n%s", want, out)
	}

	body := a.body + "listen: {advertise: \"127.0.0.1:0\"}\n"
	w1 := startWorkerListen(t, t.TempDir(), body, "0.0.0.0:0")
	w2 := startWorkerListen(t, t.TempDir(), body, "0.0.0.0:0")
	// The bound addresses are wildcards: dial them on loopback.
	for _, w := range []*workerProc{w1, w2} {
		_, port, err := net.SplitHostPort(w.GRPC)
		if err != nil {
			t.Fatal(err)
		}
		w.GRPC = net.JoinHostPort("127.0.0.1", port)
	}
	startWordCount(t, w1.GRPC, a)
	startWordCount(t, w2.GRPC, a)
	waitFor(t, 90*time.Second, "the 16 partitions split over both workers", func() bool {
		n1, n2 := 0, 0
		if as, ok := w1.status(t)["assigned"].([]any); ok {
			n1 = len(as)
		}
		if as, ok := w2.status(t)["assigned"].([]any); ok {
			n2 = len(as)
		}
		return n1 > 0 && n2 > 0 && n1+n2 == 16
	})

	// The group description, read independently, advertises 127.0.0.1
	// with each worker's bound port.
	want := map[string]bool{}
	for _, w := range []*workerProc{w1, w2} {
		want[fmt.Sprintf("eddy|%v|%s", w.status(t)["worker_id"], w.GRPC)] = true
	}
	got := groupClientIDs(t, a.app)
	for id := range want {
		if !got[id] {
			t.Errorf("group %s client ids: got %v, want %q among them", a.app, got, id)
		}
	}

	// Queries asked of either worker reach the owner through it.
	counts := map[string]int64{}
	keys, lines := corpus(3, 500, counts)
	produce(t, a.lines, keys, lines)
	waitDrained(t, w1, a.app, 3*time.Minute, a.lines, a.words)
	perPart := map[int32]string{}
	for word := range counts {
		perPart[tables.KeyPartition([]byte(word), 8)] = word
	}
	forwarded := 0
	for _, word := range perPart {
		for _, w := range []*workerProc{w1, w2} {
			out, errOut, code := w.ctl(t, "get", "counts", word, "-o", "json")
			if code != 0 {
				t.Fatalf("workerctl get counts %s on %s: exit %d: %s", word, w.GRPC, code, errOut)
			}
			var g struct {
				Value    []byte `json:"value"`
				ServedBy string `json:"served_by"`
			}
			if err := json.Unmarshal([]byte(out), &g); err != nil {
				t.Fatal(err)
			}
			if n, _ := strconv.ParseInt(string(g.Value), 10, 64); n != counts[word] {
				t.Errorf("get %s on %s: got %d, want %d", word, w.GRPC, n, counts[word])
			}
			if g.ServedBy != fmt.Sprint(w.status(t)["worker_id"]) {
				forwarded++
			}
		}
	}
	if forwarded == 0 {
		t.Errorf("no query was forwarded to the other worker")
	}
}

// groupClientIDs describes the consumer group with an admin client of its
// own and returns its members' client ids.
func groupClientIDs(t *testing.T, group string) map[string]bool {
	t.Helper()
	ad, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := ad.DescribeConsumerGroups(ctx, []string{group})
	if err != nil {
		t.Fatalf("DescribeConsumerGroups: %v", err)
	}
	ids := map[string]bool{}
	for _, g := range res.ConsumerGroupDescriptions {
		for _, m := range g.Members {
			ids[m.ClientID] = true
		}
	}
	return ids
}
