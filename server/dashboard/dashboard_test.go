package dashboard

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/testutil"
	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/app"
	"github.com/eddy-streams/eddy/worker/monitor"
	"github.com/eddy-streams/eddy/worker/tables/live"
)

// fakeCore is a Core whose answers the test sets.
type fakeCore struct {
	mu       sync.Mutex
	status   app.Status
	infos    []app.AgentInfo
	snap     monitor.Snapshot
	tables   []app.TableInfo
	members  []app.Member
	standbys []app.StandbyLag
	commitF  uint64
	paused   []string
}

func (f *fakeCore) Status() app.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}
func (f *fakeCore) AgentInfos() []app.AgentInfo { return f.infos }
func (f *fakeCore) Snapshot() monitor.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap
}
func (f *fakeCore) TableInfos(context.Context) ([]app.TableInfo, error) { return f.tables, nil }
func (f *fakeCore) Members(context.Context, bool) ([]app.Member, error) { return f.members, nil }
func (f *fakeCore) StandbyLags() []app.StandbyLag                       { return f.standbys }
func (f *fakeCore) CommitFailures() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.commitF
}
func (f *fakeCore) Pause(agent string) (app.State, []string, error) {
	return f.setPaused(agent, true)
}
func (f *fakeCore) Resume(agent string) (app.State, []string, error) {
	return f.setPaused(agent, false)
}
func (f *fakeCore) setPaused(agent string, p bool) (app.State, []string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if agent != "" && agent != "count" {
		return 0, nil, &agents.UnknownAgentError{Name: agent, Declared: []string{"count"}}
	}
	if p {
		f.paused = []string{"count"}
		return app.StatePaused, f.paused, nil
	}
	f.paused = nil
	return app.StateRunning, nil, nil
}

func newFake() *fakeCore {
	start := time.Now().Add(-time.Hour)
	return &fakeCore{
		status: app.Status{State: app.StateRunning, Version: "v1.2.3", App: "wc", WorkerID: "w1", StartedAt: start,
			GRPCAddr: "127.0.0.1:6066", HTTPAddr: "127.0.0.1:6067", ProcessingGuarantee: "at_least_once",
			Assigned: []app.TopicPartition{{Topic: "words", Partition: 0}, {Topic: "words", Partition: 1}},
			Recovery: []app.RecoveryProgress{{Table: "counts", Partition: 1, Done: 250, Total: 1000, Rate: 500, Remaining: 1500 * time.Millisecond}},
			LastRestores: []app.LastRestore{{Table: "counts", Partition: 0, Full: true, Reason: "no local state",
				Records: 400, Duration: 800 * time.Millisecond, FinishedAt: start.Add(time.Minute)}},
		},
		infos: []app.AgentInfo{{Name: "count", Topics: []string{"words"}, Ordering: "partition",
			Instances: []app.InstanceInfo{{InstanceID: "i1", Peer: "127.0.0.1:5555", ConnectedAt: start,
				Partitions: []app.TopicPartition{{Topic: "words", Partition: 0}, {Topic: "words", Partition: 1}}, InFlight: 3, CreditEvents: 997}},
			InFlight: 3, Lag: 12}},
		snap: monitor.Snapshot{Partitions: []monitor.PartitionSnapshot{
			{Agent: "count", Topic: "words", Partition: 0, Received: 100, Processed: 90, Lag: 2, EndToEndP99: 5 * time.Millisecond, EventsPerSecond: 10},
			{Agent: "count", Topic: "words", Partition: 1, Received: 100, Processed: 95, Lag: 10, EndToEndP99: time.Millisecond, EventsPerSecond: 20},
			{Agent: "count", Topic: "words", Partition: 2, Received: 5, Processed: 5, Lag: 0},
		}, Stalled: []monitor.Stall{{Agent: "count", Topic: "words", Partition: 2, Since: start, Reason: "frontier still"}}},
		tables:   []app.TableInfo{{Name: "counts", Partitions: 8, Keys: 42, ActivePartitions: []int32{0, 1}, StandbyPartitions: []int32{3}}},
		members:  []app.Member{{WorkerID: "w1", Addr: "127.0.0.1:6066"}, {WorkerID: "w2", Addr: "127.0.0.1:7066", Assigned: make([]app.TopicPartition, 3)}},
		standbys: []app.StandbyLag{{Table: "counts", Partition: 3, Position: 90, End: 100, Lag: 10}},
	}
}

