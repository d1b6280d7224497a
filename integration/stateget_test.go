package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
)

// TestStateGetOtherKey: an agent reads another key of its partition with
// Event.Get (StateGet): absent before it is written, its acknowledged value
// after; a key of another partition does not see it (tables are
// partitioned like the source topic).
func TestStateGetOtherKey(t *testing.T) {
	body, app, in, out := passApp(t, ", tables: [kv]")
	body += "tables:\n  - {name: kv}\n"
	w := startWorker(t, body)
	w.waitAssigned(t, 8)
	startAgent(t, w.GRPC, "pass", out, "--table", "kv")
	w.waitInstances(t, "pass", 1, 8)

	p0 := tables.KeyPartition([]byte("k0"), 8)
	var same, other string
	for i := 0; same == "" || other == ""; i++ {
		k := fmt.Sprintf("key-%d", i)
		if tables.KeyPartition([]byte(k), 8) == p0 {
			if same == "" {
				same = k
			}
		} else if other == "" {
			other = k
		}
	}
	c := newConsumer(t, out)
	valueOf := func(key string) string {
		t.Helper()
		got := c.readUntil(time.Minute, "the output of "+key, func(got map[string][]record) bool {
			for _, r := range got[out] {
				if r.Key == key {
					return true
				}
			}
			return false
		})
		for _, r := range got[out] {
			if r.Key == key {
				return r.Value
			}
		}
		return ""
	}

	produce(t, in, []string{same}, []string{"a"})
	if v := valueOf(same); v != "k0 absent" {
		t.Fatalf("before k0 is written, %s read %q, want \"k0 absent\"", same, v)
	}
	produce(t, in, []string{"k0"}, []string{"v1"})
	if v := valueOf("k0"); v != "v1" {
		t.Fatalf("k0's output %q, want v1", v)
	}
	// Done and committed: its changelog record is acknowledged.
	waitDrained(t, w, app, time.Minute, in)
	produce(t, in, []string{same}, []string{"b"})
	if v := valueOf(same); v != "k0=v1" {
		t.Errorf("after k0 is written, %s (partition %d, like k0) read %q, want \"k0=v1\"", same, p0, v)
	}
	produce(t, in, []string{other}, []string{"c"})
	if v := valueOf(other); v != "k0 absent" {
		t.Errorf("%s (another partition than k0's) read %q, want \"k0 absent\"", other, v)
	}
}
