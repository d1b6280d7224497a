package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser starts headless Chromium (Debian's chromium package, which
// .ci/run installs) and returns a chromedp context and the console
// errors, exceptions and browser-log errors its pages reported so far.
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("the dashboard's browser test needs headless Chromium: install the Debian package chromium (.ci/run does): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 1000))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	var mu sync.Mutex
	var errs []string
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("%s %s:%d %s", m.Type, m.URL, m.Line+1, m.Text))
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); acancel(); <-done })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), errs...)
	}
}

// run runs chromedp actions, bounded, and fails the test on error.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates the JavaScript expression expr on the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %q: %v", expr, err)
	}
	return v
}

// evalUntil polls the page's JavaScript expr (a boolean) until it is true.
func evalUntil(t *testing.T, ctx context.Context, timeout time.Duration, what, expr string) {
	t.Helper()
	waitFor(t, timeout, what, func() bool { return eval[bool](t, ctx, expr) })
}

// pageInt reads an integer the page shows (the text of a CSS selector).
func pageInt(t *testing.T, ctx context.Context, selector string) int64 {
	t.Helper()
	s := eval[string](t, ctx, fmt.Sprintf("document.querySelector(%q).textContent", selector))
	n, err := strconv.ParseInt(strings.ReplaceAll(strings.TrimSpace(s), ",", ""), 10, 64)
	if err != nil {
		t.Fatalf("%s shows %q, not a number", selector, s)
	}
	return n
}

