package app

import (
	"slices"
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eddy-streams/eddy/internal/testutil"
	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/transport"
)

// The accepted names of topics[].partitioner are transport's partitioners.
func TestPartitionerNamesAgree(t *testing.T) {
	var names []string
	for _, p := range transport.Partitioners {
		names = append(names, p.String())
	}
	if !slices.Equal(names, config.Partitioners) {
		t.Errorf("config accepts %v, transport has %v", config.Partitioners, names)
	}
}

func routingApp(t *testing.T, partitioner string) (*App, *testutil.Buffer) {
	t.Helper()
	cfg := config.DefaultConfig()
	cfg.App = "app"
	cfg.Topics = []config.Topic{{Name: "words", Partitions: 8, Partitioner: partitioner}}
	cfg.Agents = []config.Agent{{Name: "count", Topics: []string{"words"}}}
	log, buf := testutil.BufferLogger(t)
	return New(cfg, Options{Logger: log}), buf
}

// Records whose key the topic's partitioner puts on another partition are
// counted; the first is logged once, naming the partitioner that fits.
// Keyless records, and those where the key fits, are not counted.
func TestMisroutedRecordsCountedAndWarnedOnce(t *testing.T) {
	a, logs := routingApp(t, "murmur2_random")
	checks := a.newRouteChecks()
	crc := func(key string) int32 { p, _ := transport.ConsistentRandom.KeyPartition([]byte(key), 8); return p }
	mur := func(key string) int32 { p, _ := transport.Murmur2Random.KeyPartition([]byte(key), 8); return p }
	var keys []string // keys the two partitioners place apart
	for i := 0; len(keys) < 3; i++ {
		if k := "k" + string(rune('a'+i)); crc(k) != mur(k) {
			keys = append(keys, k)
		}
	}
	checks.check(&transport.Message{Topic: "words", Partition: 3})                          // no key
	checks.check(&transport.Message{Topic: "words", Partition: mur("x"), Key: []byte("x")}) // where it belongs
	checks.check(&transport.Message{Topic: "other", Partition: 0, Key: []byte("x")})        // not a source topic
	for _, k := range keys {
		checks.check(&transport.Message{Topic: "words", Partition: crc(k), Key: []byte(k)}) // written by kcat
	}
	if got := a.mon.Misrouted("words").Load(); got != 3 {
		t.Errorf("eddy_misrouted_records_total{topic=words} = %d, want 3", got)
	}
	out := logs.String()
	if n := strings.Count(out, "records are not on the partition their key hashes to"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, out)
	}
	for _, want := range []string{"topic=words", "partitioner=murmur2_random", "key=" + keys[0], "fits partitioner consistent_random"} {
		if !strings.Contains(out, want) {
			t.Errorf("warning lacks %q:\n%s", want, out)
		}
	}
}

// With the partitioner declared that wrote the records, nothing is
// misrouted, and a table read finds each key's partition by it.
func TestDeclaredPartitionerFits(t *testing.T) {
	a, logs := routingApp(t, "consistent_random")
	checks := a.newRouteChecks()
	for _, k := range []string{"apple", "pear", "plum", "fig"} {
		p, _ := transport.ConsistentRandom.KeyPartition([]byte(k), 8)
		checks.check(&transport.Message{Topic: "words", Partition: p, Key: []byte(k)})
		if got := a.keyPartition("words", []byte(k), 8); got != p {
			t.Errorf("keyPartition(words, %s) = %d, want %d", k, got, p)
		}
	}
	if got := a.mon.Misrouted("words").Load(); got != 0 || logs.String() != "" {
		t.Errorf("misrouted %d, logs %q; want 0 and none", got, logs.String())
	}
}

// eddy_worker_state's state set names every state, in lifecycle order.
func TestAllStateNames(t *testing.T) {
	var want []string
	for s := StateStarting; s <= StateStopped; s++ {
		if _, ok := stateNames[s]; ok { // 2 is unused (was RECOVERING)
			want = append(want, s.String())
		}
	}
	if !slices.Equal(allStateNames, want) {
		t.Errorf("allStateNames = %v, want %v", allStateNames, want)
	}
}

// Every Kafka error status lists is counted in eddy_kafka_errors_total,
// labelled with librdkafka's symbolic name of its code, not its text.
func TestKafkaErrorsCounted(t *testing.T) {
	a, _ := routingApp(t, "")
	l := a.newErrorLog()
	for range 3 {
		l.Add(transport.KafkaError{Client: "consumer", Code: kafka.ErrAllBrokersDown, CodeName: kafka.ErrAllBrokersDown.String(), Partition: -1})
	}
	l.Add(transport.KafkaError{Client: "producer", Code: kafka.ErrUnknownTopicOrPart, Topic: "words", Partition: 3})
	if got := recentErrors(l); len(got) != 2 {
		t.Fatalf("status lists %d errors, want 2", len(got))
	}
	want := `
# HELP eddy_kafka_errors_total Errors reported by the Kafka clients (those status lists), by librdkafka's symbolic error name, e.g. _ALL_BROKERS_DOWN.
# TYPE eddy_kafka_errors_total counter
eddy_kafka_errors_total{code="UNKNOWN_TOPIC_OR_PART"} 1
eddy_kafka_errors_total{code="_ALL_BROKERS_DOWN"} 3
`
	if err := promtestutil.GatherAndCompare(a.mon.Registry(), strings.NewReader(want), "eddy_kafka_errors_total"); err != nil {
		t.Error(err)
	}
}
