package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/eddy-streams/eddy/client/admin/admintest"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// fakeAgents serves eddy.v1.AgentService/ListAgents on 127.0.0.1, next to
// admintest's LifecycleService fake, which has no AgentService.
type fakeAgents struct {
	eddyv1.UnsafeAgentServiceServer

	resp *eddyv1.ListAgentsResponse
	err  error

	mu   sync.Mutex
	auth []string // "authorization" metadata of each call
}

func startFakeAgents(t *testing.T, resp *eddyv1.ListAgentsResponse, err error) (*fakeAgents, string) {
	t.Helper()
	lis, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		t.Fatalf("listen: %v", lerr)
	}
	f := &fakeAgents{resp: resp, err: err}
	srv := grpc.NewServer()
	eddyv1.RegisterAgentServiceServer(srv, f)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("fake agents: serve: %v", err)
		}
	})
	return f, lis.Addr().String()
}

func (f *fakeAgents) Connect(grpc.BidiStreamingServer[eddyv1.ConnectRequest, eddyv1.ConnectResponse]) error {
	return status.Error(codes.Unimplemented, "not in the fake")
}

func (f *fakeAgents) ListAgents(ctx context.Context, _ *eddyv1.ListAgentsRequest) (*eddyv1.ListAgentsResponse, error) {
	var auth string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			auth = v[0]
		}
	}
	f.mu.Lock()
	f.auth = append(f.auth, auth)
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return f.resp, nil
}

func (f *fakeAgents) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.auth)
}

// testAgents has an agent with instances and one with none.
func testAgents() *eddyv1.ListAgentsResponse {
	now := time.Now()
	tp := func(topic string, p int32) *eddyv1.TopicPartition {
		return &eddyv1.TopicPartition{Topic: topic, Partition: p}
	}
	return &eddyv1.ListAgentsResponse{Agents: []*eddyv1.AgentInfo{
		{
			Name:     "enricher",
			Topics:   []string{"orders", "payments"},
			Ordering: "partition",
			Tables:   []string{"customers"},
			InFlight: 12,
			Lag:      340,
			Instances: []*eddyv1.AgentInstance{
				{
					InstanceId: "enricher-0", SessionId: "s-1", Peer: "127.0.0.1:51234",
					ConnectedAt: timestamppb.New(now.Add(-3 * time.Minute)),
					Partitions:  []*eddyv1.TopicPartition{tp("orders", 2), tp("orders", 0), tp("orders", 1), tp("payments", 1)},
					InFlight:    7, CreditEvents: 993,
				},
				{
					InstanceId: "enricher-1", SessionId: "s-2", Peer: "127.0.0.1:51240",
					ConnectedAt: timestamppb.New(now.Add(-62 * time.Minute)),
					Partitions:  []*eddyv1.TopicPartition{tp("orders", 5)},
					InFlight:    5, CreditEvents: 995,
				},
			},
		},
		{
			Name:       "mailer",
			Topics:     []string{"orders"},
			Ordering:   "key",
			Paused:     true,
			Lag:        12,
			Unassigned: []*eddyv1.TopicPartition{tp("orders", 4), tp("orders", 3)},
		},
	}}
}

// runAgentsCLI runs workerctl with args, which include "agents".
func runAgentsCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	return runCLI(t, env, args...)
}

func TestAgentsIsRegistered(t *testing.T) {
	res := runCLI(t, nil, "agents", "--help")
	if res.code != exitOK || !strings.Contains(res.stdout, "workerctl agents -o json") {
		t.Errorf("agents --help: code %v, output:\n%s", res.code, res.stdout)
	}
}

func TestAgentsTable(t *testing.T) {
	f, addr := startFakeAgents(t, testAgents(), nil)

	res := runAgentsCLI(t, nil, "--addr", addr, "agents")
	if res.code != exitOK {
		t.Fatalf("exit code: got %v, want %v (stderr %q)", res.code, exitOK, res.stderr)
	}
	out := squashSpaces(res.stdout)
	for _, want := range []string{
		"!! UNASSIGNED (2): no instance connected, these partitions are paused",
		"AGENT PARTITIONS\nmailer orders[3-4]",
		"NAME TOPICS ORDERING TABLES PAUSED INSTANCES IN-FLIGHT LAG",
		"enricher orders,payments partition customers no 2 12 340",
		"mailer orders key - yes 0 0 12",
		"AGENT INSTANCE SESSION PEER PARTITIONS IN-FLIGHT CREDIT CONNECTED",
		"enricher enricher-0 s-1 127.0.0.1:51234 orders[0-2] payments[1] 7 993 3m0s ago",
		"enricher enricher-1 s-2 127.0.0.1:51240 orders[5] 5 995 1h2m ago",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q; got:\n%s", want, res.stdout)
		}
	}
	if u, n := strings.Index(out, "UNASSIGNED"), strings.Index(out, "NAME TOPICS"); u > n {
		t.Errorf("unassigned partitions come after the agents; want them first:\n%s", res.stdout)
	}
	if got := f.calls(); !slices.Equal(got, []string{""}) {
		t.Errorf("calls: got %q, want one without a token", got)
	}
}

