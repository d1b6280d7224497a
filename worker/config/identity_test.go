package config

import (
	"strings"
	"testing"
)

// TestResolveWorkerID: at_least_once takes host-pid; exactly_once keeps
// the identity it created in data_dir, so a restart has the same one; a
// configured worker_id wins.
func TestResolveWorkerID(t *testing.T) {
	c := DefaultConfig()
	if err := c.ResolveWorkerID("h", 42); err != nil || c.WorkerID != "h-42" {
		t.Fatalf("at_least_once: %q, %v; want h-42", c.WorkerID, err)
	}
	dir := t.TempDir()
	first := DefaultConfig()
	first.ProcessingGuarantee, first.DataDir = ExactlyOnce, dir+"/data"
	if err := first.ResolveWorkerID("h", 1); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(first.WorkerID, "h-") || first.WorkerID == "h-1" {
		t.Fatalf("exactly_once first start: %q, want h-<random>", first.WorkerID)
	}
	again := DefaultConfig()
	again.ProcessingGuarantee, again.DataDir = ExactlyOnce, dir+"/data"
	if err := again.ResolveWorkerID("h", 2); err != nil || again.WorkerID != first.WorkerID {
		t.Fatalf("exactly_once restart: %q, %v; want the same id %q", again.WorkerID, err, first.WorkerID)
	}
	set := DefaultConfig()
	set.ProcessingGuarantee, set.DataDir, set.WorkerID = ExactlyOnce, dir+"/data", "w1"
	if err := set.ResolveWorkerID("h", 3); err != nil || set.WorkerID != "w1" {
		t.Fatalf("configured: %q, %v; want w1", set.WorkerID, err)
	}
}
