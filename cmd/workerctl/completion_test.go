package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// fakeTopics serves eddy.v1.TopicService/ListTopics.
type fakeTopics struct {
	eddyv1.UnimplementedTopicServiceServer
}

func (fakeTopics) ListTopics(context.Context, *eddyv1.ListTopicsRequest) (*eddyv1.ListTopicsResponse, error) {
	return &eddyv1.ListTopicsResponse{Topics: []*eddyv1.TopicInfo{{Name: "lines", Partitions: 8}, {Name: "words", Partitions: 8}, {Name: "orders", Partitions: 4}}}, nil
}

// startFakeNames serves tables, agents and topics on one address.
func startFakeNames(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := grpc.NewServer()
	eddyv1.RegisterTableServiceServer(srv, &fakeTables{})
	eddyv1.RegisterAgentServiceServer(srv, &fakeAgents{resp: &eddyv1.ListAgentsResponse{Agents: []*eddyv1.AgentInfo{{Name: "count"}, {Name: "split"}}}})
	eddyv1.RegisterTopicServiceServer(srv, fakeTopics{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("fake: serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// TestCompletion: shell completion offers the worker's table, agent and
// topic names for the first argument (from EDDY_ADDR too), filtered by what
// is typed, and no files; nothing when the worker does not answer.
func TestCompletion(t *testing.T) {
	addr := startFakeNames(t)
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"get", ""}, []string{"counts"}},
		{[]string{"scan", "c"}, []string{"counts"}},
		{[]string{"get", "counts", ""}, nil},
		{[]string{"pause", ""}, []string{"count", "split"}},
		{[]string{"resume", "s"}, []string{"split"}},
		{[]string{"send", ""}, []string{"lines", "words", "orders"}},
		{[]string{"send", "w"}, []string{"words"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			res := runCLI(t, map[string]string{envAddr: addr}, append([]string{"__complete"}, tt.args...)...)
			lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
			if res.code != exitOK || len(lines) == 0 || lines[len(lines)-1] != ":4" { // ShellCompDirectiveNoFileComp
				t.Fatalf("code %v stdout %q stderr %q", res.code, res.stdout, res.stderr)
			}
			got := lines[:len(lines)-1]
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	res := runCLI(t, map[string]string{envAddr: "127.0.0.1:1"}, "__complete", "get", "")
	if strings.TrimSpace(res.stdout) != ":4" {
		t.Errorf("worker not answering: got %q, want no names", res.stdout)
	}
}
