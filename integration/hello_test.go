package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// TestAgentOfAnotherApp: an agent pointed at a worker of another app that
// declares an agent of the same name is refused with FAILED_PRECONDITION
// naming both apps, and takes no partition; a Hello without an app (an SDK
// older than the field) is still accepted, with a deprecation warning.
func TestAgentOfAnotherApp(t *testing.T) {
	body, app, _, out := passApp(t, "")
	w := startWorker(t, body)
	w.waitAssigned(t, 8)
	other := uniq(t, "billing")

	a := startAgent(t, w.GRPC, "pass", out, "--app", other, "--instance", "stray")
	select {
	case <-a.done:
	case <-time.After(time.Minute):
		t.Fatalf("the agent of app %q is still running against a worker of app %q:\n%s", other, app, a.log.String())
	}
	if got := a.cmd.ProcessState.ExitCode(); got != 1 {
		t.Errorf("agent exit status: got %d, want 1", got)
	}
	wantMsg := fmt.Sprintf(`hello.app %q does not match this worker's app %q`, other, app)
	for _, want := range []string{wantMsg, codes.FailedPrecondition.String(), "another app"} {
		if !strings.Contains(a.log.String(), want) {
			t.Errorf("agent log lacks %q:\n%s", want, a.log.String())
		}
	}
	for _, ag := range w.agents(t) {
		if n := len(ag.GetInstances()); n != 0 {
			t.Errorf("agent %s: got %d instances, want 0", ag.GetName(), n)
		}
	}

	// No app at all: accepted, deprecated.
	h := hello("pass", "old-sdk", 1)
	if _, err := dialRaw(t, w.GRPC, "", h); err != nil {
		t.Fatalf("Hello without app: got %v, want Welcome", err)
	}
	waitFor(t, 30*time.Second, "a deprecation warning in the worker log", func() bool {
		l := w.log.String()
		return strings.Contains(l, "deprecated") && strings.Contains(l, "old-sdk")
	})
}
