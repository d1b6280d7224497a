package integration

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// floodAgent speaks the agent protocol directly: it answers every event
// with OK and copies outputs of size bytes each (one Results message per
// event), and gives the credit back at once, as fast as the worker lets it.
// It runs until the test ends.
func floodAgent(t *testing.T, w *workerProc, agent, out string, copies, size int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := eddyv1.NewAgentServiceClient(w.conn(t)).Connect(ctx)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	err = stream.Send(&eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Hello{Hello: &eddyv1.Hello{
		Agent: agent, InstanceId: "flood", ProtocolVersion: 1, Credit: &eddyv1.Credit{Events: 1000},
	}}})
	if err != nil {
		t.Fatalf("send Hello: %v", err)
	}
	in := make(chan *eddyv1.ConnectResponse, 1024)
	go func() {
		defer close(in)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			in <- m
		}
	}()
	value := make([]byte, size)
	_, _ = crand.Read(value) // incompressible
	// One goroutine sends: a gRPC stream's Send is not safe for concurrent use.
	go func() {
		for m := range in {
			var reqs []*eddyv1.ConnectRequest
			switch x := m.GetMsg().(type) {
			case *eddyv1.ConnectResponse_Assign:
				a := x.Assign
				reqs = append(reqs, &eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_AssignAck{AssignAck: &eddyv1.AssignAck{
					Topic: a.GetTopic(), Partition: a.GetPartition(), Epoch: a.GetEpoch()}}})
			case *eddyv1.ConnectResponse_Revoke:
				r := x.Revoke
				reqs = append(reqs, &eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_RevokeAck{RevokeAck: &eddyv1.RevokeAck{
					Topic: r.GetTopic(), Partition: r.GetPartition(), Epoch: r.GetEpoch()}}})
			case *eddyv1.ConnectResponse_EventBatch:
				b := x.EventBatch
				for _, ev := range b.GetEvents() {
					res := &eddyv1.Result{Offset: ev.GetOffset(), Status: eddyv1.ResultStatus_RESULT_STATUS_OK}
					for range copies {
						res.Produced = append(res.Produced, &eddyv1.Record{Topic: out, Key: ev.GetKey(), Value: value})
					}
					reqs = append(reqs, &eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Results{Results: &eddyv1.Results{
						Topic: b.GetTopic(), Partition: b.GetPartition(), Epoch: b.GetEpoch(), Results: []*eddyv1.Result{res}}}})
				}
				reqs = append(reqs, &eddyv1.ConnectRequest{Msg: &eddyv1.ConnectRequest_Credit{Credit: &eddyv1.Credit{
					Events: uint32(len(b.GetEvents()))}}})
			}
			for _, r := range reqs {
				if err := stream.Send(r); err != nil {
					return
				}
			}
		}
	}()
}

// procKiB returns a field of /proc/<pid>/status (VmHWM, VmRSS) in KiB.
func procKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the worker's memory: %v", err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte(field+":")); ok {
			f := bytes.Fields(rest)
			if len(f) > 0 {
				v, err := strconv.ParseInt(string(f[0]), 10, 64)
				if err == nil {
					return v
				}
			}
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestFloodOfLargeResultsBoundsRSS: an agent that answers every event with
// three 900 KiB outputs, faster than Kafka takes them, is held back by
// limits.inflight_bytes (docs/architecture.md#memory): the worker's peak
// RSS stays within floodRSSBound of what it used before the flood, and
// every output still reaches Kafka and every input is committed. Without
// the cap the whole flood (210 MiB) piled up in the worker.
func TestFloodOfLargeResultsBoundsRSS(t *testing.T) {
	const (
		events = 80
		copies = 3
		size   = 900 << 10
		capMiB = 16
	)
	app, in, out := uniq(t, "app"), uniq(t, "in"), uniq(t, "out")
	body := fmt.Sprintf(`app: %s
brokers: %s
kafka:
  reach_timeout: 10s
  session_timeout: 6s
  # Kafka takes outputs slower than the agent makes them (as when brokers
  # are slow or far): a small producer queue, and incompressible outputs
  # compressed hard.
  properties: {queue.buffering.max.kbytes: "4096", compression.type: gzip, compression.level: "1"}
limits: {inflight_bytes: %dMiB}
topics:
  - {name: %s, partitions: 2}
  - {name: %s, partitions: 2}
agents:
  - {name: pass, topics: [%s]}
`, app, kafkatest.Bootstrap(t), capMiB, in, out, in)
	w := startWorker(t, body)
	w.waitAssigned(t, 2)
	pid := w.cmd.Process.Pid
	before := procKiB(t, pid, "VmRSS")

	floodAgent(t, w, "pass", out, copies, size)
	keys, values := keyedValues(events, events)
	start := time.Now()
	produce(t, in, keys, values)
	waitFor(t, 3*time.Minute, "every output in Kafka", func() bool {
		n := int64(0)
		for _, e := range endOffsets(t, out, 2) {
			n += e
		}
		return n >= events*copies
	})
	took := time.Since(start)
	end := endOffsets(t, in, 2)
	waitFor(t, 30*time.Second, "the inputs committed at their end", func() bool { return atEnd(committed(t, app, in, 2), end) })

	peak := procKiB(t, pid, "VmHWM")
	growth := (peak - before) >> 10
	t.Logf("flood of %d MiB of outputs in %s: RSS %d MiB before, peak %d MiB (+%d MiB; cap %d MiB, bound +%d MiB)",
		events*copies*size>>20, took.Round(time.Millisecond), before>>10, peak>>10, growth, capMiB, floodRSSBound(capMiB))
	if growth > floodRSSBound(capMiB) {
		t.Errorf("peak RSS grew by %d MiB under the flood, want at most %d MiB (limits.inflight_bytes %d MiB)",
			growth, floodRSSBound(capMiB), capMiB)
	}
}

// floodRSSBound is how much, in MiB, the worker's RSS may grow under a
// flood at a cap of capMiB: what the cap holds counted three times (the
// Go copy from the stream, librdkafka's copy until acknowledged, garbage
// not yet collected at GOGC=100), plus 64 MiB for the stream's
// flow-control window, the message read past the cap and allocator slack.
func floodRSSBound(capMiB int64) int64 { return 3*capMiB + 64 }
