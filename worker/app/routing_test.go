package app

import (
	"slices"
	"strings"
	"testing"

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
		want = append(want, s.String())
	}
	if !slices.Equal(allStateNames, want) {
		t.Errorf("allStateNames = %v, want %v", allStateNames, want)
	}
}
