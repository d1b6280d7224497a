package tables_test

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
)

// fault is a switchable disk fault for tables.WithWriteFault.
type fault struct {
	err   atomic.Pointer[error]
	panic atomic.Int32 // writes left that panic as buntdb does
	calls atomic.Int32
}

func (f *fault) set(err error) { f.err.Store(&err) }

func (f *fault) hook(path string) error {
	f.calls.Add(1)
	if f.panic.Load() > 0 {
		f.panic.Add(-1)
		// What buntdb does when it cannot truncate a partial write: the
		// partial command stays at the end of the file, and it panics
		// with its write lock held.
		fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			_, _ = fh.WriteString("*3\r\n$3\r\nset\r\n$4\r\ndpar")
			_ = fh.Close()
		}
		panic(fmt.Errorf("buntdb: truncate %s: %w", path, syscall.EIO))
	}
	if p := f.err.Load(); p != nil && *p != nil {
		return *p
	}
	return nil
}

// A write refused by the disk changes nothing, in memory or on disk, and
// the same batch applies once the disk takes writes again.
func TestStoreWriteFailureChangesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var f fault
	st := openStore(t, dir, "t", 0, tables.WithWriteFault(f.hook))
	apply(t, st, 10, set("a", "1"))
	f.set(syscall.ENOSPC)
	err := st.Apply([]tables.Mutation{set("a", "2"), set("b", "2")}, 11)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Apply on a full disk: %v, want ENOSPC", err)
	}
	if v, _ := get(t, st, "a"); v != "1" {
		t.Fatalf("a = %q after the failed write, want 1", v)
	}
	if _, ok := get(t, st, "b"); ok {
		t.Fatalf("b present after the failed write")
	}
	if got := st.LastOffset(); got != 10 {
		t.Fatalf("LastOffset = %d after the failed write, want 10", got)
	}
	f.set(nil)
	apply(t, st, 11, set("a", "2"), set("b", "2"))
	closeStore(t, st)
	re := openStore(t, dir, "t", 0)
	checkState(t, re, strs("a", "2", "b", "2"))
	if got := re.LastOffset(); got != 11 {
		t.Fatalf("LastOffset after reopen = %d, want 11", got)
	}
}

// buntdb panics when it cannot truncate a partial write: the Store turns
// the panic into ErrBroken, reopens the file at its next use (buntdb trims
// the partial command) and goes on, concurrent readers included.
func TestStoreWritePanicRecovered(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var f fault
	st := openStore(t, dir, "t", 0, tables.WithWriteFault(f.hook))
	apply(t, st, 10, set("a", "1"))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var readErrs atomic.Int32
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				v, ok, err := st.Get([]byte("a"))
				switch {
				case err != nil && !errors.Is(err, tables.ErrBroken):
					t.Errorf("Get during the fault: %v", err)
				case err != nil:
					readErrs.Add(1)
				case !ok || (string(v) != "1" && string(v) != "2"):
					t.Errorf("Get during the fault: %q, %v", v, ok)
				}
			}
		})
	}
	f.panic.Store(1)
	err := st.Apply([]tables.Mutation{set("a", "2"), set("b", "2")}, 11)
	if !errors.Is(err, tables.ErrBroken) {
		t.Fatalf("Apply that panicked in buntdb: %v, want ErrBroken", err)
	}
	// The next use reopens the file; the batch applies again.
	done := make(chan error, 1)
	go func() { done <- st.Apply([]tables.Mutation{set("a", "2"), set("b", "2")}, 11) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Apply after the panic: %v", err)
		}
	case <-time.After(10 * time.Second * raceFactor):
		t.Fatal("Apply after the panic did not return: the broken handle's lock was waited for")
	}
	close(stop)
	wg.Wait()
	checkState(t, st, strs("a", "2", "b", "2"))
	closeStore(t, st)
	re := openStore(t, dir, "t", 0)
	checkState(t, re, strs("a", "2", "b", "2"))
	if got := re.LastOffset(); got != 11 {
		t.Fatalf("LastOffset after reopen = %d, want 11", got)
	}
}

// A panic on the checkpoint's own write (the second commit) leaves the
// values ahead of the checkpoint, never behind it.
func TestStoreWritePanicOnCheckpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var f fault
	st := openStore(t, dir, "t", 0, tables.WithWriteFault(func(path string) error {
		if f.calls.Load() == 1 { // the values' commit went through
			f.panic.Store(1)
		}
		return f.hook(path)
	}))
	f.calls.Store(100)
	apply(t, st, 10, set("a", "1"))
	f.calls.Store(0)
	err := st.Apply([]tables.Mutation{set("a", "2")}, 11)
	if !errors.Is(err, tables.ErrBroken) {
		t.Fatalf("Apply whose checkpoint write panicked: %v, want ErrBroken", err)
	}
	if got := st.LastOffset(); got != 10 {
		t.Fatalf("LastOffset = %d, want 10 (the checkpoint write failed)", got)
	}
	if v, _ := get(t, st, "a"); v != "2" {
		t.Fatalf("a = %q after the reopen, want 2 (the values' commit went through)", v)
	}
	if got := st.LastOffset(); got != 10 {
		t.Fatalf("LastOffset after the reopen = %d, want 10", got)
	}
	f.calls.Store(100)
	apply(t, st, 11, set("a", "2"))
	if got := st.LastOffset(); got != 11 {
		t.Fatalf("LastOffset = %d, want 11", got)
	}
}

// strs builds checkState's map from key, value pairs.
func strs(kv ...string) map[string][]byte {
	m := map[string][]byte{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = []byte(kv[i+1])
	}
	return m
}