// TestDashboardInBrowser drives the dashboard in headless Chromium against
// a worker on the real broker running the word count with its table: the
// page loads without console errors; it shows the agents and partitions
// with counts rising while a producer writes and charts with points; a
// look-up answers the count an independent fold of the input gives;
// pause and resume work only with the token; a phone-sized viewport has
// no horizontal scroll; and after the data directory is deleted, the
// restarted worker's page shows each table partition's restore as a
// finished progress bar (docs/dashboard.md).
func TestDashboardInBrowser(t *testing.T) {
	const token = "dash-s3cret"
	a := newWordCountApp(t)
	body := a.body + "auth: {token: " + token + "}\n"
	dir := t.TempDir()
	w := startWorkerIn(t, dir, body)
	w.waitAssigned(t, 16)
	startWordCountToken(t, w.GRPC, a, token)
	w.waitInstances(t, "count", 1, 8)
	w.waitInstances(t, "split", 1, 8)

	ctx, consoleErrors := browser(t)
	page := "http://" + w.HTTP + "/"
	run(t, ctx, "open "+page, chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.CSS(`#agents tbody tr[data-agent="count"]`)))

	// Counts rise while the producer writes.
	want := map[string]int64{}
	keys, lines := corpus(7, 1500, want)
	produce(t, a.lines, keys[:500], lines[:500])
	evalUntil(t, ctx, 30*time.Second, "the count agent's processed events on the page", `(() => {
		const c = document.querySelector('#agents tr[data-agent="count"] td.processed');
		return c && Number(c.textContent) > 0 })()`)
	first := pageInt(t, ctx, `#agents tr[data-agent="count"] td.processed`)
	produce(t, a.lines, keys[500:], lines[500:])
	evalUntil(t, ctx, 30*time.Second, fmt.Sprintf("the page's processed count rising above %d", first), fmt.Sprintf(`(() => {
		const c = document.querySelector('#agents tr[data-agent="count"] td.processed');
		return Number(c.textContent) > %d })()`, first))
	evalUntil(t, ctx, 10*time.Second, "16 partitions listed, and the in/out chart drawn", `
		document.querySelectorAll('#partitions tbody tr').length === 16 &&
		document.querySelector('[data-chart="in-out"] polyline').getAttribute('points').split(' ').length >= 3`)
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: a PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	_ = os.WriteFile(shot, png, 0o644)

	// A look-up answers what the independent fold of the input says.
	waitDrained(t, w, a.app, 2*time.Minute, a.lines, a.words)
	word, n := "", int64(0)
	for k, v := range want {
		if v > n || (v == n && k < word) {
			word, n = k, v
		}
	}
	lookup := func(what string) {
		t.Helper()
		run(t, ctx, "look up "+word, chromedp.SetValue(chromedp.ID("lookup-key"), word), chromedp.Click(chromedp.ID("lookup-go")))
		evalUntil(t, ctx, 20*time.Second, fmt.Sprintf("%s: the look-up of %s answering %d", what, word, n),
			fmt.Sprintf(`document.getElementById('lookup-result').textContent.split('\n')[0] === %q`, strconv.FormatInt(n, 10)))
	}
	lookup("running")

	if errs := consoleErrors(); len(errs) > 0 {
		t.Errorf("the page reported errors:\n%s", strings.Join(errs, "\n"))
	}

	// Pause and resume: no buttons without the token, none with a wrong one
	// (whose refusal, a 401, is the one error the browser may log from here).
	before := len(consoleErrors())
	if !eval[bool](t, ctx, `document.getElementById('controls').hidden && !document.getElementById('token-form').hidden`) {
		t.Fatal("pause/resume shown (or no token box) before a token was entered")
	}
	run(t, ctx, "wrong token", chromedp.SetValue(chromedp.ID("token-input"), "wrong"), chromedp.Click(chromedp.ID("token-save")))
	evalUntil(t, ctx, 10*time.Second, "the wrong token refused", `document.getElementById('notice').textContent.includes('bad token') &&
		document.getElementById('controls').hidden`)
	run(t, ctx, "token", chromedp.SetValue(chromedp.ID("token-input"), token), chromedp.Click(chromedp.ID("token-save")),
		chromedp.WaitVisible(chromedp.ID("pause-all")), chromedp.Click(chromedp.ID("pause-all")))
	evalUntil(t, ctx, 10*time.Second, "PAUSED on the page", `document.getElementById('worker-state').textContent === 'PAUSED'`)
	if st := w.status(t)["state"]; st != "WORKER_STATE_PAUSED" {
		t.Fatalf("GetStatus state %v after Pause all on the page, want WORKER_STATE_PAUSED", st)
	}
	run(t, ctx, "resume", chromedp.Click(chromedp.ID("resume-all")))
	evalUntil(t, ctx, 10*time.Second, "RUNNING on the page", `document.getElementById('worker-state').textContent === 'RUNNING'`)
	if st := w.status(t)["state"]; st != "WORKER_STATE_RUNNING" {
		t.Fatalf("GetStatus state %v after Resume all on the page, want WORKER_STATE_RUNNING", st)
	}

	// A phone-sized screen: everything fits the width.
	run(t, ctx, "phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulatePortrait),
		chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#agents tbody tr[data-agent="count"]`)))
	evalUntil(t, ctx, 10*time.Second, "no horizontal scroll at 390 px", `document.documentElement.scrollWidth <= window.innerWidth &&
		document.body.scrollWidth <= window.innerWidth`)
	run(t, ctx, "desktop viewport", chromedp.EmulateReset())

	// The data directory deleted: the restarted worker rebuilds every
	// table partition from the changelog, and its page shows each restore.
	w.signal(syscall.SIGTERM)
	if code := w.wait(45 * time.Second); code != 0 {
		t.Fatalf("worker exited with %d on SIGTERM", code)
	}
	if err := os.RemoveAll(filepath.Join(dir, "data")); err != nil {
		t.Fatal(err)
	}
	w = startWorkerIn(t, dir, body)
	page = "http://" + w.HTTP + "/"
	run(t, ctx, "open "+page, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS(`#agents tbody tr`)))
	evalUntil(t, ctx, 60*time.Second, "8 restores of counts, each a full bar and finished", `(() => {
		const rs = [...document.querySelectorAll('#restores .restore')].filter(r => r.dataset.tp.startsWith('counts['));
		return rs.length === 8 && rs.every(r => r.dataset.finished === 'true' && r.dataset.pct === '100.0' &&
			r.querySelector('.bar > div').style.width === '100%') })()`)
	lookup("after the restore")

	var errs []string
	for _, e := range consoleErrors()[before:] {
		if !strings.Contains(e, "/dashboard/api/state") || !strings.Contains(e, "status of 401") {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		t.Errorf("the page reported errors:\n%s", strings.Join(errs, "\n"))
	}
	if dst := os.Getenv("EDDY_DASHBOARD_SCREENSHOT"); dst != "" {
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Errorf("write screenshot: %v", err)
		}
	}
}

// startWordCountToken is startWordCount with the worker's token.
func startWordCountToken(t testing.TB, addr string, a wordCountApp, token string) *agentProc {
	t.Helper()
	cmd := exec.Command(bin(t, "wordcount"), "--addr", addr, "--app", appAt(t, addr), "--words", a.words, "--table", a.table,
		"--out", a.out, "--token", token)
	p := &agentProc{cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start wordcount: %v", err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("wordcount log (last 4k):\n%s", tail(p.log.String(), 4096))
		}
	})
	return p
}
