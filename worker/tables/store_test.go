package tables_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/eddy-streams/eddy/worker/tables"
)

func openStore(t testing.TB, dir, table string, p int32, opts ...tables.StoreOption) *tables.Store {
	t.Helper()
	st, err := tables.Open(dir, table, p, opts...)
	if err != nil {
		t.Fatalf("Open(%s, %d): %v", table, p, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func apply(t testing.TB, st *tables.Store, off int64, muts ...tables.Mutation) {
	t.Helper()
	if err := st.Apply(muts, off); err != nil {
		t.Fatalf("Apply(%d mutations, %d): %v", len(muts), off, err)
	}
}

func set(k, v string) tables.Mutation { return tables.Mutation{Key: []byte(k), Value: []byte(v)} }
func del(k string) tables.Mutation    { return tables.Mutation{Key: []byte(k), Delete: true} }

func get(t testing.TB, st *tables.Store, key string) (string, bool) {
	t.Helper()
	v, ok, err := st.Get([]byte(key))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return string(v), ok
}

func TestStoreApplyGetDelete(t *testing.T) {
	t.Parallel()
	st := openStore(t, t.TempDir(), "counts", 3)
	if got := st.LastOffset(); got != tables.NoOffset {
		t.Fatalf("new store LastOffset = %d, want %d", got, tables.NoOffset)
	}
	if want := filepath.Join("counts", "3.db"); !bytes.HasSuffix([]byte(st.Path()), []byte(want)) {
		t.Errorf("Path = %q, want suffix %q", st.Path(), want)
	}
	apply(t, st, 0, set("a", "1"), set("b", "2"), set("a", "3"), set("empty", ""), del("never"))
	apply(t, st, 4, del("b"), set("c", "x"), del("c"))

	for _, tc := range []struct {
		key   string
		value string
		found bool
	}{
		{"a", "3", true},    // the later mutation of a batch wins
		{"b", "", false},    // deleted in a later batch
		{"c", "", false},    // set, then deleted in the same batch
		{"empty", "", true}, // an empty value is present
		{"never", "", false},
	} {
		v, ok := get(t, st, tc.key)
		if v != tc.value || ok != tc.found {
			t.Errorf("Get(%q) = %q, %v; want %q, %v", tc.key, v, ok, tc.value, tc.found)
		}
	}
	if got := st.LastOffset(); got != 4 {
		t.Errorf("LastOffset = %d, want 4", got)
	}
	if n, err := st.Count(); err != nil || n != 2 {
		t.Errorf("Count = %d, %v; want 2", n, err)
	}
}

func TestStoreApplyRules(t *testing.T) {
	t.Parallel()
	st := openStore(t, t.TempDir(), "t", 0)
	apply(t, st, 10, set("a", "1"))

	// An empty key anywhere refuses the whole batch.
	err := st.Apply([]tables.Mutation{set("b", "2"), {Key: nil, Value: []byte("x")}}, 11)
	if !errors.Is(err, tables.ErrEmptyKey) {
		t.Fatalf("Apply with an empty key: %v, want ErrEmptyKey", err)
	}
	if _, ok := get(t, st, "b"); ok || st.LastOffset() != 10 {
		t.Fatalf("refused batch was partly applied: b present %v, LastOffset %d", ok, st.LastOffset())
	}
	// Offsets never go back.
	if err := st.Apply([]tables.Mutation{set("b", "2")}, 9); !errors.Is(err, tables.ErrOffsetBehind) {
		t.Fatalf("Apply at offset 9 after 10: %v, want ErrOffsetBehind", err)
	}
	// The same offset again is fine (nothing newer is claimed).
	apply(t, st, 10, set("b", "2"))
	// NoOffset writes values and leaves the checkpoint alone.
	apply(t, st, tables.NoOffset, set("c", "3"))
	if got := st.LastOffset(); got != 10 {
		t.Errorf("LastOffset after NoOffset batch = %d, want 10", got)
	}
	if err := st.Apply(nil, -2); err == nil {
		t.Error("Apply at offset -2 succeeded, want an error")
	}
}

func TestStoreReopenKeepsValuesAndCheckpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := openStore(t, dir, "t", 1)
	want := map[string][]byte{}
	var off int64
	for batch := range 5 {
		var muts []tables.Mutation
		for i := range 100 {
			k := fmt.Sprintf("k%03d", (batch*37+i)%150)
			if i%9 == 0 {
				muts = append(muts, del(k))
			} else {
				muts = append(muts, set(k, fmt.Sprintf("v%d-%d", batch, i)))
			}
		}
		off += int64(len(muts))
		apply(t, st, off-1, muts...)
		fold(want, muts)
	}
	closeStore(t, st)

	st = openStore(t, dir, "t", 1)
	if got := st.LastOffset(); got != off-1 {
		t.Errorf("reopened LastOffset = %d, want %d", got, off-1)
	}
	checkState(t, st, want)
}

// binaryKeys are keys that a string-keyed store could get wrong: NUL, 0xFF,
// the file format's own "\r\n" and "*", buntdb's pattern characters,
// prefixes of each other, invalid UTF-8.
var binaryKeys = [][]byte{
	{0x00}, {0x00, 0x00}, {0x00, 0x01}, {0x01}, {0xFF}, {0xFF, 0x00}, {0xFF, 0xFF},
	[]byte("\r\n"), []byte("*3\r\n$3\r\nset"), []byte("a*"), []byte("a?"), []byte("a"),
	[]byte("a\x00b"), []byte("ab"), {0xC3, 0x28}, []byte("日本"),
}

func TestStoreBinaryKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := openStore(t, dir, "bin", 0)
	var muts []tables.Mutation
	for i, k := range binaryKeys {
		muts = append(muts, tables.Mutation{Key: k, Value: append([]byte{0x00, byte(i), '\r', '\n'}, k...)})
	}
	apply(t, st, 0, muts...)
	closeStore(t, st) // and read back from the file
	st = openStore(t, dir, "bin", 0)

	for i, k := range binaryKeys {
		v, ok, err := st.Get(k)
		want := append([]byte{0x00, byte(i), '\r', '\n'}, k...)
		if err != nil || !ok || !bytes.Equal(v, want) {
			t.Errorf("Get(%q) = %q, %v, %v; want %q", k, v, ok, err, want)
		}
	}
	// Scan returns bytewise order.
	entries, more, err := st.Scan(nil, nil, 0)
	if err != nil || more {
		t.Fatalf("Scan = more %v, err %v", more, err)
	}
	want := slices.Clone(binaryKeys)
	slices.SortFunc(want, bytes.Compare)
	var got [][]byte
	for _, e := range entries {
		got = append(got, e.Key)
	}
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("Scan order:\n got %q\nwant %q", got, want)
	}
	// Prefix scans over binary prefixes.
	for _, tc := range []struct {
		prefix []byte
		want   [][]byte
	}{
		{[]byte{0x00}, [][]byte{{0x00}, {0x00, 0x00}, {0x00, 0x01}}},
		{[]byte{0xFF}, [][]byte{{0xFF}, {0xFF, 0x00}, {0xFF, 0xFF}}},
		{[]byte("a"), [][]byte{[]byte("a"), []byte("a\x00b"), []byte("a*"), []byte("a?"), []byte("ab")}},
		{[]byte("a*"), [][]byte{[]byte("a*")}}, // no pattern matching
		{[]byte("\r"), [][]byte{[]byte("\r\n")}},
	} {
		entries, _, err := st.Scan(tc.prefix, nil, 0)
		if err != nil {
			t.Fatalf("Scan(%q): %v", tc.prefix, err)
		}
		var got [][]byte
		for _, e := range entries {
			got = append(got, e.Key)
		}
		if !slices.EqualFunc(got, tc.want, bytes.Equal) {
			t.Errorf("Scan(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

func TestStoreScanPaging(t *testing.T) {
	t.Parallel()
	st := openStore(t, t.TempDir(), "t", 0)
	var all []string
	for i := range 25 {
		all = append(all, fmt.Sprintf("user/%02d", i))
	}
	var muts []tables.Mutation
	for _, k := range append(slices.Clone(all), "user", "user0", "users", "usea", "zzz") {
		muts = append(muts, set(k, "v-"+k))
	}
	apply(t, st, 0, muts...)

	// Page through "user/" 10 at a time.
	var got []string
	var after []byte
	pages := 0
	for {
		entries, more, err := st.Scan([]byte("user/"), after, 10)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range entries {
			if string(e.Value) != "v-"+string(e.Key) {
				t.Errorf("value of %q = %q", e.Key, e.Value)
			}
			got = append(got, string(e.Key))
		}
		if !more {
			break
		}
		if len(entries) != 10 {
			t.Fatalf("page %d has %d entries and more=true, want 10", pages, len(entries))
		}
		after = entries[len(entries)-1].Key
	}
	if pages != 3 || !slices.Equal(got, all) {
		t.Errorf("paged scan: %d pages, keys %q; want 3 pages, %q", pages, got, all)
	}

	for _, tc := range []struct {
		name          string
		prefix, after string
		limit         int
		want          []string
		more          bool
	}{
		{"exact page", "user/", "user/14", 10, all[15:], false},
		{"after not in the table", "user/", "user/035", 0, all[4:], false},
		{"after before the prefix", "user/", "a", 2, all[:2], true},
		{"after past the prefix", "user/", "v", 0, nil, false},
		{"after inside", "user/", "user/2", 0, all[20:], false},
		{"no prefix", "", "users", 0, []string{"zzz"}, false},
		{"prefix includes itself", "user", "", 0, append(append([]string{"user"}, all...), "user0", "users"), false},
		{"missing prefix", "nope", "", 0, nil, false},
	} {
		var after []byte
		if tc.after != "" {
			after = []byte(tc.after)
		}
		entries, more, err := st.Scan([]byte(tc.prefix), after, tc.limit)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var keys []string
		for _, e := range entries {
			keys = append(keys, string(e.Key))
		}
		if !slices.Equal(keys, tc.want) || more != tc.more {
			t.Errorf("%s: Scan(%q, %q, %d) = %q, more %v; want %q, more %v",
				tc.name, tc.prefix, tc.after, tc.limit, keys, more, tc.want, tc.more)
		}
	}
}

func TestStoreLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := openStore(t, dir, "t", 0)
	if _, err := tables.Open(dir, "t", 0); !errors.Is(err, tables.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	// Other partitions are independent.
	openStore(t, dir, "t", 1)
	closeStore(t, st)
	if err := st.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, _, err := st.Get([]byte("a")); !errors.Is(err, tables.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
	if err := st.Apply([]tables.Mutation{set("a", "1")}, 1); !errors.Is(err, tables.ErrClosed) {
		t.Errorf("Apply after Close: %v, want ErrClosed", err)
	}
	openStore(t, dir, "t", 0)
}

func TestStoreOpenRejectsBadNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		table string
		p     int32
	}{{"", 0}, {".", 0}, {"..", 0}, {"a/b", 0}, {"a b", 0}, {"ok", -1}} {
		if st, err := tables.Open(dir, tc.table, tc.p); err == nil {
			_ = st.Close()
			t.Errorf("Open(%q, %d) succeeded, want an error", tc.table, tc.p)
		}
	}
}

func TestStoreCorruptFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile := func(table string, p int32, data []byte) {
		t.Helper()
		path := tables.StorePath(dir, table, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile("garbage", 0, []byte("this is not a buntdb file\n"))
	// Valid buntdb records, but no checkpoint record.
	writeFile("nometa", 0, []byte("*3\r\n$3\r\nset\r\n$2\r\ndk\r\n$1\r\nv\r\n"))
	writeFile("badmeta", 0, []byte("*3\r\n$3\r\nset\r\n$1\r\nm\r\n$5\r\n{nope\r\n"))
	// Well-formed framing that makes buntdb's loader panic.
	writeFile("panics", 0, []byte("*1\r\n$0\r\n\r\n"))
	writeFile("panics2", 0, []byte("*2\r\n$1\r\ns\r\n$1\r\nk\r\n"))
	// A length field that would make buntdb allocate 10 GB.
	writeFile("hugelength", 0, []byte("*3\r\n$3\r\nset\r\n$1\r\nk\r\n$9999999999\r\nv\r\n"))
	// Another partition's file moved into place.
	st := openStore(t, dir, "moved", 1)
	apply(t, st, 3, set("k", "v"))
	closeStore(t, st)
	data, err := os.ReadFile(tables.StorePath(dir, "moved", 1))
	if err != nil {
		t.Fatal(err)
	}
	writeFile("moved", 0, data)

	for _, table := range []string{"garbage", "nometa", "badmeta", "panics", "panics2", "hugelength", "moved"} {
		st, err := tables.Open(dir, table, 0)
		if err == nil {
			_ = st.Close()
			t.Errorf("Open(%s) succeeded, want ErrCorrupt", table)
			continue
		}
		var ce *tables.CorruptError
		if !errors.Is(err, tables.ErrCorrupt) || !errors.As(err, &ce) {
			t.Errorf("Open(%s): %v (%T), want a *CorruptError", table, err, err)
			continue
		}
		t.Logf("Open(%s): %v", table, err)
	}
	// A corrupt file stays locked-free: Open released the lock.
	writeFile("garbage", 0, nil)
	openStore(t, dir, "garbage", 0)
}

// TestStoreHostRestart: a store that was not closed is trusted after a
// process crash (same boot: the page cache kept every write), and not
// after a host restart (unsynced writes may be lost in any order).
func TestStoreHostRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := openStore(t, dir, "t", 0, tables.WithBootID("boot-1"))
	apply(t, st, 7, set("a", "1"))
	// Copy the file while the store is open: what a crash leaves behind.
	crashed := copyStore(t, st.Path(), t.TempDir(), "t", 0, -1)
	closeStore(t, st)

	st2, err := tables.Open(crashed, "t", 0, tables.WithBootID("boot-1"))
	if err != nil {
		t.Fatalf("Open after a process crash: %v", err)
	}
	if st2.LastOffset() != 7 {
		t.Errorf("LastOffset after a process crash = %d, want 7", st2.LastOffset())
	}
	closeStore(t, st2)

	crashed = copyStore(t, tables.StorePath(crashed, "t", 0), t.TempDir(), "t", 0, -1)
	// The copy was closed cleanly: a host restart does not matter.
	if st3, err := tables.Open(crashed, "t", 0, tables.WithBootID("boot-2")); err != nil {
		t.Errorf("Open of a cleanly closed store after a host restart: %v", err)
	} else {
		closeStore(t, st3)
	}

	st = openStore(t, dir, "t", 0, tables.WithBootID("boot-1"))
	crashed = copyStore(t, st.Path(), t.TempDir(), "t", 0, -1)
	if _, err := tables.Open(crashed, "t", 0, tables.WithBootID("boot-2")); !errors.Is(err, tables.ErrCorrupt) {
		t.Errorf("Open of an unclosed store after a host restart: %v, want ErrCorrupt", err)
	}
}

// copyStore copies the first n bytes (all if n < 0) of the store file at
// src to the store path of table/p under dir, and returns dir.
func copyStore(t testing.TB, src, dir, table string, p int32, n int) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if n >= 0 {
		data = data[:n]
	}
	dst := tables.StorePath(dir, table, p)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestStoreTornApply cuts the file at every byte of the last Apply (what a
// crash in the middle of its write leaves) and checks that the checkpoint
// never covers values the file lost.
func TestStoreTornApply(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := openStore(t, dir, "t", 0)
	first := []tables.Mutation{set("a", "1"), set("b", "1"), set("c", "1")}
	apply(t, st, 10, first...)
	size1 := fileSize(t, st.Path())
	var second []tables.Mutation
	for i := range 20 {
		second = append(second, set(fmt.Sprintf("k%02d", i), fmt.Sprint(i)))
	}
	second = append(second, set("a", "2"), del("b"))
	apply(t, st, 20, second...)
	size2 := fileSize(t, st.Path())
	after := fold(fold(nil, first), second)
	before := fold(nil, first)

	sawOld, sawNew := false, false
	for n := size1; n <= size2; n++ {
		d := copyStore(t, st.Path(), t.TempDir(), "t", 0, n)
		cut, err := tables.Open(d, "t", 0)
		if err != nil {
			t.Fatalf("Open of the file cut at %d of %d..%d: %v", n, size1, size2, err)
		}
		switch cut.LastOffset() {
		case 20:
			sawNew = true
			checkState(t, cut, after)
		case 10:
			sawOld = true
			// Values may be ahead of the checkpoint, never behind it:
			// a replay from offset 11 rewrites every key the second
			// batch touched, so only untouched keys must be as before.
			got := contents(t, cut)
			if string(got["c"]) != "1" {
				t.Fatalf("cut at %d: c = %q, want 1", n, got["c"])
			}
			for k := range got {
				_, old := before[k]
				_, touched := after[k]
				if !old && !touched && k[0] != 'k' {
					t.Fatalf("cut at %d: unexpected key %q", n, k)
				}
			}
		default:
			t.Fatalf("cut at %d: LastOffset = %d, want 10 or 20", n, cut.LastOffset())
		}
		closeStore(t, cut)
	}
	if !sawOld || !sawNew {
		t.Errorf("cuts saw old checkpoint %v, new %v; want both", sawOld, sawNew)
	}
}

func fileSize(t testing.TB, path string) int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Size())
}

// TestStoreConcurrent runs readers against a writer (for -race).
func TestStoreConcurrent(t *testing.T) {
	t.Parallel()
	st := openStore(t, t.TempDir(), "t", 0)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := st.Get([]byte("k5")); err != nil {
					t.Error(err)
					return
				}
				if _, _, err := st.Scan([]byte("k"), nil, 10); err != nil {
					t.Error(err)
					return
				}
				_ = st.LastOffset()
				if _, err := st.Count(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range 200 {
		apply(t, st, int64(i), set(fmt.Sprintf("k%d", i%10), fmt.Sprint(i)))
	}
	close(stop)
	wg.Wait()
	if v, _ := get(t, st, "k9"); v != "199" {
		t.Errorf("k9 = %q, want 199", v)
	}
}

// FuzzOpen: whatever the file holds, Open returns a store or an error; it
// never panics or allocates without bound.
func FuzzOpen(f *testing.F) {
	f.Add([]byte("*3\r\n$3\r\nset\r\n$2\r\ndk\r\n$1\r\nv\r\n"))
	f.Add([]byte("*3\r\n$3\r\nset\r\n$1\r\nm\r\n$60\r\n{\"format\":1,\"table\":\"t\",\"partition\":0,\"offset\":5,\"clean\":true}\r\n"))
	f.Add([]byte("*1\r\n$0\r\n\r\n"))
	f.Add([]byte("*2\r\n$3\r\ndel\r\n$2\r\ndk\r\n\x00\x00*1\r\n$7\r\nflushdb\r\n"))
	f.Add([]byte("*5\r\n$3\r\nset\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nex\r\n$2\r\n10\r\n"))
	f.Add([]byte("*3\r\n$3\r\nset\r\n$1\r\nk\r\n$99999\r\nv"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		copyStoreData(t, data, dir)
		st, err := tables.Open(dir, "t", 0)
		if err != nil {
			return
		}
		if _, err := st.Count(); err != nil {
			t.Errorf("Count: %v", err)
		}
		if _, _, err := st.Scan(nil, nil, 10); err != nil {
			t.Errorf("Scan: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

func copyStoreData(t testing.TB, data []byte, dir string) {
	t.Helper()
	path := tables.StorePath(dir, "t", 0)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
