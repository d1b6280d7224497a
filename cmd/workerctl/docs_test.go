package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/internal/testutil"
)

// asMain makes the test binary run as workerctl, for tests that run shell
// snippets of the docs calling "workerctl".
const asMain = "EDDY_WORKERCTL_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
	}
	os.Exit(m.Run())
}

// fakeRecovery serves GetStatus and ListTables with what the test sets.
type fakeRecovery struct {
	eddyv1.UnimplementedLifecycleServiceServer
	eddyv1.UnimplementedTableServiceServer

	mu     sync.Mutex
	status *eddyv1.GetStatusResponse
	active []int32
}

func (f *fakeRecovery) set(st *eddyv1.GetStatusResponse, active ...int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.active = st, active
}

func (f *fakeRecovery) GetStatus(context.Context, *eddyv1.GetStatusRequest) (*eddyv1.GetStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return proto.CloneOf(f.status), nil
}

func (f *fakeRecovery) ListTables(context.Context, *eddyv1.ListTablesRequest) (*eddyv1.ListTablesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &eddyv1.ListTablesResponse{Tables: []*eddyv1.TableInfo{{Name: "counts", Partitions: 4, ActivePartitions: f.active}}}, nil
}

// TestRestoredLoop runs docs/workerctl.md's restored function (bash, jq and
// workerctl) against a fake worker: it holds while the worker starts, while
// a restore runs, while an owned partition has no finished restore or a
// failed one, and lets go once every owned partition is restored.
func TestRestoredLoop(t *testing.T) {
	for _, tool := range []string{"bash", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install it (Debian package %s; .ci/run does)", tool, tool)
		}
	}
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "workerctl.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```bash\n# restored:")
	snippet, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/workerctl.md has no restored function in a bash block")
	}
	snippet = strings.Replace(snippet, "until restored; do sleep 1; done", "restored", 1)

	f := &fakeRecovery{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	eddyv1.RegisterLifecycleServiceServer(srv, f)
	eddyv1.RegisterTableServiceServer(srv, f)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serve: %v", err)
		}
	})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(self, filepath.Join(dir, "workerctl")); err != nil {
		t.Fatal(err)
	}

	running := eddyv1.WorkerState_WORKER_STATE_RUNNING
	done := func(p int32, errText string) *eddyv1.LastRestore {
		return &eddyv1.LastRestore{Table: "counts", Partition: p, Error: errText}
	}
	tests := []struct {
		name     string
		status   *eddyv1.GetStatusResponse
		active   []int32
		restored bool
	}{
		{"starting", &eddyv1.GetStatusResponse{State: eddyv1.WorkerState_WORKER_STATE_STARTING}, nil, false},
		{"a restore under way", &eddyv1.GetStatusResponse{State: running, LastRestores: []*eddyv1.LastRestore{done(0, "")},
			Recovery: []*eddyv1.RecoveryProgress{{Table: "counts", Partition: 1, Done: 5, Total: 10}}}, []int32{0, 1}, false},
		{"an owned partition not restored yet", &eddyv1.GetStatusResponse{State: running,
			LastRestores: []*eddyv1.LastRestore{done(0, "")}}, []int32{0, 1}, false},
		{"a failed restore", &eddyv1.GetStatusResponse{State: running,
			LastRestores: []*eddyv1.LastRestore{done(0, ""), done(1, "no leader")}}, []int32{0, 1}, false},
		{"every owned partition restored", &eddyv1.GetStatusResponse{State: running,
			LastRestores: []*eddyv1.LastRestore{done(0, ""), done(1, ""), done(3, "")}}, []int32{0, 1}, true},
		{"no tables", &eddyv1.GetStatusResponse{State: running}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.set(tt.status, tt.active...)
			cmd := exec.CommandContext(t.Context(), "bash", "-c", snippet)
			cmd.Env = append(os.Environ(), asMain+"=1", "EDDY_ADDR="+lis.Addr().String(), "EDDY_TOKEN=",
				"PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			switch {
			case err == nil && !tt.restored:
				t.Errorf("restored says yes, want no")
			case err != nil && tt.restored:
				t.Errorf("restored says no (%v), want yes:\n%s", err, out)
			case err != nil && !errors.As(err, &exit):
				t.Fatalf("run bash: %v", err)
			}
		})
	}
}
