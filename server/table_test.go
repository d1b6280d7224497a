package server

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/app"
	"github.com/eddy-streams/eddy/worker/tables/live"
)

// fakeTables is the tables part of fakeCore: table "counts" (4 partitions)
// holds values for Get; keys in remote are owned by the worker at
// ownerAddr. Scan reads entries of the partitions in scanParts (all when
// nil); owners answer TableOwners.
type fakeTables struct {
	workerID  string
	values    map[string]string
	remote    map[string]bool
	ownerAddr string
	entries   []live.Entry
	scanParts []int32
	owners    []live.Owner

	mu        sync.Mutex
	forwarded []string // ForwardedHeader values seen by TableGet
	lastScan  [3]any   // prefix, limit, token
	refreshed int      // TableOwners calls with refresh
	sent      []app.SendRecord
}

// entryCmp orders entries as every scan does.
var entryCmp = live.CompareEntries

func intersect(a, b []int32) []int32 {
	var out []int32
	for _, p := range a {
		if slices.Contains(b, p) {
			out = append(out, p)
		}
	}
	return out
}

func (f *fakeTables) TableInfos(context.Context) ([]app.TableInfo, error) {
	return []app.TableInfo{{Name: "counts", Partitions: 4, ChangelogTopic: "demo-counts-changelog", StandbyReplicas: 1,
		ActivePartitions: []int32{0, 2}, StandbyPartitions: []int32{1}, Keys: int64(len(f.values))}}, nil
}

func (f *fakeTables) TableGet(ctx context.Context, table string, key []byte, _ *time.Time) (live.Value, error) {
	f.mu.Lock()
	f.forwarded = append(f.forwarded, metadata.ValueFromIncomingContext(ctx, ForwardedHeader)...)
	f.mu.Unlock()
	if table != "counts" {
		return live.Value{}, &app.UnknownTableError{Name: table, Declared: []string{"counts"}}
	}
	if f.remote[string(key)] {
		return live.Value{}, &live.NotOwnedError{Table: table, Partition: 3, WorkerID: "other", Addr: f.ownerAddr}
	}
	v, ok := f.values[string(key)]
	if !ok {
		return live.Value{}, fmt.Errorf("key %q in table %q (partition 1): %w", key, table, live.ErrKeyNotFound)
	}
	return live.Value{Value: []byte(v), Partition: 1, ServedBy: f.workerID}, nil
}

func (f *fakeTables) owned() []int32 {
	if f.scanParts == nil {
		return []int32{0, 1, 2, 3}
	}
	return f.scanParts
}

func (f *fakeTables) TableScan(_ context.Context, table string, prefix []byte, limit int, token string, only []int32) (live.Page, error) {
	f.mu.Lock()
	f.lastScan = [3]any{string(prefix), limit, token}
	f.mu.Unlock()
	if table != "counts" {
		return live.Page{}, &app.UnknownTableError{Name: table, Declared: []string{"counts"}}
	}
	from, err := live.DecodePageToken(token)
	if token == "bad" || err != nil {
		return live.Page{}, fmt.Errorf("%w: %q is not a page token returned by Scan", live.ErrBadPageToken, token)
	}
	parts := f.owned()
	if len(only) > 0 {
		parts = intersect(parts, only)
	}
	var es []live.Entry
	for _, e := range f.entries {
		if slices.Contains(parts, e.Partition) && bytes.HasPrefix(e.Key, prefix) &&
			(!from.Set || entryCmp(e, live.Entry{Key: from.Key, Partition: from.Partition}) > 0) {
			es = append(es, e)
		}
	}
	slices.SortFunc(es, entryCmp)
	page := live.Page{Partitions: parts, ServedBy: f.workerID}
	if len(es) > limit {
		es = es[:limit]
		page.More = true
	}
	page.Entries = es
	return page, nil
}

func (f *fakeTables) TableWindowed(table string) bool { return table == "windowed" }

func (f *fakeTables) TablePartitions(table string) (int32, error) {
	if table != "counts" {
		return 0, &app.UnknownTableError{Name: table, Declared: []string{"counts"}}
	}
	return 4, nil
}