type getCall struct{ table, key string }

func newDash(t *testing.T, f *fakeCore, cfg Config) (*Dashboard, *[]getCall) {
	t.Helper()
	var calls []getCall
	var mu sync.Mutex
	cfg.Logger = testutil.QuietLogger()
	cfg.Get = func(_ context.Context, table string, key []byte) (GetResult, error) {
		mu.Lock()
		calls = append(calls, getCall{table, string(key)})
		mu.Unlock()
		switch {
		case table != "counts":
			return GetResult{}, &app.UnknownTableError{Name: table}
		case string(key) == "missing":
			return GetResult{Partition: 5}, fmt.Errorf("read: %w", live.ErrKeyNotFound)
		case string(key) == "down":
			return GetResult{}, errors.New("forwarding to the owner of table \"counts\" partition 2 failed")
		}
		return GetResult{Value: []byte("17"), Partition: 4, ServedBy: "w2"}, nil
	}
	cfg.PeerStatus = func(_ context.Context, addr string) (Peer, error) {
		return Peer{WorkerID: "w2", HTTPAddr: "127.0.0.1:7067", State: "RUNNING", Version: "v1.2.3", StartedAt: time.Now().Add(-time.Minute)}, nil
	}
	return New(cfg, f), &calls
}

// do sends a request from remote (with TLS when tlsOn) and returns the
// status and body.
func do(t *testing.T, h http.Handler, method, target, remote, token string, tlsOn bool) (int, string) {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = remote
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	if tlsOn {
		r.TLS = &tls.ConnectionState{}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(b)
}

const loopback, remote = "127.0.0.1:40000", "192.0.2.7:40000"

func TestStateJSON(t *testing.T) {
	f := newFake()
	d, _ := newDash(t, f, Config{})
	d.sampler.refreshPeers(context.Background())
	code, body := do(t, d, "GET", "/dashboard/api/state", remote, "", false)
	if code != http.StatusOK {
		t.Fatalf("GET state: %d %s", code, body)
	}
	var s State
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("state JSON: %v\n%s", err, body)
	}
	if s.App != "wc" || s.Worker.State != "RUNNING" || s.Worker.Version != "v1.2.3" || s.Worker.UptimeS < 3500 {
		t.Errorf("worker = %+v, want app wc, RUNNING, v1.2.3, up an hour", s.Worker)
	}
	if len(s.Workers) != 2 || !s.Workers[0].Self || s.Workers[1].ID != "w2" || s.Workers[1].State != "RUNNING" ||
		s.Workers[1].HTTP != "127.0.0.1:7067" || s.Workers[1].Partitions != 3 || s.Workers[1].UptimeS < 59 {
		t.Errorf("workers = %+v, want this one and w2 (RUNNING, 3 partitions, up a minute)", s.Workers)
	}
	var order []int32
	for _, p := range s.Partitions {
		order = append(order, p.Partition)
	}
	if fmt.Sprint(order) != "[2 1 0]" {
		t.Errorf("partitions in order %v, want [2 1 0] (stalled first, then by lag)", order)
	}
	if s.Partitions[0].Stalled != "frontier still" {
		t.Errorf("partition 2 stalled = %q, want the stall's reason", s.Partitions[0].Stalled)
	}
	if len(s.Agents) != 1 || s.Agents[0].Processed != 190 || s.Agents[0].Rate != 30 || s.Agents[0].Partitions != 2 ||
		s.Agents[0].Credit != 997 || len(s.Agents[0].Instances) != 1 {
		t.Errorf("agents = %+v, want count with 190 processed, 30/s, 2 partitions, credit 997, one instance", s.Agents)
	}
	if len(s.Restores) != 2 {
		t.Fatalf("restores = %+v, want one running and one finished", s.Restores)
	}
	run, fin := s.Restores[0], s.Restores[1]
	if run.Finished || run.Done != 250 || run.Total != 1000 || run.ETAMS < s.Now+1000 || run.ETAMS > s.Now+2000 {
		t.Errorf("running restore = %+v, want 250/1000 ending 1.5s after now (%d)", run, s.Now)
	}
	if !fin.Finished || fin.Done != 400 || fin.Total != 400 || !fin.Full || fin.Reason != "no local state" {
		t.Errorf("finished restore = %+v, want 400/400 full (no local state)", fin)
	}
	if len(s.Standbys) != 1 || s.Standbys[0].Lag != 10 {
		t.Errorf("standbys = %+v, want counts[3] with lag 10", s.Standbys)
	}
	if len(s.Tables) != 1 || s.Tables[0].Keys != 42 {
		t.Errorf("tables = %+v, want counts with 42 keys", s.Tables)
	}
	if s.Auth.TokenAllowed || s.Auth.TokenConfigured {
		t.Errorf("auth = %+v, want no token configured, none allowed from %s over plaintext", s.Auth, remote)
	}
}

