package tables_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/transport"
)

// benchCount reads a positive count from the environment variable env,
// else returns def.
func benchCount(b *testing.B, env string, def int) int {
	if s := os.Getenv(env); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive number", env, s)
		}
		return n
	}
	return def
}

// benchRecords is the changelog size of BenchmarkRestore:
// EDDY_BENCH_RESTORE_RECORDS, default 200000.
func benchRecords(b *testing.B) int { return benchCount(b, "EDDY_BENCH_RESTORE_RECORDS", 200_000) }

// BenchmarkRestore restores one changelog partition of distinct keys
// (16-byte keys, 100-byte values) from scratch into a new data directory
// per iteration, on the real broker, and reports changelog records
// restored per second and the process's peak RSS.
func BenchmarkRestore(b *testing.B) {
	n := benchRecords(b)
	e := newEnv(b, func(c *tables.Config) {
		// EDDY_BENCH_OVERRIDES="prop=value,..." tries librdkafka settings.
		if s := os.Getenv("EDDY_BENCH_OVERRIDES"); s != "" {
			c.Kafka.Overrides = map[string]string{}
			for _, kv := range strings.Split(s, ",") {
				k, v, _ := strings.Cut(kv, "=")
				c.Kafka.Overrides[k] = v
			}
		}
	})
	cl := e.changelog("bench", 1, nil)
	value := bytes.Repeat([]byte("v"), 100)
	for start := 0; start < n; start += 100_000 {
		muts := make([]tables.Mutation, min(100_000, n-start))
		for i := range muts {
			muts[i] = tables.Mutation{Key: fmt.Appendf(nil, "key-%012d", start+i), Value: value}
		}
		e.produce(cl, 0, muts)
	}
	ctx := context.Background()
	var records int64
	for b.Loop() {
		cfg := e.cfg
		cfg.Dir = b.TempDir()
		r, err := tables.NewRestorer(cfg)
		if err != nil {
			b.Fatal(err)
		}
		st, p, err := r.Restore(ctx, "bench", 0)
		if err != nil {
			b.Fatal(err)
		}
		if p.Records != int64(n) {
			b.Fatalf("restored %d records, want %d", p.Records, n)
		}
		records += p.Records
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(0, "ns/op")
	reportPeakRSS(b)
}

// benchPartitionRecords is the records per partition of
// BenchmarkRestorePartitions: EDDY_BENCH_PARTITION_RECORDS, default 20000.
func benchPartitionRecords(b *testing.B) int {
	return benchCount(b, "EDDY_BENCH_PARTITION_RECORDS", 20_000)
}

// BenchmarkRestorePartitions restores 8 and 64 partitions of one changelog
// at once (one Restore per partition, all started together, as a worker
// taking that many partitions does), each partition holding
// EDDY_BENCH_PARTITION_RECORDS distinct keys (16-byte keys, 100-byte
// values), from scratch into a new data directory per iteration. It
// reports the records restored per second of the whole (records/s), the
// process's peak thread count during the restores (peak-threads: each
// librdkafka client runs a thread per broker plus its own), and peak RSS.
func BenchmarkRestorePartitions(b *testing.B) {
	per := benchPartitionRecords(b)
	for _, parts := range []int{8, 64} {
		b.Run(strconv.Itoa(parts), func(b *testing.B) {
			e := newEnv(b)
			cl := e.changelog("bench", parts, nil)
			value := bytes.Repeat([]byte("v"), 100)
			var recs []transport.Record
			for p := range parts {
				muts := make([]tables.Mutation, per)
				for i := range muts {
					muts[i] = tables.Mutation{Key: fmt.Appendf(nil, "k%02d-%012d", p, i), Value: value}
				}
				r, err := cl.Records(int32(p), muts)
				if err != nil {
					b.Fatal(err)
				}
				recs = append(recs, r...)
			}
			produceRecords(b, recs)
			recs = nil
			ctx := context.Background()
			var records int64
			var peakThreads int
			for b.Loop() {
				cfg := e.cfg
				cfg.Dir = b.TempDir()
				r, err := tables.NewRestorer(cfg)
				if err != nil {
					b.Fatal(err)
				}
				stop := make(chan struct{})
				sampled := make(chan int)
				go func() { sampled <- samplePeakThreads(stop) }()
				var wg sync.WaitGroup
				var mu sync.Mutex
				var firstErr error
				for p := range parts {
					wg.Add(1)
					go func() {
						defer wg.Done()
						st, prog, err := r.Restore(ctx, "bench", int32(p))
						if err == nil && prog.Records != int64(per) {
							err = fmt.Errorf("partition %d: restored %d records, want %d", p, prog.Records, per)
						}
						if st != nil {
							err = errors.Join(err, st.Close())
						}
						mu.Lock()
						defer mu.Unlock()
						if err != nil && firstErr == nil {
							firstErr = err
						}
						records += prog.Records
					}()
				}
				wg.Wait()
				close(stop)
				peakThreads = max(peakThreads, <-sampled)
				if firstErr != nil {
					b.Fatal(firstErr)
				}
				closeRestorer(r)
			}
			b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(peakThreads), "peak-threads")
			reportPeakRSS(b)
		})
	}
}

// samplePeakThreads returns the highest thread count of the process seen
// every 10ms until stop closes (0 where /proc is missing).
func samplePeakThreads(stop <-chan struct{}) int {
	peak := 0
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if ents, err := os.ReadDir("/proc/self/task"); err == nil {
			peak = max(peak, len(ents))
		}
		select {
		case <-stop:
			return peak
		case <-tick.C:
		}
	}
}

// BenchmarkStoreMemory applies 1M distinct keys (word-count shaped: 12-byte
// keys, 8-byte values) to a store in batches of 10000 and reports the Go
// heap the store holds afterwards, per key and in total, and the process's
// peak RSS.
func BenchmarkStoreMemory(b *testing.B) {
	const keys, batch = 1_000_000, 10_000
	var heap uint64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		st, err := tables.Open(b.TempDir(), "mem", 0)
		if err != nil {
			b.Fatal(err)
		}
		muts := make([]tables.Mutation, batch)
		for i := 0; i < keys; i += batch {
			for j := range muts {
				muts[j] = tables.Mutation{Key: fmt.Appendf(nil, "word-%07d", i+j), Value: []byte("00000042")}
			}
			if err := st.Apply(muts, int64(i+batch-1)); err != nil {
				b.Fatal(err)
			}
		}
		clear(muts)
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap = after.HeapAlloc - before.HeapAlloc
		if n, err := st.Count(); err != nil || n != keys {
			b.Fatalf("Count = %d, %v", n, err)
		}
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*keys), "ns/key")
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(heap)/(1<<20), "MiB-heap")
	b.ReportMetric(float64(heap)/keys, "heap-B/key")
	reportPeakRSS(b)
}

// reportPeakRSS reports VmHWM from /proc/self/status (Linux).
func reportPeakRSS(b *testing.B) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err == nil {
				b.ReportMetric(float64(kb)/1024, "MiB-peak-RSS")
			}
			return
		}
	}
}

// closeRestorer releases what a Restorer holds, for Restorers that hold
// something.
func closeRestorer(r any) {
	if c, ok := r.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}
