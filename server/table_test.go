package server

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/app"
)

// fakeTables is the tables part of fakeCore: table "counts" holds values;
// keys in remote are owned by the worker at ownerAddr.
type fakeTables struct {
	workerID  string
	values    map[string]string
	remote    map[string]bool
	ownerAddr string

	mu        sync.Mutex
	forwarded []string // ForwardedHeader values seen by TableGet
	lastScan  [3]any   // prefix, limit, token
}

func (f *fakeTables) TableInfos(context.Context) ([]app.TableInfo, error) {
	return []app.TableInfo{{Name: "counts", Partitions: 4, ChangelogTopic: "demo-counts-changelog", StandbyReplicas: 1,
		ActivePartitions: []int32{0, 2}, StandbyPartitions: []int32{1}, Keys: int64(len(f.values))}}, nil
}

func (f *fakeTables) TableGet(ctx context.Context, table string, key []byte, _ *time.Time) (app.TableValue, error) {
	f.mu.Lock()
	f.forwarded = append(f.forwarded, metadata.ValueFromIncomingContext(ctx, ForwardedHeader)...)
	f.mu.Unlock()
	if table != "counts" {
		return app.TableValue{}, &app.UnknownTableError{Name: table, Declared: []string{"counts"}}
	}
	if f.remote[string(key)] {
		return app.TableValue{}, &app.NotOwnedError{Table: table, Partition: 3, WorkerID: "other", Addr: f.ownerAddr}
	}
	v, ok := f.values[string(key)]
	if !ok {
		return app.TableValue{}, fmt.Errorf("key %q in table %q (partition 1): %w", key, table, app.ErrKeyNotFound)
	}
	return app.TableValue{Value: []byte(v), Partition: 1, ServedBy: f.workerID}, nil
}

func (f *fakeTables) TableScan(_ context.Context, table string, prefix []byte, limit int, token string) (app.ScanPage, error) {
	f.mu.Lock()
	f.lastScan = [3]any{string(prefix), limit, token}
	f.mu.Unlock()
	if token == "bad" {
		return app.ScanPage{}, fmt.Errorf("%w: %q is not a page token returned by Scan", app.ErrBadPageToken, token)
	}
	return app.ScanPage{Entries: []agents.TableEntry{{Key: []byte("a"), Value: []byte("1"), Partition: 2}},
		NextPageToken: "next", Partitions: []int32{0, 2}, ServedBy: f.workerID}, nil
}

func TestTableService(t *testing.T) {
	core := &fakeCore{fakeTables: fakeTables{workerID: "w1", values: map[string]string{"a": "1"}}}
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
	if err != nil || string(g.Value) != "1" || g.ServedBy != "w1" {
		t.Fatalf("Get a = %v, %v; want 1 served by w1", g, err)
	}
	sc, err := tc.Scan(ctx, &eddyv1.ScanRequest{Table: "counts", Prefix: []byte("a")})
	if err != nil || len(sc.Entries) != 1 || sc.NextPageToken != "next" || len(sc.Partitions) != 2 {
		t.Fatalf("Scan = %v, %v", sc, err)
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
	if err != nil || string(g.Value) != "42" || g.ServedBy != "w2" {
		t.Fatalf("Get far = %v, %v; want 42 served by w2", g, err)
	}
	if _, err := tc.Get(ctx, &eddyv1.GetRequest{Table: "counts", Key: []byte("gone")}); status.Code(err) != codes.NotFound {
		t.Errorf("Get gone: %v, want the owner's NotFound", err)
	}
	_, err = tc.Get(ctx, &eddyv1.GetRequest{Table: "counts", Key: []byte("moved")})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "forwarded") {
		t.Errorf("Get moved: %v, want Unavailable (no second forward)", err)
	}
	owner.mu.Lock()
	defer owner.mu.Unlock()
	if len(owner.forwarded) != 3 || owner.forwarded[0] != "w1" {
		t.Errorf("owner saw forwarded-by %v, want w1 three times", owner.forwarded)
	}
}

func FuzzValidateTableRequests(f *testing.F) {
	f.Add("counts", []byte("k"), uint32(0), int64(0))
	f.Add("", []byte{}, uint32(20000), int64(-1))
	f.Fuzz(func(t *testing.T, table string, key []byte, limit uint32, secs int64) {
		g := &eddyv1.GetRequest{Table: table, Key: key}
		if secs != 0 {
			g.WindowStart = timestamppb.New(time.Unix(secs, 0))
		}
		if err := validateGet(g); err == nil && (table == "" || len(key) == 0) {
			t.Errorf("validateGet accepted %v", g)
		}
		s := &eddyv1.ScanRequest{Table: table, Limit: limit}
		if err := validateScan(s); err == nil && (table == "" || limit > app.MaxScanLimit) {
			t.Errorf("validateScan accepted %v", s)
		}
	})
}
