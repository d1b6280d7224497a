// Package testutil holds the helpers the tests of several packages share:
// polling with WaitFor instead of sleeping, test loggers, the race
// detector's time factor and the module root. It is for tests only
// (docs/development.md#tests); everything in it is safe for concurrent use.
package testutil

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// DebugEnv names the environment variable that, set to anything, makes
// the test loggers write everything, at debug, to stderr.
const DebugEnv = "EDDY_TEST_DEBUG"

// WaitFor polls cond until it holds, failing the test after timeout with
// "timed out after <timeout> waiting for <what>". what is a string, or a
// func() string called only on failure (to report the state then). Polls
// start at 1ms and back off to 20ms, so a condition that holds soon is
// seen at once and a slow one is not polled hot.
func WaitFor[M string | func() string](t testing.TB, timeout time.Duration, what M, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	poll := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			var msg string
			switch w := any(what).(type) {
			case string:
				msg = w
			case func() string:
				msg = w()
			}
			t.Fatalf("timed out after %s waiting for %s", timeout, msg)
		}
		time.Sleep(poll)
		poll = min(2*poll, 20*time.Millisecond)
	}
}

// Logger logs to stderr at warn and above, or everything with DebugEnv
// set, with the test's name under "test".
func Logger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv(DebugEnv) != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("test", t.Name())
}

// QuietLogger logs nothing, or everything to stderr with DebugEnv set: for
// tests of code that logs a lot and is checked by its results.
func QuietLogger() *slog.Logger {
	if os.Getenv(DebugEnv) != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// BufferLogger logs at info and above to the returned Buffer, for
// assertions on the log (and to stderr too with DebugEnv set), with the
// test's name under "test".
func BufferLogger(t testing.TB) (*slog.Logger, *Buffer) {
	buf := &Buffer{}
	var w io.Writer = buf
	if os.Getenv(DebugEnv) != "" {
		w = io.MultiWriter(buf, os.Stderr)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name()), buf
}

// Buffer collects output, such as a log, for assertions; safe for a
// writing goroutine and a reading test.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// RepoRoot finds the module root (the directory holding go.mod) by walking
// up from the working directory (go test runs in the package directory),
// falling back to this source file's location.
func RepoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("cannot find the module root (a directory with go.mod) above the working directory")
}