func TestStateBadSince(t *testing.T) {
	d, _ := newDash(t, newFake(), Config{})
	code, body := do(t, d, "GET", "/dashboard/api/state?since=yesterday", loopback, "", false)
	if code != http.StatusBadRequest || !strings.Contains(body, `since=\"yesterday\"`) {
		t.Errorf("since=yesterday: %d %s, want 400 naming the value", code, body)
	}
}

func TestAuth(t *testing.T) {
	for _, tc := range []struct {
		name          string
		token         string
		protect       bool
		method, path  string
		from, sent    string
		tls           bool
		want          int
		wantInBody    string
		wantPausedNow bool
	}{
		{name: "read, no token configured", method: "GET", path: "/dashboard/api/state", from: remote, want: 200},
		{name: "pause, no token configured", method: "POST", path: "/dashboard/api/pause", from: loopback, want: 403, wantInBody: "read-only"},
		{name: "pause, no token sent", token: "s3", method: "POST", path: "/dashboard/api/pause", from: loopback, want: 401, wantInBody: "needs the worker's token"},
		{name: "pause, bad token", token: "s3", method: "POST", path: "/dashboard/api/pause", from: loopback, sent: "nope", want: 401, wantInBody: "bad token"},
		{name: "pause, token on loopback", token: "s3", method: "POST", path: "/dashboard/api/pause", from: loopback, sent: "s3", want: 200, wantPausedNow: true},
		{name: "pause, token over TLS", token: "s3", method: "POST", path: "/dashboard/api/pause", from: remote, sent: "s3", tls: true, want: 200, wantPausedNow: true},
		{name: "pause, token over plaintext from afar", token: "s3", method: "POST", path: "/dashboard/api/pause", from: remote, sent: "s3", want: 403, wantInBody: "only over TLS or from a loopback"},
		{name: "pause, IPv6 loopback", token: "s3", method: "POST", path: "/dashboard/api/pause", from: "[::1]:5000", sent: "s3", want: 200, wantPausedNow: true},
		{name: "pause, unknown agent", token: "s3", method: "POST", path: "/dashboard/api/pause?agent=nope", from: loopback, sent: "s3", want: 404, wantInBody: "nope"},
		{name: "read, protected, no token", token: "s3", protect: true, method: "GET", path: "/dashboard/api/state", from: loopback, want: 401},
		{name: "read, protected, token", token: "s3", protect: true, method: "GET", path: "/dashboard/api/state", from: loopback, sent: "s3", want: 200},
		{name: "read, protected, from afar", token: "s3", protect: true, method: "GET", path: "/dashboard/api/state", from: remote, want: 403, wantInBody: "only over TLS"},
		{name: "get, protected, no token", token: "s3", protect: true, method: "GET", path: "/dashboard/api/get?table=counts&key=a", from: loopback, want: 401},
		{name: "page itself, protected", token: "s3", protect: true, method: "GET", path: "/", from: remote, want: 200},
		{name: "pause by GET", token: "s3", method: "GET", path: "/dashboard/api/pause", from: loopback, sent: "s3", want: 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			d, _ := newDash(t, f, Config{Token: tc.token, ProtectReads: tc.protect})
			code, body := do(t, d, tc.method, tc.path, tc.from, tc.sent, tc.tls)
			if code != tc.want || !strings.Contains(body, tc.wantInBody) {
				t.Fatalf("got %d %s, want %d with %q", code, body, tc.want, tc.wantInBody)
			}
			if got := len(f.paused) > 0; got != tc.wantPausedNow {
				t.Errorf("paused = %v, want %v", got, tc.wantPausedNow)
			}
			if tc.want != 200 && tc.path != "/" && code != 405 {
				var e errorBody
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
					t.Errorf("error body %q: want JSON with an error (%v)", body, err)
				}
				if e.Auth.TokenConfigured != (tc.token != "") || e.Auth.ProtectReads != tc.protect {
					t.Errorf("error's auth = %+v, want token_configured %v protect_reads %v", e.Auth, tc.token != "", tc.protect)
				}
			}
		})
	}
}

