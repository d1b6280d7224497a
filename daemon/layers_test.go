package daemon_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestRuntimeImportsNoGRPC keeps the layers of docs/architecture.md: the
// runtime (worker/...) imports neither gRPC nor the server package; the
// process wiring that needs them lives here.
func TestRuntimeImportsNoGRPC(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/eddy-streams/eddy/worker/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "google.golang.org/grpc" || strings.HasPrefix(pkg, "google.golang.org/grpc/") ||
			pkg == "github.com/eddy-streams/eddy/server" {
			t.Errorf("the runtime (worker/...) depends on %s, want no gRPC and no server", pkg)
		}
	}
}
