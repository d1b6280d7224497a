package agents_test

import (
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/eddy-streams/eddy/internal/testutil"
	"github.com/eddy-streams/eddy/worker/monitor"
	"github.com/eddy-streams/eddy/worker/tables"
)

// TestFailedStoreWriteIsReported: a table store that refuses writes (a
// full disk) is reported at once as a stall that is an error, counted,
// logged once at Warn; the changes wait in memory, bounded by
// Config.InflightBytes (delivery stops at the cap); the commits go on,
// since the changelog holds the changes; and once the disk takes writes
// again everything lands in the store, the stall ends (logged at Info)
// and events flow again.
func TestFailedStoreWriteIsReported(t *testing.T) {
	r := newFakeRestorer(t)
	close(r.release)
	cfg := tableConfig(r, "")
	mon := monitor.New("app", "", false)
	cfg.Monitor = mon
	cfg.InflightBytes = 4 << 10
	var logs testutil.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	p := &fakeProducer{auto: true}
	h := startWith(t, cfg, p, nil)
	a := h.open("count", "a", 1000)
	h.m.Assigned(tps("in", 0))
	h.send(msg("in", 0, 0, "w", "x"))
	a.reply(a.nextBatch(), set(0, "w", "1"))
	h.waitCommitted("in", 0, 1)
	st := r.store(0)
	waitFor(t, wait, func() string { return "store to hold w=1" }, func() bool {
		v, found, _ := st.Get([]byte("w"))
		return found && string(v) == "1"
	})

	// The disk fills up.
	var full atomic.Bool
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	faulty, err := tables.Open(r.dir, "counts", 0, tables.WithWriteFault(func(string) error {
		if full.Load() {
			return syscall.ENOSPC
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { faulty.Close() })
	full.Store(true)
	h.m.SwapStore("in", 0, "counts", faulty)

	// Each event writes a value of 500 bytes: the cap holds a few.
	value := strings.Repeat("v", 500)
	next := int64(1)
	delivered := 0
	for range 40 {
		h.send(msg("in", 0, next, fmt.Sprintf("k%d", next), "x"))
		next++
		h.settle()
		for _, b := range a.takeBatches() {
			for _, e := range b.Events {
				delivered++
				a.reply(b, set(e.Offset, string(e.Key), value))
			}
		}
	}
	waitFor(t, wait, func() string { return fmt.Sprintf("a stall naming the failed write, have %+v", mon.Stalls()) }, func() bool {
		s := mon.Stalls()
		return len(s) == 1 && s[0].Partition == 0 && s[0].Error &&
			strings.Contains(s[0].Reason, `writing table "counts" partition 0 to its store failed`) &&
			strings.Contains(s[0].Reason, syscall.ENOSPC.Error())
	})
	// Bounded: delivery stopped at the cap, with most events buffered.
	h.settle()
	if held := h.m.InflightBytes(); held < cfg.InflightBytes || held > cfg.InflightBytes+2<<10 {
		t.Errorf("holding %d bytes with the store failing, want the cap %d (plus at most one batch)", held, cfg.InflightBytes)
	}
	if delivered >= 20 {
		t.Errorf("delivered %d of 40 events with the store failing, want delivery to stop at the cap (%d bytes)", delivered, cfg.InflightBytes)
	}
	// The commits went on: the changelog holds the changes.
	h.waitCommitted("in", 0, int64(1+delivered))
	if n := mon.Agent("count").TableWriteErrors.Load(); n < 2 {
		t.Errorf("got %d table write errors counted, want at least 2 (a write at every commit cycle)", n)
	}
	const warn = "writing table changes to the store failed"
	if n := strings.Count(logs.String(), warn); n != 1 {
		t.Errorf("logged %q %d times, want once per episode:\n%s", warn, n, logs.String())
	}

	// Space is back: the changes land, the stall ends, events flow.
	full.Store(false)
	for delivered < 40 {
		h.settle()
		bs := a.takeBatches()
		for _, b := range bs {
			for _, e := range b.Events {
				delivered++
				a.reply(b, set(e.Offset, string(e.Key), value))
			}
		}
		if len(bs) == 0 {
			waitFor(t, wait, func() string { return fmt.Sprintf("more deliveries (have %d of 40)", delivered) }, func() bool {
				return h.m.InflightBytes() < cfg.InflightBytes
			})
		}
	}
	h.waitCommitted("in", 0, 41)
	waitFor(t, wait, func() string { return fmt.Sprintf("the stall to end, have %+v", mon.Stalls()) }, func() bool {
		return len(mon.Stalls()) == 0
	})
	waitFor(t, wait, func() string { return "every value in the store" }, func() bool {
		for off := int64(1); off <= 40; off++ {
			v, found, err := faulty.Get([]byte(fmt.Sprintf("k%d", off)))
			if err != nil || !found || string(v) != value {
				return false
			}
		}
		return true
	})
	if got := logs.String(); !strings.Contains(got, "writing table changes to the store works again") {
		t.Errorf("the recovery is not logged:\n%s", got)
	}
}
