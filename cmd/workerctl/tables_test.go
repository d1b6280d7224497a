package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// fakeTables serves eddy.v1.TableService on 127.0.0.1: table "counts"
// with keys a..e, scanned in pages by a token that is the last key.
type fakeTables struct {
	eddyv1.UnsafeTableServiceServer

	mu    sync.Mutex
	scans []*eddyv1.ScanRequest
}

var fakeCounts = []string{"a", "b", "c", "d", "e"}

func startFakeTables(t *testing.T) (*fakeTables, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	f := &fakeTables{}
	srv := grpc.NewServer()
	eddyv1.RegisterTableServiceServer(srv, f)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("fake tables: serve: %v", err)
		}
	})
	return f, lis.Addr().String()
}

func (f *fakeTables) ListTables(context.Context, *eddyv1.ListTablesRequest) (*eddyv1.ListTablesResponse, error) {
	return &eddyv1.ListTablesResponse{Tables: []*eddyv1.TableInfo{{
		Name: "counts", Partitions: 8, ChangelogTopic: "wc-counts-changelog", StandbyReplicas: 1,
		ActivePartitions: []int32{0, 1, 2, 5}, StandbyPartitions: []int32{3}, Keys: 1234,
	}}}, nil
}

func (f *fakeTables) Get(_ context.Context, req *eddyv1.GetRequest) (*eddyv1.GetResponse, error) {
	if req.Table != "counts" {
		return nil, status.Errorf(codes.NotFound, "unknown table %q: declared tables are \"counts\"", req.Table)
	}
	if req.WindowStart != nil {
		return &eddyv1.GetResponse{Value: []byte(fmt.Sprintf("window %d", req.WindowStart.AsTime().UnixMilli())), Partition: 3, ServedBy: "w2"}, nil
	}
	if string(req.Key) == "missing" {
		return nil, status.Error(codes.NotFound, `key "missing" in table "counts" (partition 3): key not found`)
	}
	return &eddyv1.GetResponse{Value: []byte("42"), Partition: 3, ServedBy: "w2"}, nil
}

func (f *fakeTables) Scan(_ context.Context, req *eddyv1.ScanRequest) (*eddyv1.ScanResponse, error) {
	f.mu.Lock()
	f.scans = append(f.scans, req)
	f.mu.Unlock()
	resp := &eddyv1.ScanResponse{Partitions: []int32{0, 1, 2}, ServedBy: "w1"}
	limit := int(req.Limit)
	for _, k := range fakeCounts {
		if k <= req.PageToken || !strings.HasPrefix(k, string(req.Prefix)) {
			continue
		}
		if len(resp.Entries) == limit {
			resp.NextPageToken = string(resp.Entries[limit-1].Key)
			break
		}
		resp.Entries = append(resp.Entries, &eddyv1.Entry{Key: []byte(k), Value: []byte("1"), Partition: 1})
	}
	return resp, nil
}

func TestTablesCommand(t *testing.T) {
	_, addr := startFakeTables(t)
	res := runCLI(t, nil, "--addr", addr, "tables")
	if res.code != exitOK {
		t.Fatalf("exit code %v, stderr %q", res.code, res.stderr)
	}
	for _, want := range []string{"counts", "0-2,5", "1234", "wc-counts-changelog"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("tables output lacks %q:\n%s", want, res.stdout)
		}
	}
	res = runCLI(t, nil, "--addr", addr, "tables", "-o", "json")
	var js struct {
		Tables []struct {
			Name              string  `json:"name"`
			StandbyPartitions []int32 `json:"standby_partitions"`
		} `json:"tables"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &js); err != nil || len(js.Tables) != 1 || js.Tables[0].StandbyPartitions[0] != 3 {
		t.Errorf("tables -o json = %q (%v)", res.stdout, err)
	}
}

func TestGetCommand(t *testing.T) {
	_, addr := startFakeTables(t)
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"get", "counts", "kafka"}, exitOK, "kafka  42     3          w2", ""},
		{[]string{"get", "counts", "missing"}, exitError, "", "key not found"},
		{[]string{"get", "cnts", "x"}, exitError, "", `declared tables are "counts"`},
		{[]string{"get", "counts"}, exitUsage, "", "accepts 2 arg"},
		{[]string{"get", "counts", "kafka", "--window-start", "2023-11-14T22:13:00Z"}, exitOK, "window 1699999980000", ""},
		{[]string{"get", "counts", "kafka", "--window-start", "1699999980000"}, exitOK, "window 1699999980000", ""},
		{[]string{"get", "counts", "kafka", "--window-start", "yesterday"}, exitUsage, "", `invalid --window-start "yesterday"`},
		// The key, base64 as protojson writes bytes ("kafka"), beside the value ("42").
		{[]string{"get", "counts", "kafka", "-o", "json"}, exitOK, `"key": "a2Fma2E="`, ""},
		{[]string{"get", "counts", "kafka", "-o", "json"}, exitOK, `"value": "NDI="`, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			res := runCLI(t, nil, append([]string{"--addr", addr}, tt.args...)...)
			if res.code != tt.code || !strings.Contains(res.stdout, tt.stdout) || !strings.Contains(res.stderr, tt.stderr) {
				t.Errorf("got code %v stdout %q stderr %q; want %v, %q, %q", res.code, res.stdout, res.stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

func TestScanCommand(t *testing.T) {
	f, addr := startFakeTables(t)
	res := runCLI(t, nil, "--addr", addr, "scan", "counts", "--limit", "2")
	if res.code != exitOK || !strings.Contains(res.stdout, "--page-token b") || strings.Contains(res.stdout, "\nc ") {
		t.Errorf("one page: code %v stdout:\n%s", res.code, res.stdout)
	}
	res = runCLI(t, nil, "--addr", addr, "scan", "counts", "--limit", "2", "--all", "-o", "json")
	var js struct {
		Entries []struct {
			Key []byte `json:"key"`
		} `json:"entries"`
		Next string `json:"next_page_token"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &js); err != nil || len(js.Entries) != 5 || js.Next != "" {
		t.Errorf("--all -o json: %d entries, next %q, err %v:\n%s", len(js.Entries), js.Next, err, res.stdout)
	}
	res = runCLI(t, nil, "--addr", addr, "scan", "counts", "--prefix", "d")
	if !strings.Contains(res.stdout, "1 entries") || !strings.Contains(res.stdout, "partitions 0-2, served by worker w1") {
		t.Errorf("--prefix d:\n%s", res.stdout)
	}
	if res := runCLI(t, nil, "--addr", addr, "scan", "counts", "--limit", "20000"); res.code != exitUsage {
		t.Errorf("--limit 20000: code %v, want usage", res.code)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if last := f.scans[len(f.scans)-1]; string(last.Prefix) != "d" || last.Limit != 100 {
		t.Errorf("last scan request %v, want prefix d, limit 100", last)
	}
}
