//go:build faults

package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smallFS is a tmpfs of a fixed size mounted on a worker's data
// directory, holding a copy of what the directory held (scenario 13).
type smallFS struct {
	t       testing.TB
	dir     string
	mounted bool
}

// mountSmallFS moves dir's contents onto a new tmpfs mounted on dir, with
// room for them and spare bytes more; the worker using dir must be
// stopped. It fails the test, saying why, where the machine does not allow
// mounts (the scenario needs root). The mount is always undone when the
// test ends, even on failure.
func mountSmallFS(t testing.TB, dir string, spare int64) *smallFS {
	t.Helper()
	used := duBytes(t, dir)
	stash := dir + ".stash"
	if err := os.Rename(dir, stash); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	size := used + spare
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("scenario 13 puts the worker's data directory on a small tmpfs, which needs mount(8) as root: mount -t tmpfs -o size=%d tmpfs %s: %v: %s",
			size, dir, err, out)
	}
	fs := &smallFS{t: t, dir: dir, mounted: true}
	t.Cleanup(func() {
		if fs.mounted {
			// Lazy: a worker still running keeps its files until it exits.
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	cpDir(t, stash, dir)
	if err := os.RemoveAll(stash); err != nil {
		t.Fatal(err)
	}
	return fs
}

// unmount moves the contents back onto the ordinary directory; the worker
// must be stopped.
func (fs *smallFS) unmount() {
	t := fs.t
	t.Helper()
	stash := fs.dir + ".stash"
	if err := os.MkdirAll(stash, 0o755); err != nil {
		t.Fatal(err)
	}
	cpDir(t, fs.dir, stash)
	if out, err := exec.Command("umount", fs.dir).CombinedOutput(); err != nil {
		t.Fatalf("umount %s: %v: %s", fs.dir, err, out)
	}
	fs.mounted = false
	if err := os.RemoveAll(fs.dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(stash, fs.dir); err != nil {
		t.Fatal(err)
	}
}

// fill writes a file that takes every free byte of the filesystem and
// returns its path.
func (fs *smallFS) fill() string {
	t := fs.t
	t.Helper()
	path := filepath.Join(fs.dir, "fill")
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	buf := make([]byte, 1<<20)
	for {
		_, err := fh.Write(buf)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatalf("fill %s: %v", path, err)
		}
	}
	// The last pages a partial write could not take.
	for _, n := range []int{64 << 10, 4 << 10, 512, 1} {
		for {
			if _, err := fh.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	return path
}

func duBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return n
}

func cpDir(t testing.TB, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from+"/.", to+"/").CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s/. %s/: %v: %s", from, to, err, out)
	}
}

// storeWriteErrors are the worker's status errors about a table store
// that cannot be written.
func storeWriteErrors(t testing.TB, w *workerProc) []string {
	t.Helper()
	var out []string
	es, _ := w.status(t)["errors"].([]any)
	for _, e := range es {
		if s := fmt.Sprint(e); strings.Contains(s, "to its store failed") {
			out = append(out, s)
		}
	}
	return out
}

// diskScenario is scenario 13: every worker's data directory on a small
// tmpfs that fills up under steady load and is freed again. (All of them:
// which worker owns the word count's partitions after the restarts is the
// group's choice.)
func diskScenario(p *phase) {
	f := p.f
	ws := f.live()
	fss := map[int]*smallFS{}
	for _, i := range ws {
		f.term(i)
		fss[i] = mountSmallFS(f.t, filepath.Join(f.slots[i].dir, "data"), 48<<20)
	}
	for _, i := range ws {
		f.restart(i)
	}
	f.waitSpread("the partitions after the restarts on small filesystems")
	p.waitSent(p.prod.sent() + 5*chunk)

	fills := map[int]string{}
	for _, i := range ws {
		fills[i] = fss[i].fill()
	}
	full := time.Now()
	reported := map[int][]string{}
	waitFor(f.t, 2*time.Minute, "the workers owning word count partitions to report a table store they cannot write in status", func() bool {
		for _, i := range ws {
			if owned := f.owned(i, f.wc.words, 0, 8); len(owned) > 0 && len(reported[i]) == 0 {
				reported[i] = storeWriteErrors(f.t, f.slots[i].w)
			}
		}
		for _, i := range ws {
			if len(f.owned(i, f.wc.words, 0, 8)) > 0 && len(reported[i]) == 0 {
				return false
			}
		}
		return len(reported) > 0
	})
	for i, errs := range reported {
		if !strings.Contains(errs[0], "no space left on device") {
			f.t.Errorf("worker %d's status error %q does not name the cause (no space left on device)", i, errs[0])
		}
		if n := metricSum(f.slots[i].w, "eddy_table_write_errors_total"); n == 0 {
			f.t.Errorf("worker %d: eddy_table_write_errors_total is 0 with %d status errors", i, len(errs))
		}
		p.note("worker %d's data filesystem full: %d table partitions reported in status within %s (%q)", i,
			len(errs), time.Since(full).Round(time.Second), errs[0])
	}
	p.waitSent(p.prod.sent() + 10*chunk) // the load goes on while the disks are full
	for _, i := range ws {
		if f.slots[i].w.exited() {
			f.t.Fatalf("worker %d exited on a full disk:\n%s", i, tail(f.slots[i].w.log.String(), 8192))
		}
	}

	for _, i := range ws {
		if err := os.Remove(fills[i]); err != nil {
			f.t.Fatal(err)
		}
	}
	freed := time.Now()
	waitFor(f.t, 2*time.Minute, "the store errors to clear once space is back", func() bool {
		for _, i := range ws {
			if len(storeWriteErrors(f.t, f.slots[i].w)) > 0 {
				return false
			}
		}
		return true
	})
	p.note("space freed: every store written again within %s", time.Since(freed).Round(time.Second))
	for i := range reported {
		logs := f.slots[i].w.log.String()
		for _, line := range []string{"writing table changes to the store failed", "writing table changes to the store works again"} {
			if !strings.Contains(logs, line) {
				f.t.Errorf("worker %d's log has no %q", i, line)
			}
		}
	}
	p.waitSent(p.prod.sent() + 5*chunk)

	// The scenarios after run on the ordinary directories.
	for _, i := range ws {
		f.term(i)
		fss[i].unmount()
	}
	for _, i := range ws {
		f.restart(i)
	}
}