func TestResume(t *testing.T) {
	f := newFake()
	d, _ := newDash(t, f, Config{Token: "s3"})
	if code, body := do(t, d, "POST", "/dashboard/api/pause?agent=count", loopback, "s3", false); code != 200 || !strings.Contains(body, `"PAUSED"`) {
		t.Fatalf("pause: %d %s", code, body)
	}
	code, body := do(t, d, "POST", "/dashboard/api/resume?agent=count", loopback, "s3", false)
	if code != 200 || !strings.Contains(body, `"state":"RUNNING","paused_agents":[]`) {
		t.Fatalf("resume: %d %s, want RUNNING and no paused agent", code, body)
	}
}

func TestGet(t *testing.T) {
	d, calls := newDash(t, newFake(), Config{})
	for _, tc := range []struct {
		query string
		want  int
		body  string
	}{
		{"table=counts&key=w1", 200, `"found":true,"value":"17","partition":4,"served_by":"w2"`},
		{"table=counts&key=missing", 200, `"found":false,"partition":5`},
		{"table=cnts&key=w1", 404, `unknown table`},
		{"table=counts&key=down", 502, `forwarding to the owner`},
		{"key=w1", 400, `table is required`},
		{"table=counts", 400, `key is required`},
	} {
		code, body := do(t, d, "GET", "/dashboard/api/get?"+tc.query, remote, "", false)
		if code != tc.want || !strings.Contains(body, tc.body) {
			t.Errorf("get %s: %d %s, want %d with %s", tc.query, code, body, tc.want, tc.body)
		}
	}
	if len(*calls) != 4 || (*calls)[0] != (getCall{"counts", "w1"}) {
		t.Errorf("Get calls = %v, want the 4 valid requests", *calls)
	}
}

func TestPageAndAssets(t *testing.T) {
	d, _ := newDash(t, newFake(), Config{})
	for _, tc := range []struct{ path, ctype, has string }{
		{"/", "text/html", `src="/dashboard/static/app.js"`},
		{"/dashboard/static/app.js", "javascript", "/dashboard/api/state"},
		{"/dashboard/static/app.css", "text/css", ".bar"},
	} {
		r := httptest.NewRequest("GET", tc.path, nil)
		w := httptest.NewRecorder()
		d.ServeHTTP(w, r)
		if w.Code != 200 || !strings.Contains(w.Header().Get("Content-Type"), tc.ctype) || !strings.Contains(w.Body.String(), tc.has) {
			t.Errorf("GET %s: %d %q, want 200 %s containing %q", tc.path, w.Code, w.Header().Get("Content-Type"), tc.ctype, tc.has)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", tc.path, csp)
		}
	}
	if code, _ := do(t, d, "GET", "/dashboard/static/nope.js", loopback, "", false); code != 404 {
		t.Errorf("unknown asset: %d, want 404", code)
	}
}

