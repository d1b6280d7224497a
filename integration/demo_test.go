package integration

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestDemo runs scripts/demo.sh, the path behind `make demo`, on the
// embedded broker, non-interactively.
func TestDemo(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts/demo.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"BIN="+filepath.Dir(bin(t, "worker")),
		"DEMO_AUTO=1",
		"DEMO_GRPC="+freeAddr(t),
		"DEMO_HTTP="+freeAddr(t),
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{
		"RUNNING",
		"DEV ONLY",
		"eddy.v1.LifecycleService",
		"orders-eu order-002",
		"orders-us order-001",
		"demo-router-dlq order-007",
		"INSTANCES",
		"WORKER_STATE_RUNNING",
		"worker exited with status 0",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output: want %q in\n%s", want, out)
		}
	}
}

// TestReadmeGrpcurl: the README's grpcurl lines run the grpcurl that `make
// demo` builds (bin/grpcurl), not one assumed on PATH.
func TestReadmeGrpcurl(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(makefile), "-o $(BIN)/grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl") {
		t.Fatal("the Makefile's demo target no longer builds bin/grpcurl: fix the README's grpcurl lines with it")
	}
	n := 0
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.Contains(line, "grpcurl -plaintext") {
			n++
			if !strings.HasPrefix(strings.TrimSpace(line), "bin/grpcurl ") {
				t.Errorf("README runs a grpcurl on PATH: %q; make demo builds bin/grpcurl", line)
			}
		}
	}
	if n == 0 {
		t.Error("README shows no grpcurl command")
	}
}
