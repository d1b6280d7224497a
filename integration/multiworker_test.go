package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// TestAgentsReachEveryWorker: two agent processes, each given one worker's
// address, serve every partition of every worker of the app (docs/agents.md,
// "Several workers"): with two workers, then when a third joins, then when
// one of the three is killed -9 and the group gives its partitions to the
// others. Checked from the workers' ListAgents and status, with an
// independent consumer reading every input's output, and from the agents'
// logs (they leave the dead worker).
func TestAgentsReachEveryWorker(t *testing.T) {
	body, _, in, out := passApp(t, "")
	ws := []*workerProc{startWorker(t, body), startWorker(t, body)}
	for _, w := range ws {
		w.waitState(t, 60*time.Second, "RUNNING")
	}
	ags := []*agentProc{
		startAgent(t, ws[0].GRPC, "pass", out, "--discovery", "300ms", "--instance", "a1"),
		startAgent(t, ws[1].GRPC, "pass", out, "--discovery", "300ms", "--instance", "a2"),
	}
	allServed(t, in, ws, "two workers")

	ws = append(ws, startWorker(t, body))
	allServed(t, in, ws, "a third worker joined")
	// workerctl status --all, from any one worker, shows all three.
	outAll, errAll, code := ws[2].ctl(t, "status", "--all", "-o", "json")
	var all struct {
		Workers []struct {
			GrpcAddress string `json:"grpc_address"`
			Status      struct {
				State string `json:"state"`
			} `json:"status"`
		} `json:"workers"`
	}
	if err := json.Unmarshal([]byte(outAll), &all); code != 0 || err != nil || len(all.Workers) != 3 {
		t.Errorf("status --all: exit %d, %v, %d workers, want 3:\n%s%s", code, err, len(all.Workers), outAll, errAll)
	}
	for _, w := range all.Workers {
		if w.Status.State != "WORKER_STATE_RUNNING" || !slices.ContainsFunc(ws, func(p *workerProc) bool { return p.GRPC == w.GrpcAddress }) {
			t.Errorf("status --all: worker at %s in state %s, want one of the three, RUNNING", w.GrpcAddress, w.Status.State)
		}
	}
	keys, values := keyedValues(800, 200)
	produce(t, in, keys, values)
	outs := newConsumer(t, out).readUntil(90*time.Second, "the outputs of the first 800 inputs", countAtLeast(out, len(values)))
	checkOutputs(t, values, outs[out], false)
	parts := map[string]bool{}
	for _, r := range outs[out] {
		parts[r.Headers["src.partition"]] = true
	}
	if len(parts) != 8 {
		t.Errorf("outputs came from source partitions %v, want all 8", parts)
	}

	victim := ws[1]
	victim.signal(syscall.SIGKILL)
	victim.wait(10 * time.Second)
	ws = []*workerProc{ws[0], ws[2]}
	allServed(t, in, ws, "a worker killed -9")
	for i, a := range ags {
		left := regexp.MustCompile(`msg="leaving a worker" .*addr=` + regexp.QuoteMeta(victim.GRPC) + ` `)
		waitFor(t, 30*time.Second, fmt.Sprintf("agent %d to leave the dead worker", i+1), func() bool {
			return left.MatchString(a.log.String())
		})
	}
	keys2, values2 := keyedValues(800, 200)
	for i := range values2 {
		values2[i] = "after:" + values2[i]
		keys2[i] = "after-" + keys2[i]
	}
	c := newConsumer(t, out)
	produce(t, in, keys2, values2)
	outs = c.readUntil(90*time.Second, "the outputs of the 800 inputs after the kill", func(got map[string][]record) bool {
		n := 0
		for _, r := range got[out] {
			if strings.HasPrefix(r.Value, "after:") {
				n++
			}
		}
		return n >= len(values2)
	})
	var after []record
	for _, r := range outs[out] {
		if strings.HasPrefix(r.Value, "after:") {
			after = append(after, r)
		}
	}
	checkOutputs(t, values2, after, false)
}

// allServed waits until the workers own the 8 partitions of topic between
// them and each worker has both agent instances connected and every one of
// its partitions given to one of them.
func allServed(t *testing.T, topic string, ws []*workerProc, when string) {
	t.Helper()
	var last string
	ok := pollUntil(90*time.Second, func() bool {
		total := 0
		var report []string
		for _, w := range ws {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, err := eddyv1.NewLifecycleServiceClient(w.conn(t)).GetStatus(ctx, &eddyv1.GetStatusRequest{})
			cancel()
			if err != nil {
				last = err.Error()
				return false
			}
			owned := 0
			for _, tp := range st.GetAssigned() {
				if tp.GetTopic() == topic {
					owned++
				}
			}
			total += owned
			served, instances, unassigned := 0, 0, 0
			for _, a := range w.agents(t) {
				if a.GetName() != "pass" {
					continue
				}
				instances = len(a.GetInstances())
				unassigned = len(a.GetUnassigned())
				for _, in := range a.GetInstances() {
					served += len(in.GetPartitions())
				}
			}
			report = append(report, fmt.Sprintf("%s: owns %d, serves %d, %d instances, %d unassigned",
				st.GetWorkerId(), owned, served, instances, unassigned))
			if owned == 0 || served != owned || instances != 2 || unassigned != 0 {
				last = strings.Join(report, "; ")
				return false
			}
		}
		last = strings.Join(report, "; ") + "; total " + strconv.Itoa(total)
		return total == 8
	})
	if !ok {
		t.Fatalf("%s: not every partition served by the two agents: %s", when, last)
	}
	t.Logf("%s: %s", when, last)
}