func TestAgentsTableQuiet(t *testing.T) {
	tests := []struct {
		name   string
		resp   *eddyv1.ListAgentsResponse
		want   []string
		absent []string
	}{
		{
			name: "no agents",
			resp: &eddyv1.ListAgentsResponse{},
			want: []string{"Agents: none"},
		},
		{
			name:   "no instances, nothing unassigned",
			resp:   &eddyv1.ListAgentsResponse{Agents: []*eddyv1.AgentInfo{{Name: "idle"}}},
			want:   []string{"idle - - - no 0 0 0"},
			absent: []string{"UNASSIGNED", "\nINSTANCES\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startFakeAgents(t, tt.resp, nil)
			res := runAgentsCLI(t, nil, "--addr", addr, "agents")
			if res.code != exitOK {
				t.Fatalf("exit code: got %v, want %v (stderr %q)", res.code, exitOK, res.stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(squashSpaces(res.stdout), want) {
					t.Errorf("output lacks %q; got:\n%s", want, res.stdout)
				}
			}
			for _, absent := range tt.absent {
				if strings.Contains(res.stdout, absent) {
					t.Errorf("output shows %q; got:\n%s", absent, res.stdout)
				}
			}
		})
	}
}

func TestAgentsJSON(t *testing.T) {
	_, addr := startFakeAgents(t, testAgents(), nil)

	res := runAgentsCLI(t, nil, "--addr", addr, "agents", "-o", "json")
	if res.code != exitOK {
		t.Fatalf("exit code: got %v, want %v (stderr %q)", res.code, exitOK, res.stderr)
	}
	if !strings.Contains(res.stdout, "\n  \"agents\": [") {
		t.Errorf("JSON is not multiline and indented; got:\n%s", res.stdout)
	}
	var got struct {
		Agents []map[string]json.RawMessage `json:"agents"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
		t.Fatalf("parse JSON: %v\n%s", err, res.stdout)
	}
	if len(got.Agents) != 2 {
		t.Fatalf("agents: got %d, want 2", len(got.Agents))
	}
	checks := []struct {
		name, got, want string
	}{
		{"agents[0].name", string(got.Agents[0]["name"]), `"enricher"`},
		{"agents[0].in_flight", string(got.Agents[0]["in_flight"]), `"12"`},
		{"agents[1].paused", string(got.Agents[1]["paused"]), "true"},
		{"agents[1].instances", string(got.Agents[1]["instances"]), "[]"},
		{"agents[1].tables", string(got.Agents[1]["tables"]), "[]"},
	}
	for _, c := range checks {
		if squashSpaces(strings.ReplaceAll(c.got, "\n", "")) != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	var inst []map[string]json.RawMessage
	if err := json.Unmarshal(got.Agents[0]["instances"], &inst); err != nil || len(inst) != 2 {
		t.Fatalf("agents[0].instances: %v (%s)", err, got.Agents[0]["instances"])
	}
	if s := string(inst[0]["instance_id"]); s != `"enricher-0"` {
		t.Errorf("instances[0].instance_id: got %v, want %v", s, `"enricher-0"`)
	}
	// EmitUnpopulated: every field is present, even for the quiet agent.
	if got, want := len(got.Agents[1]), (&eddyv1.AgentInfo{}).ProtoReflect().Descriptor().Fields().Len(); got != want {
		t.Errorf("number of JSON fields of an agent: got %v, want %v", got, want)
	}
}

func TestAgentsErrors(t *testing.T) {
	_, unimplemented := startFakeAgents(t, nil, status.Error(codes.Unimplemented, "unknown service eddy.v1.AgentService"))
	down := admintest.RefusedAddr(t)

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr []string
	}{
		{
			name:       "unreachable worker",
			args:       []string{"--addr", down, "agents"},
			wantCode:   exitUnreachable,
			wantStderr: []string{"list agents: cannot reach worker at " + down, "Is the worker running?"},
		},
		{
			name:       "worker without AgentService",
			args:       []string{"--addr", unimplemented, "agents"},
			wantCode:   exitError,
			wantStderr: []string{"list agents: unknown service eddy.v1.AgentService (Unimplemented)"},
		},
		{
			name:       "argument",
			args:       []string{"agents", "router"},
			wantCode:   exitUsage,
			wantStderr: []string{`"router"`},
		},
		{
			name:       "bad output format",
			args:       []string{"agents", "-o", "yaml"},
			wantCode:   exitUsage,
			wantStderr: []string{`invalid --output "yaml"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runAgentsCLI(t, nil, tt.args...)
			if res.code != tt.wantCode {
				t.Errorf("exit code: got %v, want %v (stderr %q)", res.code, tt.wantCode, res.stderr)
			}
			for _, want := range tt.wantStderr {
				if !strings.Contains(res.stderr, want) {
					t.Errorf("stderr lacks %q; got %q", want, res.stderr)
				}
			}
			if res.stdout != "" {
				t.Errorf("stdout: got %q, want nothing", res.stdout)
			}
		})
	}
}

func TestAgentsSendsToken(t *testing.T) {
	f, addr := startFakeAgents(t, testAgents(), nil)
	res := runAgentsCLI(t, map[string]string{envAddr: addr, envToken: testToken}, "agents")
	if res.code != exitOK {
		t.Fatalf("exit code: got %v, want %v (stderr %q)", res.code, exitOK, res.stderr)
	}
	if got, want := f.calls(), []string{"Bearer " + testToken}; !slices.Equal(got, want) {
		t.Errorf("authorization: got %q, want %q", got, want)
	}
}
