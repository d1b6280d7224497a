package transport_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/worker/transport"
)

// partitionCount asks the broker, through a client that is not the code
// under test, how many partitions topic has (0 if it does not exist).
func partitionCount(t testing.TB, topic string) int {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(t),
		"group.id":          kafkatest.Group(t),
	})
	if err != nil {
		t.Fatalf("verifier consumer: %v", err)
	}
	defer c.Close()
	md, err := c.GetMetadata(&topic, false, 10000)
	if err != nil {
		t.Fatalf("GetMetadata(%q): %v", topic, err)
	}
	tm, ok := md.Topics[topic]
	if !ok || tm.Error.Code() == kafka.ErrUnknownTopicOrPart {
		return 0
	}
	return len(tm.Partitions)
}

func TestPing(t *testing.T) {
	a := newAdmin(t, testConfig(t))
	if err := a.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func TestPingUnreachable(t *testing.T) {
	cfg := transport.DefaultConfig()
	cfg.Brokers = "127.0.0.1:1" // nothing listens on port 1
	cfg.ReachTimeout = 3 * time.Second
	a := newAdmin(t, cfg)

	start := time.Now()
	err := a.Ping(context.Background())
	took := time.Since(start)
	if err == nil {
		t.Fatal("Ping to 127.0.0.1:1 succeeded, want an error")
	}
	t.Logf("Ping error after %s: %v", took, err)
	if slack := 2 * time.Second; took > cfg.ReachTimeout+slack {
		t.Errorf("Ping took %s, want at most ReachTimeout %s (+%s)", took, cfg.ReachTimeout, slack)
	}
	const want = "cannot reach Kafka brokers 127.0.0.1:1 within 3s: "
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Ping error = %q, want prefix %q", err, want)
	}
	var ue *transport.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("Ping error is %T, want *transport.UnreachableError", err)
	}
	if ue.Brokers != cfg.Brokers || ue.Timeout != cfg.ReachTimeout {
		t.Errorf("UnreachableError = {%q, %s}, want {%q, %s}", ue.Brokers, ue.Timeout, cfg.Brokers, cfg.ReachTimeout)
	}
	// The cause is librdkafka's own report of the failed connection.
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		t.Errorf("Ping error cause %v is not a kafka.Error", ue.Err)
	}
	if len(a.Errors().Recent()) == 0 {
		t.Error("ErrorLog is empty after failing to connect, want the connection errors")
	}
}

func TestPingContextCancelled(t *testing.T) {
	cfg := transport.DefaultConfig()
	cfg.Brokers = "127.0.0.1:1"
	a := newAdmin(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := a.Ping(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping with expiring context = %v, want context.DeadlineExceeded", err)
	}
}

func TestEnsureTopics(t *testing.T) {
	cfg := testConfig(t)
	a := newAdmin(t, cfg)
	ctx := context.Background()

	name := fmt.Sprintf("ensure-%d", rand.Uint64())
	compacted := name + "-changelog"
	t.Cleanup(func() {
		if err := a.DeleteTopics(context.Background(), []string{name, compacted}); err != nil {
			t.Errorf("DeleteTopics: %v", err)
		}
	})
	specs := []transport.TopicSpec{
		{Name: name, Partitions: 3},
		{Name: compacted, Partitions: 2, ReplicationFactor: 1, Config: map[string]string{"cleanup.policy": "compact"}},
	}
	if err := a.EnsureTopics(ctx, specs); err != nil {
		t.Fatalf("EnsureTopics (create): %v", err)
	}
	if got := partitionCount(t, name); got != 3 {
		t.Errorf("%s has %d partitions, want 3", name, got)
	}
	if got := partitionCount(t, compacted); got != 2 {
		t.Errorf("%s has %d partitions, want 2", compacted, got)
	}

	// Idempotent.
	if err := a.EnsureTopics(ctx, specs); err != nil {
		t.Fatalf("EnsureTopics (again): %v", err)
	}

	// An existing topic with another partition count is an error that
	// names the topic and both counts.
	existing := kafkatest.Topic(t, 2)
	err := a.EnsureTopics(ctx, []transport.TopicSpec{{Name: name, Partitions: 3}, {Name: existing, Partitions: 4}})
	var pm *transport.PartitionMismatchError
	if !errors.As(err, &pm) {
		t.Fatalf("EnsureTopics with wrong partition count = %v, want *PartitionMismatchError", err)
	}
	if pm.Topic != existing || pm.Want != 4 || pm.Got != 2 {
		t.Errorf("PartitionMismatchError = %+v, want {Topic:%s Want:4 Got:2}", *pm, existing)
	}
	for _, s := range []string{existing, "2 partitions", "4 are declared"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if got := partitionCount(t, existing); got != 2 {
		t.Errorf("%s has %d partitions after the mismatch, want 2 (unchanged)", existing, got)
	}
}

func TestEnsureTopicsValidates(t *testing.T) {
	a := newAdmin(t, testConfig(t))
	for _, specs := range [][]transport.TopicSpec{
		{{Name: "", Partitions: 1}},
		{{Name: "x", Partitions: 0}},
		{{Name: "x", Partitions: 1}, {Name: "x", Partitions: 1}},
	} {
		if err := a.EnsureTopics(context.Background(), specs); err == nil {
			t.Errorf("EnsureTopics(%+v) = nil, want a validation error", specs)
		}
	}
}

func TestPartitionCounts(t *testing.T) {
	a := newAdmin(t, testConfig(t))
	grow, fixed := kafkatest.Topic(t, 2), kafkatest.Topic(t, 3)
	missing := fmt.Sprintf("missing-%d", rand.Uint64())
	ctx := context.Background()
	got, err := a.PartitionCounts(ctx, []string{grow, fixed, missing})
	if err != nil {
		t.Fatalf("PartitionCounts: %v", err)
	}
	want := map[string]int{grow: 2, fixed: 3}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("PartitionCounts = %v, want %v (a missing topic left out)", got, want)
	}

	// A topic grown behind the worker's back shows its new count.
	ac, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	res, err := ac.CreatePartitions(ctx, []kafka.PartitionsSpecification{{Topic: grow, IncreaseTo: 5}})
	if err != nil || res[0].Error.Code() != kafka.ErrNoError {
		t.Fatalf("CreatePartitions: %v %v", err, res)
	}
	waitFor(t, 10*time.Second, func() string {
		return fmt.Sprintf("PartitionCounts after growing %s to 5 = %v, %v", grow, got, err)
	}, func() bool {
		got, err = a.PartitionCounts(ctx, []string{grow})
		return err == nil && got[grow] == 5
	})
}