func TestSeriesRing(t *testing.T) {
	f := newFake()
	f.snap.Stalled = nil
	d, _ := newDash(t, f, Config{Interval: time.Second, History: 3 * time.Second})
	s := d.sampler
	t0 := time.UnixMilli(1_000_000)
	for i := range 5 {
		snap := monitor.Snapshot{Partitions: []monitor.PartitionSnapshot{{Agent: "count", Topic: "words", Partition: 0,
			Received: uint64(100 * i), Processed: uint64(50 * i), DeadLettered: uint64(i / 3), Lag: int64(i), EndToEndP99: time.Duration(i) * time.Millisecond}}}
		s.take(t0.Add(time.Duration(i)*time.Second), snap)
	}
	got := s.series(0)
	want := Series{T: []int64{1_002_000, 1_003_000, 1_004_000}, In: []float64{100, 100, 100}, Out: []float64{50, 50, 50},
		Lag: []int64{2, 3, 4}, E2EP99MS: []float64{2, 3, 4}, DLQ: []uint64{0, 1, 0}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("series = %+v,\nwant %+v (the last 3 of 5, oldest first)", got, want)
	}
	if got := s.series(1_003_000); fmt.Sprint(got.T) != "[1004000]" {
		t.Errorf("series since 1003000: t = %v, want [1004000]", got.T)
	}
	evs := s.events()
	if len(evs) != 1 || !strings.Contains(evs[0].Text, "1 dead letter(s) from words[0]") || evs[0].At != 1_003_000 {
		t.Errorf("events = %+v, want one dead letter at 1003000", evs)
	}
}

func TestEvents(t *testing.T) {
	f := newFake()
	d, _ := newDash(t, f, Config{})
	s := d.sampler
	at := time.Now().Add(-time.Second)
	f.status.KafkaErrors = []app.KafkaError{{At: at, Code: "_TRANSPORT", Message: "broker down"}}
	f.status.Errors = []string{`agent "count" is blocked`}
	s.take(time.Now(), f.Snapshot())
	s.take(time.Now(), f.Snapshot()) // nothing new: nothing twice
	f.mu.Lock()
	f.commitF = 2
	f.snap.Stalled = nil
	f.mu.Unlock()
	s.take(time.Now(), f.Snapshot())
	var texts []string
	for _, e := range s.events() {
		texts = append(texts, e.Level+": "+e.Text)
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{"warn: Kafka _TRANSPORT: broker down", `error: agent "count" is blocked`,
		"warn: stalled: count words[2]: frontier still", "info: no longer stalled: count words[2]", "error: 2 offset commit(s) failed"} {
		if strings.Count(all, want) != 1 {
			t.Errorf("events:\n%s\nwant %q once", all, want)
		}
	}
}

// TestRunTwice: Run refuses a second call and ends with its context.
func TestRunTwice(t *testing.T) {
	d, _ := newDash(t, newFake(), Config{Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	testutil.WaitFor(t, 5*time.Second, "samples", func() bool { return len(d.sampler.series(0).T) >= 2 })
	if err := d.Run(ctx); err == nil {
		t.Error("second Run: nil error, want a refusal")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v after cancel, want nil", err)
	}
}

// BenchmarkState64 is what one refresh of the page costs the worker with
// 64 partitions and a full 15-minute ring (the page asks for the samples
// since its last refresh: one).
func BenchmarkState64(b *testing.B) {
	f := newFake()
	f.snap.Partitions = nil
	f.snap.Stalled = nil
	for p := range int32(64) {
		f.snap.Partitions = append(f.snap.Partitions, monitor.PartitionSnapshot{Agent: "count", Topic: "words", Partition: p,
			Received: 1000, Processed: 900, Lag: int64(p), EndToEndP99: time.Duration(p) * time.Millisecond, EventsPerSecond: 100})
	}
	d := New(Config{Logger: testutil.QuietLogger(), Get: func(context.Context, string, []byte) (GetResult, error) { return GetResult{}, nil }}, f)
	now := time.Now()
	for i := range len(d.sampler.ring) {
		d.sampler.take(now.Add(time.Duration(i-len(d.sampler.ring))*time.Second), f.snap)
	}
	since := now.Add(-1500 * time.Millisecond).UnixMilli()
	target := fmt.Sprintf("/dashboard/api/state?since=%d", since)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("GET", target, nil)
		w := httptest.NewRecorder()
		d.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
