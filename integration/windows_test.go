package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/eddy-streams/eddy/client/agent"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestWindowedCounts: a Go agent counts events per key and tumbling
// minute in a windowed table, on event time (the records' timestamps, up
// to 3 minutes in the past); TableService.Get with the window start reads
// every (key, minute) count exactly, from the worker.
func TestWindowedCounts(t *testing.T) {
	app, topic := uniq(t, "win"), uniq(t, "events")
	body := fmt.Sprintf(`app: %s
brokers: %s
shutdown_timeout: 20s
kafka: {reach_timeout: 10s}
topics:
  - {name: %s, partitions: 8}
agents:
  - {name: wcount, topics: [%s], tables: [perminute]}
tables:
  - {name: perminute, window: {type: tumbling, size: 1m, expires: 1h}}
`, app, kafkatest.Bootstrap(t), topic, topic)
	w := startWorker(t, body)
	w.waitAssigned(t, 8)

	count := func(_ context.Context, ev *agent.Event) error {
		wins := ev.Windows("perminute")
		if len(wins) != 1 {
			return fmt.Errorf("event at %v has %d windows, want 1", ev.Timestamp, len(wins))
		}
		n := 0
		if wins[0].Found {
			n, _ = strconv.Atoi(string(wins[0].Value))
		}
		ev.SetWindowState("perminute", wins[0].Start, []byte(strconv.Itoa(n+1)))
		return nil
	}
	ag, err := agent.New("wcount", count, agent.WithAddr(w.GRPC), agent.WithApp(app), agent.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	w.waitInstances(t, "wcount", 1, 8)

	// 600 events: keys k0..k9, timestamps spread over three minutes.
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	want := map[string]int{} // key@minute -> count
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(t), "acks": "all", "go.delivery.reports": false,
		"partitioner": "murmur2_random"}) // as the Java client, which Get assumes
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 600 {
		key := fmt.Sprintf("k%d", i%10)
		ts := base.Add(time.Duration(i%180) * time.Second)
		want[fmt.Sprintf("%s@%d", key, ts.Truncate(time.Minute).Unix())]++
		if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Key: []byte(key), Value: []byte("x"), Timestamp: ts}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if left := p.Flush(30000); left > 0 {
		t.Fatalf("%d records not acknowledged", left)
	}
	waitCommittedAtEnd(t, w, app, topic)

	tc := eddyv1.NewTableServiceClient(w.conn(t))
	for k, n := range want {
		var key string
		var unix int64
		fmt.Sscanf(k, "%2s@%d", &key, &unix)
		resp, err := tc.Get(context.Background(), &eddyv1.GetRequest{Table: "perminute", Key: []byte(key), WindowStart: timestamppb.New(time.Unix(unix, 0))})
		if err != nil || string(resp.GetValue()) != strconv.Itoa(n) {
			t.Errorf("perminute[%s @ %s] = %q, %v; want %d", key, time.Unix(unix, 0).UTC().Format(time.TimeOnly), resp.GetValue(), err, n)
		}
	}
	// workerctl reads one window too.
	k0 := fmt.Sprintf("k0@%d", base.Unix())
	out, errOut, code := w.ctl(t, "get", "perminute", "k0", "--window-start", strconv.FormatInt(base.UnixMilli(), 10), "-o", "json")
	if code != 0 || !strings.Contains(out, `"value": "`+base64.StdEncoding.EncodeToString([]byte(strconv.Itoa(want[k0])))+`"`) {
		t.Errorf("workerctl get perminute k0 --window-start %d: exit %d, %s %s; want %d", base.UnixMilli(), code, out, errOut, want[k0])
	}
	// workerctl scan lists plain keys with their window starts: k0's three
	// minutes, in time order, with the true counts.
	out, errOut, code = w.ctl(t, "scan", "perminute", "--prefix", "k0", "--all")
	if code != 0 {
		t.Fatalf("workerctl scan perminute: exit %d: %s", code, errOut)
	}
	var rows []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "k0" {
			rows = append(rows, f[1]+"="+f[2])
		}
	}
	var wantRows []string
	for m := range 3 {
		start := base.Add(time.Duration(m) * time.Minute)
		wantRows = append(wantRows, start.UTC().Format(time.RFC3339Nano)+"="+strconv.Itoa(want[fmt.Sprintf("k0@%d", start.Unix())]))
	}
	if strings.Join(rows, " ") != strings.Join(wantRows, " ") || !strings.Contains(out, "WINDOW START") {
		t.Errorf("scan rows %v, want %v:\n%s", rows, wantRows, out)
	}
	if len(want) != 30 {
		t.Errorf("%d (key, minute) pairs, want 30", len(want))
	}
}
