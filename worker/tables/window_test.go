package tables_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
)

func ms(v int64) time.Time { return time.UnixMilli(v) }

func startsMs(w tables.Window, ts int64) []int64 {
	var out []int64
	for _, s := range w.Starts(ms(ts)) {
		out = append(out, s.UnixMilli())
	}
	return out
}

func TestWindowStarts(t *testing.T) {
	t.Parallel()
	minute := time.Minute
	tumbling, err := tables.NewWindow(tables.Tumbling, minute, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hop, err := tables.NewWindow(tables.Hopping, 10*time.Second, 5*time.Second, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	odd := tables.Window{Size: 10 * time.Millisecond, Step: 3 * time.Millisecond}
	for _, tc := range []struct {
		name string
		w    tables.Window
		ts   int64
		want []int64
	}{
		{"tumbling inside", tumbling, 754_789, []int64{720_000}},
		{"tumbling at a start", tumbling, 720_000, []int64{720_000}},
		{"tumbling just before the end", tumbling, 779_999, []int64{720_000}},
		{"tumbling at zero", tumbling, 0, []int64{0}},
		{"tumbling before the epoch", tumbling, -1, []int64{-60_000}},
		{"tumbling one window before the epoch", tumbling, -60_000, []int64{-60_000}},
		{"hopping", hop, 12_000, []int64{5_000, 10_000}},
		{"hopping at a start", hop, 10_000, []int64{5_000, 10_000}},
		{"hopping at zero", hop, 0, []int64{-5_000, 0}},
		{"hopping before the epoch", hop, -1, []int64{-10_000, -5_000}},
		{"size not a multiple of step", odd, 10, []int64{3, 6, 9}},
		{"size not a multiple of step 2", odd, 11, []int64{3, 6, 9}},
		{"size not a multiple of step 3", odd, 12, []int64{3, 6, 9, 12}},
	} {
		if got := startsMs(tc.w, tc.ts); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Starts(%d) = %v, want %v", tc.name, tc.ts, got, tc.want)
		}
	}
}

// TestWindowStartsExhaustive checks Starts against the definition (window
// k covers [k*step, k*step+size)) for many sizes, steps and times.
func TestWindowStartsExhaustive(t *testing.T) {
	t.Parallel()
	for size := int64(1); size <= 12; size++ {
		for step := int64(1); step <= size; step++ {
			w := tables.Window{Size: time.Duration(size) * time.Millisecond, Step: time.Duration(step) * time.Millisecond}
			for ts := int64(-40); ts <= 40; ts++ {
				var want []int64
				for k := int64(-100); k <= 100; k++ {
					if s := k * step; s <= ts && ts < s+size {
						want = append(want, s)
					}
				}
				if got := startsMs(w, ts); !slices.Equal(got, want) {
					t.Fatalf("size %d step %d: Starts(%d) = %v, want %v", size, step, ts, got, want)
				}
			}
		}
	}
}

func TestWindowExpired(t *testing.T) {
	t.Parallel()
	w := tables.Window{Size: time.Minute, Expires: time.Hour}
	start := ms(600_000)
	for _, tc := range []struct {
		now  time.Time
		want bool
	}{
		{start, false},
		{w.End(start), false},
		{w.End(start).Add(time.Hour - time.Millisecond), false},
		{w.End(start).Add(time.Hour), true},
		{w.End(start).Add(2 * time.Hour), true},
	} {
		if got := w.Expired(start, tc.now); got != tc.want {
			t.Errorf("Expired(start, start+%s) = %v, want %v", tc.now.Sub(start), got, tc.want)
		}
	}
}

func TestNewWindowErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind                string
		size, step, expires time.Duration
	}{
		{"sliding", time.Minute, 0, time.Hour},
		{tables.Tumbling, time.Minute, time.Second, time.Hour},
		{tables.Hopping, time.Minute, 0, time.Hour},
		{tables.Hopping, time.Minute, 2 * time.Minute, time.Hour},
		{tables.Tumbling, 0, 0, time.Hour},
		{tables.Tumbling, time.Microsecond, 0, time.Hour},
		{tables.Tumbling, 1500 * time.Microsecond, 0, time.Hour},
		{tables.Hopping, time.Minute, 1500 * time.Microsecond, time.Hour},
		{tables.Tumbling, time.Minute, 0, -time.Second},
	} {
		if w, err := tables.NewWindow(tc.kind, tc.size, tc.step, tc.expires); err == nil {
			t.Errorf("NewWindow(%q, %s, %s, %s) = %+v, want an error", tc.kind, tc.size, tc.step, tc.expires, w)
		}
	}
	w, err := tables.NewWindow(tables.Tumbling, time.Minute, time.Minute, time.Hour)
	if err != nil || w.IsHopping() || w.Step != time.Minute {
		t.Errorf("tumbling with step = size: %+v, %v", w, err)
	}
	w, err = tables.NewWindow(tables.Hopping, time.Minute, 10*time.Second, time.Hour)
	if err != nil || !w.IsHopping() {
		t.Errorf("hopping: %+v, %v", w, err)
	}
}

func TestWindowKeyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, key := range append(binaryKeys, []byte{}, []byte{0x00, 0x01}, []byte{0x00, 0xFF}, []byte{0x01, 0x00}) {
		for _, start := range []int64{0, 1, -1, 1_700_000_000_000, -1 << 62, 1<<62 - 1} {
			wk := tables.WindowKey(key, ms(start))
			k, s, err := tables.SplitWindowKey(wk)
			if err != nil || !bytes.Equal(k, key) || s.UnixMilli() != start {
				t.Errorf("SplitWindowKey(WindowKey(%q, %d)) = %q, %d, %v", key, start, k, s.UnixMilli(), err)
			}
			if !bytes.HasPrefix(wk, tables.WindowKeyPrefix(key)) || !bytes.HasPrefix(wk, tables.WindowScanPrefix(key)) {
				t.Errorf("WindowKey(%q, %d) = %x lacks its prefixes", key, start, wk)
			}
		}
	}
	for _, bad := range [][]byte{nil, []byte("abc"), {'a', 0x00}, {'a', 0x00, 0x02, 1, 2, 3, 4, 5, 6, 7, 8}, {'a', 0x00, 0x01, 1, 2, 3}} {
		if _, _, err := tables.SplitWindowKey(bad); !errors.Is(err, tables.ErrWindowKey) {
			t.Errorf("SplitWindowKey(%x): %v, want ErrWindowKey", bad, err)
		}
	}
}

// TestWindowKeyOrder: window keys sort by key (bytewise), then start; a
// key's prefix matches its own windows only; a scan prefix matches the
// windows of every key it prefixes.
func TestWindowKeyOrder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 7))
	alphabet := []byte{0x00, 0x01, 0x02, 'a', 0xFE, 0xFF}
	randKey := func() []byte {
		k := make([]byte, rng.IntN(4))
		for i := range k {
			k[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return k
	}
	starts := []int64{-1 << 40, -60_000, -1, 0, 1, 60_000, 1 << 40}
	for range 20000 {
		k1, k2 := randKey(), randKey()
		s1, s2 := starts[rng.IntN(len(starts))], starts[rng.IntN(len(starts))]
		e1, e2 := tables.WindowKey(k1, ms(s1)), tables.WindowKey(k2, ms(s2))
		want := bytes.Compare(k1, k2)
		if want == 0 {
			want = cmpInt(s1, s2)
		}
		if got := bytes.Compare(e1, e2); got != want {
			t.Fatalf("order of (%x,%d) vs (%x,%d): encoded compare %d, want %d", k1, s1, k2, s2, got, want)
		}
		if own := bytes.HasPrefix(e2, tables.WindowKeyPrefix(k1)); own != bytes.Equal(k1, k2) {
			t.Fatalf("WindowKeyPrefix(%x) prefixes the window of %x: %v", k1, k2, own)
		}
		if scan := bytes.HasPrefix(e2, tables.WindowScanPrefix(k1)); scan != bytes.HasPrefix(k2, k1) {
			t.Fatalf("WindowScanPrefix(%x) prefixes the window of %x: %v", k1, k2, scan)
		}
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestWindowedStoreScan: in a Store, one key's windows are adjacent and in
// time order, apart from keys that extend it.
func TestWindowedStoreScan(t *testing.T) {
	t.Parallel()
	st := openStore(t, t.TempDir(), "windowed", 0)
	w := tables.Window{Size: time.Minute, Step: 20 * time.Second, Expires: time.Hour}
	var muts []tables.Mutation
	for _, key := range []string{"a", "a\x00", "a\x00b", "ab", "b"} {
		for _, ts := range []int64{150_000, 30_000, -5_000} {
			for _, s := range w.Starts(ms(ts)) {
				muts = append(muts, tables.Mutation{Key: tables.WindowKey([]byte(key), s), Value: fmt.Appendf(nil, "%s@%d", key, s.UnixMilli())})
			}
		}
	}
	apply(t, st, 0, muts...)

	entries, _, err := st.Scan(tables.WindowKeyPrefix([]byte("a")), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, e := range entries {
		k, s, err := tables.SplitWindowKey(e.Key)
		if err != nil || string(k) != "a" {
			t.Fatalf("scan of a's windows returned %q (%q, %v)", e.Key, k, err)
		}
		got = append(got, s.UnixMilli())
	}
	want := []int64{-60_000, -40_000, -20_000, -0, 20_000, 100_000, 120_000, 140_000}
	if !slices.Equal(got, want) {
		t.Errorf("window starts of a = %v, want %v", got, want)
	}

	// All windows of keys starting with "a", ordered by key then start.
	entries, _, err = st.Scan(tables.WindowScanPrefix([]byte("a")), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range entries {
		k, _, _ := tables.SplitWindowKey(e.Key)
		if len(keys) == 0 || keys[len(keys)-1] != string(k) {
			keys = append(keys, string(k))
		}
	}
	if wantKeys := []string{"a", "a\x00", "a\x00b", "ab"}; !slices.Equal(keys, wantKeys) {
		t.Errorf("keys with windows under prefix a = %q, want %q (each once: adjacent)", keys, wantKeys)
	}
}
