package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/worker/embedded"
)

// startBroker starts the in-process dev broker with the topics created.
func startBroker(t *testing.T, topics ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := embedded.Start(ctx, nil, embedded.Options{})
	if err != nil {
		t.Fatalf("start embedded broker: %v", err)
	}
	t.Cleanup(b.Close)
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": b.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var specs []kafka.TopicSpecification
	for _, name := range topics {
		specs = append(specs, kafka.TopicSpecification{Topic: name, NumPartitions: 2, ReplicationFactor: 1})
	}
	res, err := admin.CreateTopics(ctx, specs)
	if err != nil {
		t.Fatalf("create topics: %v", err)
	}
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError {
			t.Fatalf("create topic %s: %v", r.Topic, r.Error)
		}
	}
	return b.Addr()
}

func runOrders(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code = run(ctx, args, &out, &errOut, func(string) string { return "" })
	return code, out.String(), errOut.String()
}

func TestProduceConsume(t *testing.T) {
	brokers := startBroker(t, "orders")

	code, out, stderr := runOrders(t, "produce", "--brokers", brokers, "-n", "20")
	if code != exitOK {
		t.Fatalf("produce: exit code %v, stderr %q", code, stderr)
	}
	if want := "produced 20 orders to orders (2 for region mars"; !strings.Contains(out, want) {
		t.Errorf("produce output: got %q, want it to contain %q", out, want)
	}

	code, out, stderr = runOrders(t, "consume", "--brokers", brokers, "--topics", "orders", "-n", "20", "--timeout", "30s")
	if code != exitOK {
		t.Fatalf("consume: exit code %v, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	slices.Sort(lines)
	if len(lines) != 20 {
		t.Fatalf("consume: got %d lines, want 20:\n%s", len(lines), out)
	}
	want := []string{
		`orders order-001 {"id":"order-001","region":"us","amount":12.5}`,
		`orders order-002 {"id":"order-002","region":"eu","amount":15}`,
		`orders order-007 {"id":"order-007","region":"mars","amount":27.5}`,
	}
	for _, w := range want {
		if !slices.Contains(lines, w) {
			t.Errorf("consume output lacks %q; got:\n%s", w, out)
		}
	}

	// Fewer records than asked for within the timeout is an error.
	code, _, stderr = runOrders(t, "consume", "--brokers", brokers, "--topics", "orders", "-n", "21", "--timeout", "3s")
	if code != exitError || !strings.Contains(stderr, "read 20 of 21 records") {
		t.Errorf("consume -n 21: exit code %v, stderr %q; want %v and a count", code, stderr, exitError)
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		want int
	}{
		{nil, exitUsage},
		{[]string{"eat"}, exitUsage},
		{[]string{"consume"}, exitUsage},
		{[]string{"produce", "-n", "-1"}, exitUsage},
		{[]string{"produce", "extra"}, exitUsage},
		{[]string{"help"}, exitOK},
		{[]string{"produce", "-h"}, exitOK},
	}
	for _, tt := range tests {
		if code, _, stderr := runOrders(t, tt.args...); code != tt.want {
			t.Errorf("orders %v: exit code %v, want %v (stderr %q)", tt.args, code, tt.want, stderr)
		}
	}
}

func TestSampleOrders(t *testing.T) {
	var mars []string
	for i := 1; i <= 20; i++ {
		if o := sampleOrder(i); o.Region == "mars" {
			mars = append(mars, o.ID)
		}
	}
	if want := []string{"order-007", "order-017"}; !slices.Equal(mars, want) {
		t.Errorf("mars orders: got %v, want %v", mars, want)
	}
}
