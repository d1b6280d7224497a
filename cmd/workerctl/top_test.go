package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/internal/testutil"
)

func bigSnapshot(parts int, topic string) *eddyv1.Snapshot {
	s := &eddyv1.Snapshot{State: eddyv1.WorkerState_WORKER_STATE_RUNNING,
		Agents: []*eddyv1.AgentStats{{Agent: "enricher", Sessions: 2, Acked: 123456789, InFlight: 1000}}}
	for i := range parts {
		s.Partitions = append(s.Partitions, &eddyv1.PartitionStats{Topic: topic, Partition: int32(i), Agent: "enricher",
			EventsPerSecond: 123456, Lag: 9876543, InFlight: 1000, Received: 123456789, Acked: 123456789,
			DeadLettered: 12345, EndToEndP99: durationpb.New(1234 * time.Millisecond)})
	}
	for i := range 5 {
		s.Stalled = append(s.Stalled, &eddyv1.Stall{Partition: &eddyv1.TopicPartition{Topic: topic, Partition: int32(i)},
			Agent: "enricher", InstanceId: "enricher-host-1234-abcdef", Reason: "no result for 2m0s from the instance holding the oldest event"})
	}
	return s
}

// TestTopFitsTheTerminal: a screen of top has at most the terminal's lines,
// none wider than its columns, and counts the partitions that do not fit;
// usual names fit 80 columns without being cut.
func TestTopFitsTheTerminal(t *testing.T) {
	header := "eddy top: app orders-with-a-long-name, worker worker-host-123456 at 10.11.12.13:6066, every 1s, q quits"
	for _, size := range [][2]int{{80, 24}, {100, 40}, {40, 10}} {
		screen := fitScreen(header, "state RUNNING, rebalances 3, dropped snapshots 0, 12:00:00", bigSnapshot(64, "orders-enriched-eu-west"), size[0], size[1])
		lines := strings.Split(screen, "\n")
		if len(lines) > size[1] {
			t.Errorf("%dx%d: %d lines", size[0], size[1], len(lines))
		}
		for _, l := range lines {
			if n := utf8.RuneCountInString(l); n > size[0] {
				t.Errorf("%dx%d: line of %d columns: %q", size[0], size[1], n, l)
			}
		}
		if last := lines[len(lines)-1]; !strings.Contains(last, "more partitions") {
			t.Errorf("%dx%d: last line %q does not count the partitions left out", size[0], size[1], last)
		}
	}
	small := bigSnapshot(8, "lines")
	small.Stalled = small.Stalled[:1]
	small.Stalled[0].Reason = "no result for 2m0s"
	screen := fitScreen("eddy top: app wc, worker w1 at 127.0.0.1:6066, every 1s, q quits", "state RUNNING", small, 80, 24)
	if strings.Contains(screen, "…") || !strings.Contains(screen, "RATE/S") || !strings.Contains(screen, "lines[7]") {
		t.Errorf("8 partitions of lines at 80x24: cut or incomplete:\n%s", screen)
	}
}

// fakeMonitor serves Watch: n snapshots, then waits for the caller to go.
type fakeMonitor struct {
	eddyv1.UnimplementedMonitorServiceServer
	n int
}

func (f fakeMonitor) Watch(_ *eddyv1.WatchRequest, stream grpc.ServerStreamingServer[eddyv1.WatchResponse]) error {
	for range f.n {
		if err := stream.Send(&eddyv1.WatchResponse{Snapshot: bigSnapshot(3, "lines")}); err != nil {
			return err
		}
	}
	<-stream.Context().Done()
	return nil
}

type fakeStatus struct {
	eddyv1.UnimplementedLifecycleServiceServer
}

func (fakeStatus) GetStatus(context.Context, *eddyv1.GetStatusRequest) (*eddyv1.GetStatusResponse, error) {
	return &eddyv1.GetStatusResponse{App: "wc", WorkerId: "w1"}, nil
}

// TestTopPlainWhenNotATerminal: with standard output not a terminal, top
// prints each snapshot in full, one after the other, without screen escapes.
func TestTopPlainWhenNotATerminal(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	eddyv1.RegisterMonitorServiceServer(srv, fakeMonitor{n: 3})
	eddyv1.RegisterLifecycleServiceServer(srv, fakeStatus{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serve: %v", err)
		}
	})
	var stdout, stderr testutil.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--addr", lis.Addr().String(), "top", "--interval", "100ms"}, &stdout, &stderr, func(string) string { return "" })
	}()
	testutil.WaitFor[string](t, 10*time.Second, "three snapshots", func() bool { return strings.Count(stdout.String(), "eddy top:") == 3 })
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("exit code %d, stderr %q", code, stderr.String())
	}
	out := stdout.String()
	if strings.Contains(out, "\x1b") {
		t.Errorf("screen escapes in plain output: %q", out)
	}
	for _, want := range []string{"eddy top:", "COMMITTED", "P99 PROC", "RETRIED"} {
		if c := strings.Count(out, want); c != 3 {
			t.Errorf("%q appears %d times, want once per snapshot (3):\n%s", want, c, out)
		}
	}
}
