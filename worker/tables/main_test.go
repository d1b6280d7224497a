package tables_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/internal/testutil"
	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/transport"
)

// TestMain runs the package's tests against one real Apache Kafka broker.
func TestMain(m *testing.M) { kafkatest.Main(m) }

// waitTimeout is how long tests wait for Kafka to do something.
var waitTimeout = 60 * time.Second * raceFactor

// The helpers these tests share with other packages (internal/testutil):
// testLogger logs to the buffer it returns.
const raceFactor = testutil.RaceFactor

var (
	waitFor    = testutil.WaitFor[func() string]
	testLogger = testutil.BufferLogger
)

func kafkaConfig(t testing.TB) transport.Config {
	cfg := transport.DefaultConfig()
	cfg.Brokers = kafkatest.Bootstrap(t)
	cfg.ClientID = "eddy-tables-test"
	return cfg
}

// env is one test's app: a unique app name (so its changelog topics are
// its own), a data directory, and a Restorer over both.
type env struct {
	t     testing.TB
	app   string
	dir   string
	logs  *testutil.Buffer
	admin *transport.Admin
	cfg   tables.Config
	r     *tables.Restorer
}

func newEnv(t testing.TB, mod ...func(*tables.Config)) *env {
	t.Helper()
	logger, logs := testLogger(t)
	e := &env{t: t, app: kafkatest.Group(t), dir: t.TempDir(), logs: logs}
	e.cfg = tables.Config{App: e.app, Dir: e.dir, Kafka: kafkaConfig(t), Logger: logger}
	for _, m := range mod {
		m(&e.cfg)
	}
	r, err := tables.NewRestorer(e.cfg)
	if err != nil {
		t.Fatalf("NewRestorer: %v", err)
	}
	e.r = r
	t.Cleanup(func() { _ = r.Close() }) // after the stores and standbys (cleanups run last first)
	a, err := transport.NewAdmin(kafkaConfig(t))
	if err != nil {
		t.Fatalf("NewAdmin: %v", err)
	}
	t.Cleanup(a.Close)
	e.admin = a
	return e
}

// changelog creates table's changelog topic (compacted, through
// Changelog.Spec) with extra topic configs, and deletes it at cleanup.
func (e *env) changelog(table string, partitions int, extra map[string]string) tables.Changelog {
	e.t.Helper()
	cl := tables.Changelog{App: e.app, Table: table}
	spec := cl.Spec(partitions, 0)
	maps.Copy(spec.Config, extra)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := e.admin.EnsureTopics(ctx, []transport.TopicSpec{spec}); err != nil {
		e.t.Fatalf("EnsureTopics(%s): %v", spec.Name, err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := e.admin.DeleteTopics(ctx, []string{spec.Name}); err != nil {
			e.t.Errorf("DeleteTopics(%s): %v", spec.Name, err)
		}
	})
	return cl
}

// produce writes muts to partition p of cl through Changelog.Records and a
// transport.Producer, and waits until Kafka acknowledged every record.
func (e *env) produce(cl tables.Changelog, p int32, muts []tables.Mutation) {
	e.t.Helper()
	recs, err := cl.Records(p, muts)
	if err != nil {
		e.t.Fatalf("Records: %v", err)
	}
	produceRecords(e.t, recs)
}

func produceRecords(t testing.TB, recs []transport.Record) {
	t.Helper()
	cfg := kafkaConfig(t)
	cfg.Linger = 20 * time.Millisecond
	prod, err := transport.NewProducer(cfg)
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	wg.Add(len(recs))
	for _, rec := range recs {
		prod.Produce(rec, func(err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait() // Produce calls every callback exactly once
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := prod.Close(ctx); err != nil {
		t.Fatalf("Producer.Close: %v", err)
	}
	if firstErr != nil {
		t.Fatalf("produce: %v", firstErr)
	}
}

// watermarks asks the broker, through a client that is not the code under
// test, for a partition's low and high watermarks.
func watermarks(t testing.TB, topic string, p int32) (low, high int64) {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(t),
		"group.id":          kafkatest.Group(t),
	})
	if err != nil {
		t.Fatalf("verifier consumer: %v", err)
	}
	defer c.Close()
	low, high, err = c.QueryWatermarkOffsets(topic, p, 10000)
	if err != nil {
		t.Fatalf("QueryWatermarkOffsets(%s, %d): %v", topic, p, err)
	}
	return low, high
}

// mutations returns n deterministic mutations over about n/3 keys, with
// overwrites, deletes (every 7th), empty values (every 11th) and binary
// keys; prefix tells runs apart.
func mutations(seed uint64, prefix string, n int) []tables.Mutation {
	rng := rand.New(rand.NewPCG(seed, 42))
	keys := max(n/3, 1)
	out := make([]tables.Mutation, n)
	for i := range out {
		k := rng.IntN(keys)
		key := fmt.Appendf(nil, "%s-key-%d", prefix, k)
		if k%5 == 0 {
			key = append(key, 0x00, 0xFF, '\r', '\n', byte(k))
		}
		switch {
		case i%7 == 3:
			out[i] = tables.Mutation{Key: key, Delete: true}
		case i%11 == 5:
			out[i] = tables.Mutation{Key: key, Value: []byte{}}
		default:
			out[i] = tables.Mutation{Key: key, Value: fmt.Appendf(nil, "value-%d-%d", i, rng.Uint32())}
		}
	}
	return out
}

// fold applies muts in order to state (nil: a new map) and returns it.
func fold(state map[string][]byte, muts ...[]tables.Mutation) map[string][]byte {
	if state == nil {
		state = map[string][]byte{}
	}
	for _, batch := range muts {
		for _, m := range batch {
			if m.Delete {
				delete(state, string(m.Key))
			} else {
				state[string(m.Key)] = bytes.Clone(m.Value)
				if state[string(m.Key)] == nil {
					state[string(m.Key)] = []byte{}
				}
			}
		}
	}
	return state
}

// contents reads the whole store.
func contents(t testing.TB, st *tables.Store) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := st.Range(nil, nil, func(k, v []byte) bool {
		out[string(k)] = v
		return true
	})
	if err != nil {
		t.Fatalf("Range: %v", err)
	}
	return out
}

// checkState fails the test unless st holds exactly want (values compared
// bytewise; an empty value is present).
func checkState(t testing.TB, st *tables.Store, want map[string][]byte) {
	t.Helper()
	got := contents(t, st)
	var diffs []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("missing %q (want %q)", k, w))
		case !bytes.Equal(g, w):
			diffs = append(diffs, fmt.Sprintf("%q = %q, want %q", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %q = %q", k, g))
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		if len(diffs) > 10 {
			diffs = append(diffs[:10], fmt.Sprintf("... %d more", len(diffs)-10))
		}
		t.Fatalf("store differs from the fold of the changelog (%d keys, want %d):\n  %s",
			len(got), len(want), strings.Join(diffs, "\n  "))
	}
	n, err := st.Count()
	if err != nil {
		t.Fatalf("Count: %v", err)
	}
	if n != len(want) {
		t.Fatalf("Count() = %d, want %d", n, len(want))
	}
}

// restore runs Restore with a test deadline and fails on error.
func (e *env) restore(table string, p int32) (*tables.Store, tables.Progress) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	st, prog, err := e.r.Restore(ctx, table, p)
	if err != nil {
		e.t.Fatalf("Restore(%s, %d): %v", table, p, err)
	}
	e.t.Cleanup(func() { _ = st.Close() })
	return st, prog
}

func closeStore(t testing.TB, st *tables.Store) {
	t.Helper()
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