func (f *fakeTables) TableOwners(_ context.Context, table string, parts []int32, refresh bool) ([]live.Owner, error) {
	f.mu.Lock()
	if refresh {
		f.refreshed++
	}
	owners := f.owners
	f.mu.Unlock()
	var out []live.Owner
	left := slices.Clone(parts)
	for _, o := range owners {
		if in := intersect(o.Partitions, parts); len(in) > 0 {
			out = append(out, live.Owner{WorkerID: o.WorkerID, Addr: o.Addr, Partitions: in})
			left = slices.DeleteFunc(left, func(p int32) bool { return slices.Contains(in, p) })
		}
	}
	if len(left) > 0 {
		return nil, fmt.Errorf("%w: table %q partitions %v are assigned to no other worker", app.ErrUnavailable, table, left)
	}
	return out, nil
}

func TestTableService(t *testing.T) {
	core := &fakeCore{fakeTables: fakeTables{workerID: "w1", values: map[string]string{"a": "1"},
		entries: []live.Entry{{Key: []byte("a"), Value: []byte("1"), Partition: 2}, {Key: []byte("ab"), Value: []byte("2"), Partition: 0}}}}
	tc := eddyv1.NewTableServiceClient(serve(t, Config{}, core))
	ctx := context.Background()

	lt, err := tc.ListTables(ctx, &eddyv1.ListTablesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := lt.Tables[0]; got.Keys != 1 || len(got.ActivePartitions) != 2 || len(got.StandbyPartitions) != 1 {
		t.Errorf("ListTables = %v, want keys 1, active [0 2], standby [1]", got)
	}
	g, err := tc.Get(ctx, &eddyv1.GetRequest{Table: "counts", Key: []byte("a")})
	if err != nil || string(g.Value) != "1" || g.ServedBy != "w1" || string(g.Key) != "a" {
		t.Fatalf("Get a = %v, %v; want key a, 1 served by w1", g, err)
	}
	sc, err := tc.Scan(ctx, &eddyv1.ScanRequest{Table: "counts", Prefix: []byte("a"), Limit: 1})
	if err != nil || len(sc.Entries) != 1 || string(sc.Entries[0].Key) != "a" || sc.NextPageToken == "" || len(sc.Partitions) != 4 {
		t.Fatalf("Scan = %v, %v; want a, a next page, 4 partitions", sc, err)
	}
	sc, err = tc.Scan(ctx, &eddyv1.ScanRequest{Table: "counts", Prefix: []byte("a"), PageToken: sc.NextPageToken})
	if err != nil || len(sc.Entries) != 1 || string(sc.Entries[0].Key) != "ab" || sc.NextPageToken != "" {
		t.Fatalf("Scan page 2 = %v, %v; want ab and the end", sc, err)
	}

	tests := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"unknown table", func() error {
			_, err := tc.Get(ctx, &eddyv1.GetRequest{Table: "cnts", Key: []byte("a")})
			return err
		}, codes.NotFound, `declared tables are "counts"`},
		{"missing key", func() error {
			_, err := tc.Get(ctx, &eddyv1.GetRequest{Table: "counts", Key: []byte("zz")})
			return err
		}, codes.NotFound, `key "zz"`},
		{"empty key", func() error {
			_, err := tc.Get(ctx, &eddyv1.GetRequest{Table: "counts"})
			return err
		}, codes.InvalidArgument, "key is required"},
		{"bad page token", func() error {
			_, err := tc.Scan(ctx, &eddyv1.ScanRequest{Table: "counts", PageToken: "bad"})
			return err
		}, codes.InvalidArgument, "page token"},
		{"limit too large", func() error {
			_, err := tc.Scan(ctx, &eddyv1.ScanRequest{Table: "counts", Limit: 10001})
			return err
		}, codes.InvalidArgument, "maximum of 10000"},
		{"no table", func() error {
			_, err := tc.Scan(ctx, &eddyv1.ScanRequest{})
			return err
		}, codes.InvalidArgument, "table is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Errorf("got %v, want %v mentioning %q", err, tt.code, tt.msg)
			}
		})
	}
}

// TestGetForwarded: a key of a partition owned elsewhere is read from the
// owner, marked as forwarded; the owner answers it (or its error) and never
// forwards it again.
func TestGetForwarded(t *testing.T) {
	owner := &fakeCore{fakeTables: fakeTables{workerID: "w2", values: map[string]string{"far": "42"},
		remote: map[string]bool{"moved": true}, ownerAddr: "127.0.0.1:1"}}
	ownerConn := serve(t, Config{Token: "tok", ProtectReads: true}, owner)
	core := &fakeCore{fakeTables: fakeTables{workerID: "w1", values: map[string]string{},
		remote: map[string]bool{"far": true, "gone": true, "moved": true}, ownerAddr: ownerConn.Target()}}
	tc := eddyv1.NewTableServiceClient(serve(t, Config{Token: "tok", ProtectReads: true}, core))
	ctx := withToken(context.Background(), "tok")

	g, err := tc.Get(ctx, &eddyv1.GetRequest{Table: "counts", Key: []byte("far")})
	if err != nil || string(g.Value) != "42" || g.ServedBy != "w2" || string(g.Key) != "far" {
		t.Fatalf("Get far = %v, %v; want key far, 42 served by w2", g, err)
	}
	if _, err := tc.Get(ctx, &eddyv1.GetRequest{Table: "counts", Key: []byte("gone")}); status.Code(err) != codes.NotFound {
		t.Errorf("Get gone: %v, want the owner's NotFound", err)
	}
	_, err = tc.Get(ctx, &eddyv1.GetRequest{Table: "counts", Key: []byte("moved")})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "forwarded") {
		t.Errorf("Get moved: %v, want Unavailable (no second forward)", err)
	}
	owner.mu.Lock()
	if len(owner.forwarded) != 3 || owner.forwarded[0] != "w1" {
		t.Errorf("owner saw forwarded-by %v, want w1 three times", owner.forwarded)
	}
	owner.mu.Unlock()

	// The cached owner lost the partition to w3: a fresh description
	// names w3, which answers.
	newOwner := &fakeCore{fakeTables: fakeTables{workerID: "w3", values: map[string]string{"moved": "7"}}}
	core.mu.Lock()
	core.owners = []live.Owner{{WorkerID: "w3", Addr: serve(t, Config{Token: "tok", ProtectReads: true}, newOwner).Target(), Partitions: []int32{3}}}
	core.mu.Unlock()
	g, err = tc.Get(ctx, &eddyv1.GetRequest{Table: "counts", Key: []byte("moved")})
	if err != nil || string(g.Value) != "7" || g.ServedBy != "w3" {
		t.Errorf("Get moved after the owner changed = %v, %v; want 7 served by w3", g, err)
	}
}

// scanAll walks every page of a scan and returns "key/partition=value ".
func scanAll(t *testing.T, tc eddyv1.TableServiceClient, req *eddyv1.ScanRequest) (string, *eddyv1.ScanResponse) {
	t.Helper()
	var b strings.Builder
	var last *eddyv1.ScanResponse
	for range 1000 {
		r, err := tc.Scan(context.Background(), req)
		if err != nil {
			t.Fatalf("Scan %v: %v", req, err)
		}
		if len(r.Entries) > int(req.Limit) && req.Limit > 0 {
			t.Fatalf("page of %d entries for limit %d", len(r.Entries), req.Limit)
		}
		for _, e := range r.Entries {
			fmt.Fprintf(&b, "%s/%d=%s ", e.Key, e.Partition, e.Value)
		}
		last = r
		if r.NextPageToken == "" {
			return b.String(), last
		}
		req = &eddyv1.ScanRequest{Table: req.Table, Prefix: req.Prefix, Limit: req.Limit, PageToken: r.NextPageToken}
	}
	t.Fatal("scan did not end in 1000 pages")
	return "", nil
}

// TestScanFannedOut: a scan on any worker covers every partition, in
// (key, partition) order, whatever the page size: the asked worker reads
// its partitions and merges the owner's pages of the others without
// skipping or repeating an entry; a partition that moved is an error, not
// a silent gap.
func TestScanFannedOut(t *testing.T) {
	var all []live.Entry
	for i := range 23 {
		// Keys interleave across partitions; "k07" is in two partitions.
		all = append(all, live.Entry{Key: fmt.Appendf(nil, "k%02d", i), Value: fmt.Appendf(nil, "%d", i), Partition: int32(i*7) % 4})
	}
	all = append(all, live.Entry{Key: []byte("k07"), Value: []byte("x"), Partition: 2})
	sorted := slices.Clone(all)
	slices.SortFunc(sorted, entryCmp)
	var want, wantK1 strings.Builder
	for _, e := range sorted {
		fmt.Fprintf(&want, "%s/%d=%s ", e.Key, e.Partition, e.Value)
		if bytes.HasPrefix(e.Key, []byte("k1")) {
			fmt.Fprintf(&wantK1, "%s/%d=%s ", e.Key, e.Partition, e.Value)
		}
	}

	owner := &fakeCore{fakeTables: fakeTables{workerID: "w2", entries: all, scanParts: []int32{1, 3}}}
	ownerConn := serve(t, Config{}, owner)
	core := &fakeCore{fakeTables: fakeTables{workerID: "w1", entries: all, scanParts: []int32{0, 2},
		owners: []live.Owner{{WorkerID: "w2", Addr: ownerConn.Target(), Partitions: []int32{1, 3}}}}}
	tc := eddyv1.NewTableServiceClient(serve(t, Config{}, core))

	for _, limit := range []uint32{1, 2, 3, 5, 24, 0} {
		got, last := scanAll(t, tc, &eddyv1.ScanRequest{Table: "counts", Limit: limit})
		if got != want.String() {
			t.Errorf("limit %d:\n got %s\nwant %s", limit, got, want.String())
		}
		if !slices.Equal(last.Partitions, []int32{0, 1, 2, 3}) || !slices.Equal(last.ForwardedTo, []string{"w2"}) || last.ServedBy != "w1" {
			t.Errorf("limit %d: partitions %v forwarded to %v served by %s; want 0-3, w2, w1", limit, last.Partitions, last.ForwardedTo, last.ServedBy)
		}
	}
	if got, _ := scanAll(t, tc, &eddyv1.ScanRequest{Table: "counts", Prefix: []byte("k1"), Limit: 4}); got != wantK1.String() {
		t.Errorf("prefix k1:\n got %s\nwant %s", got, wantK1.String())
	}

	// The owner no longer holds partition 3: asked again from a fresh
	// description, still missing, so the scan fails naming it.
	owner.mu.Lock()
	owner.scanParts = []int32{1}
	owner.mu.Unlock()
	_, err := tc.Scan(context.Background(), &eddyv1.ScanRequest{Table: "counts"})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "partitions [3] moved") {
		t.Errorf("scan with a moved partition: %v, want Unavailable naming partition 3", err)
	}
	core.mu.Lock()
	if core.refreshed != 1 {
		t.Errorf("owners refreshed %d times, want 1", core.refreshed)
	}
	core.mu.Unlock()

	// The owner is unreachable: Unavailable naming the partitions and why.
	core.mu.Lock()
	core.owners = []live.Owner{{WorkerID: "w9", Addr: "127.0.0.1:1", Partitions: []int32{1, 3}}}
	core.mu.Unlock()
	_, err = tc.Scan(context.Background(), &eddyv1.ScanRequest{Table: "counts"})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "partitions [1 3] could not be read") || !strings.Contains(err.Error(), `worker "w9" at 127.0.0.1:1`) {
		t.Errorf("scan with an unreachable owner: %v, want Unavailable naming partitions 1, 3 and worker w9", err)
	}

	// A bad token is the asked worker's InvalidArgument; no owner: Unavailable.
	if _, err := tc.Scan(context.Background(), &eddyv1.ScanRequest{Table: "counts", PageToken: "bad"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad token: %v", err)
	}
	core.mu.Lock()
	core.owners = nil
	core.mu.Unlock()
	if _, err := tc.Scan(context.Background(), &eddyv1.ScanRequest{Table: "counts"}); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "[1 3]") {
		t.Errorf("no owner: %v, want Unavailable naming partitions 1 and 3", err)
	}
}
