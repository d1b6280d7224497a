package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/eddy-streams/eddy/client/admin/admintest"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

const testToken = "s3cret"

// testStatus is a status with every section populated.
func testStatus() *eddyv1.GetStatusResponse {
	now := time.Now()
	return &eddyv1.GetStatusResponse{
		State:               eddyv1.WorkerState_WORKER_STATE_RUNNING,
		Version:             "v0.4.0",
		App:                 "orders-app",
		WorkerId:            "w-1",
		Brokers:             "embedded",
		EmbeddedBroker:      true,
		ProcessingGuarantee: "at_least_once",
		StartedAt:           timestamppb.New(now.Add(-62 * time.Minute)),
		Uptime:              durationpb.New(62*time.Minute + 3*time.Second),
		GrpcAddress:         "127.0.0.1:6066",
		HttpAddress:         "127.0.0.1:6067",
		Assigned: []*eddyv1.TopicPartition{
			{Topic: "orders", Partition: 5},
			{Topic: "payments", Partition: 1},
			{Topic: "orders", Partition: 0},
			{Topic: "orders", Partition: 2},
			{Topic: "orders", Partition: 1},
			{Topic: "orders", Partition: 3},
		},
		Agents: []*eddyv1.AgentSummary{
			{Name: "enricher", Instances: 2, Partitions: 5},
			{Name: "mailer", Instances: 1, Partitions: 1},
		},
		Recovery: []*eddyv1.RecoveryProgress{
			{Table: "counts", Partition: 3, Done: 1200, Total: 5000, RecordsPerSecond: 300, Remaining: durationpb.New(13 * time.Second)},
		},
		LastRestores: []*eddyv1.LastRestore{
			{Table: "counts", Partition: 1, Full: true, Reason: "no local state", ToOffset: 4000, Records: 4000,
				Duration: durationpb.New(1500 * time.Millisecond), FinishedAt: timestamppb.New(now.Add(-3 * time.Minute))},
			{Table: "counts", Partition: 2, FromOffset: 700, ToOffset: 712, Records: 12,
				Duration: durationpb.New(40 * time.Millisecond), FinishedAt: timestamppb.New(now.Add(-3 * time.Minute))},
			{Table: "counts", Partition: 3, FromOffset: 0, ToOffset: 5000, Records: 800,
				Duration: durationpb.New(4 * time.Second), FinishedAt: timestamppb.New(now.Add(-20 * time.Second)), Error: "no leader"},
		},
		Stalled: []*eddyv1.Stall{
			{
				Partition:  &eddyv1.TopicPartition{Topic: "orders", Partition: 2},
				Agent:      "enricher",
				InstanceId: "enricher-7",
				Since:      timestamppb.New(now.Add(-2 * time.Minute)),
				Reason:     "no ack for 2m",
			},
		},
		KafkaErrors: []*eddyv1.KafkaError{
			{At: timestamppb.New(now.Add(-5 * time.Second)), Code: "_TRANSPORT", Message: "broker down"},
		},
		Warnings: []string{"disk 91% full"},
		Errors:   []string{`agent "count" is blocked: source topic "words" changed its partition count from 8 to 12`},
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs workerctl in-process with args and the environment env.
func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	getenv := func(k string) string { return env[k] }
	code := run(t.Context(), args, &stdout, &stderr, getenv)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// squashSpaces collapses runs of spaces, so checks do not depend on column
// widths.
func squashSpaces(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' }), " ")
}

func TestStatusTable(t *testing.T) {
	w := admintest.Start(t, testToken, testStatus())

	res := runCLI(t, nil, "--addr", w.Addr, "status")
	if res.code != exitOK {
		t.Fatalf("exit code: got %v, want %v (stderr %q)", res.code, exitOK, res.stderr)
	}
	out := squashSpaces(res.stdout)
	for _, want := range []string{
		"!! embedded broker: DEV ONLY, keeps nothing",
		"State: RUNNING",
		"App: orders-app",
		"Worker ID: w-1",
		"Version: v0.4.0",
		"Uptime: 1h2m",
		"Brokers: embedded",
		"Guarantee: at_least_once",
		"gRPC: 127.0.0.1:6066",
		"HTTP: 127.0.0.1:6067",
		"Assigned: orders[0-3,5] payments[1]",
		"!! STALLED (1): these stopped making progress",
		"orders[2] enricher enricher-7",
		"no ack for 2m",
		"NAME INSTANCES PARTITIONS PAUSED",
		"enricher 2 5 no",
		"mailer 1 1 no",
		"TABLE PARTITION DONE/TOTAL RATE ETA",
		"counts 3 1200/5000 (24%) 300/s 13s",
		"LAST RESTORES",
		"TABLE PARTITION FROM RECORDS TOOK FINISHED NOTE",
		"counts 1 full 4000 1.5s 3m0s ago no local state",
		"counts 2 checkpoint 12 40ms 3m0s ago -",
		"counts 3 checkpoint 800 4s 20s ago FAILED: no leader",
		"_TRANSPORT no broker down",
		"- disk 91% full",
		"!! ERRORS (1): these need an operator",
		`- agent "count" is blocked: source topic "words" changed its partition count from 8 to 12`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q; got:\n%s", want, res.stdout)
		}
	}
	if strings.Contains(res.stdout, "WORKER_STATE_") {
		t.Errorf("status output shows the enum prefix; got:\n%s", res.stdout)
	}
}

func TestStatusTableQuiet(t *testing.T) {
	w := admintest.Start(t, "", &eddyv1.GetStatusResponse{State: eddyv1.WorkerState_WORKER_STATE_STARTING, App: "a"})

	res := runCLI(t, nil, "--addr", w.Addr, "status")
	if res.code != exitOK {
		t.Fatalf("exit code: got %v, want %v (stderr %q)", res.code, exitOK, res.stderr)
	}
	for _, absent := range []string{"embedded broker", "STALLED", "RECOVERING", "LAST RESTORES", "KAFKA ERRORS", "WARNINGS"} {
		if strings.Contains(res.stdout, absent) {
			t.Errorf("status output shows %q for a status without it; got:\n%s", absent, res.stdout)
		}
	}
	for _, want := range []string{"State: STARTING", "Assigned: none", "Agents: none", "Version: -"} {
		if !strings.Contains(squashSpaces(res.stdout), want) {
			t.Errorf("status output lacks %q; got:\n%s", want, res.stdout)
		}
	}
}

func TestStatusJSON(t *testing.T) {
	w := admintest.Start(t, testToken, testStatus())

	res := runCLI(t, nil, "--addr", w.Addr, "status", "-o", "json")
	if res.code != exitOK {
		t.Fatalf("exit code: got %v, want %v (stderr %q)", res.code, exitOK, res.stderr)
	}
	if !strings.Contains(res.stdout, "\n  \"state\": ") {
		t.Errorf("JSON is not multiline and indented; got:\n%s", res.stdout)
	}
	var got struct {
		State               string           `json:"state"`
		WorkerID            string           `json:"worker_id"`
		EmbeddedBroker      bool             `json:"embedded_broker"`
		ProcessingGuarantee string           `json:"processing_guarantee"`
		Uptime              string           `json:"uptime"`
		PausedAgents        []string         `json:"paused_agents"`
		Assigned            []map[string]any `json:"assigned"`
		Agents              []map[string]any `json:"agents"`
		Recovery            []map[string]any `json:"recovery"`
		LastRestores        []map[string]any `json:"last_restores"`
		Stalled             []map[string]any `json:"stalled"`
		KafkaErrors         []map[string]any `json:"kafka_errors"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
		t.Fatalf("parse JSON: %v\n%s", err, res.stdout)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"state", got.State, "WORKER_STATE_RUNNING"},
		{"worker_id", got.WorkerID, "w-1"},
		{"embedded_broker", got.EmbeddedBroker, true},
		{"processing_guarantee", got.ProcessingGuarantee, "at_least_once"},
		{"uptime", got.Uptime, "3723s"},
		{"paused_agents is present and empty", got.PausedAgents != nil && len(got.PausedAgents) == 0, true},
		{"len(assigned)", len(got.Assigned), 6},
		{"assigned[0].topic", got.Assigned[0]["topic"], "orders"},
		{"agents[0].name", got.Agents[0]["name"], "enricher"},
		{"agents[0].paused", got.Agents[0]["paused"], false},
		{"recovery[0].records_per_second", got.Recovery[0]["records_per_second"], 300.0},
		{"recovery[0].done", got.Recovery[0]["done"], "1200"},
		{"len(last_restores)", len(got.LastRestores), 3},
		{"last_restores[0].full", got.LastRestores[0]["full"], true},
		{"last_restores[0].records", got.LastRestores[0]["records"], "4000"},
		{"last_restores[0].duration", got.LastRestores[0]["duration"], "1.500s"},
		{"last_restores[1].full", got.LastRestores[1]["full"], false},
		{"last_restores[2].error", got.LastRestores[2]["error"], "no leader"},
		{"stalled[0].instance_id", got.Stalled[0]["instance_id"], "enricher-7"},
		{"kafka_errors[0].fatal", got.KafkaErrors[0]["fatal"], false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	// EmitUnpopulated: every field of the message is present.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(res.stdout), &raw); err != nil {
		t.Fatalf("parse JSON: %v", err)
	}
	if got, want := len(raw), (&eddyv1.GetStatusResponse{}).ProtoReflect().Descriptor().Fields().Len(); got != want {
		t.Errorf("number of JSON fields: got %v, want %v", got, want)
	}
}

func TestLifecycleCommands(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		want       admintest.Call
		wantOutput string
	}{
		{
			name:       "pause one agent",
			args:       []string{"pause", "enricher"},
			want:       admintest.Call{Method: "Pause", Agent: "enricher"},
			wantOutput: "Paused agent enricher.",
		},
		{
			name:       "pause all agents",
			args:       []string{"pause"},
			want:       admintest.Call{Method: "Pause"},
			wantOutput: "State: PAUSED",
		},
		{
			name:       "resume one agent",
			args:       []string{"resume", "mailer"},
			want:       admintest.Call{Method: "Resume", Agent: "mailer"},
			wantOutput: "Resumed agent mailer.",
		},
		{
			name:       "resume all agents",
			args:       []string{"resume"},
			want:       admintest.Call{Method: "Resume"},
			wantOutput: "Paused agents: none",
		},
		{
			name:       "shutdown with reason",
			args:       []string{"shutdown", "--reason", "moving host"},
			want:       admintest.Call{Method: "Shutdown", Reason: "moving host"},
			wantOutput: "Shutdown requested.",
		},
		{
			name:       "pause as JSON",
			args:       []string{"pause", "enricher", "-o", "json"},
			want:       admintest.Call{Method: "Pause", Agent: "enricher"},
			wantOutput: `"paused_agents": [`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := admintest.Start(t, testToken, testStatus())

			res := runCLI(t, nil, append([]string{"--addr", w.Addr, "--token", testToken}, tt.args...)...)
			if res.code != exitOK {
				t.Fatalf("exit code: got %v, want %v (stderr %q)", res.code, exitOK, res.stderr)
			}
			tt.want.Authorization = "Bearer " + testToken
			if got := w.Calls(); !slices.Equal(got, []admintest.Call{tt.want}) {
				t.Errorf("calls: got %+v, want [%+v]", got, tt.want)
			}
			if !strings.Contains(squashSpaces(res.stdout), tt.wantOutput) {
				t.Errorf("output lacks %q; got:\n%s", tt.wantOutput, res.stdout)
			}
		})
	}
}

func TestEnvironment(t *testing.T) {
	w := admintest.Start(t, testToken, testStatus())
	down := admintest.RefusedAddr(t)

	tests := []struct {
		name string
		env  map[string]string
		args []string
		want int
	}{
		{name: "EDDY_ADDR and EDDY_TOKEN", env: map[string]string{envAddr: w.Addr, envToken: testToken}, args: []string{"pause"}, want: exitOK},
		{name: "--addr overrides EDDY_ADDR", env: map[string]string{envAddr: down}, args: []string{"--addr", w.Addr, "status"}, want: exitOK},
		{name: "--token overrides EDDY_TOKEN", env: map[string]string{envAddr: w.Addr, envToken: "wrong"}, args: []string{"--token", testToken, "resume"}, want: exitOK},
		{name: "EDDY_ADDR is used", env: map[string]string{envAddr: down}, args: []string{"status"}, want: exitUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCLI(t, tt.env, tt.args...)
			if res.code != tt.want {
				t.Errorf("exit code: got %v, want %v (stderr %q)", res.code, tt.want, res.stderr)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	w := admintest.Start(t, testToken, testStatus())
	startingStatus := testStatus()
	startingStatus.State = eddyv1.WorkerState_WORKER_STATE_STARTING
	starting := admintest.Start(t, testToken, startingStatus)
	down := admintest.RefusedAddr(t)
	silent := admintest.SilentAddr(t)

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr []string
	}{
		{
			name:       "unreachable worker",
			args:       []string{"--addr", down, "status"},
			wantCode:   exitUnreachable,
			wantStderr: []string{"cannot reach worker at " + down + ": connection refused"},
		},
		{
			name:       "worker not answering within --timeout",
			args:       []string{"--addr", silent, "--timeout", "200ms", "status"},
			wantCode:   exitUnreachable,
			wantStderr: []string{"cannot reach worker at " + silent + ": no connection before the deadline"},
		},
		{
			name:       "unreachable worker on a mutating call",
			args:       []string{"--addr", down, "--token", testToken, "shutdown"},
			wantCode:   exitUnreachable,
			wantStderr: []string{down},
		},
		{
			name:       "wrong token",
			args:       []string{"--addr", w.Addr, "--token", "wrong", "pause", "enricher"},
			wantCode:   exitAuth,
			wantStderr: []string{"the worker rejected the token; pass --token or set EDDY_TOKEN"},
		},
		{
			name:       "missing token",
			args:       []string{"--addr", w.Addr, "shutdown"},
			wantCode:   exitAuth,
			wantStderr: []string{"requires a token", "pass --token or set EDDY_TOKEN"},
		},
		{
			name:       "worker refuses the request",
			args:       []string{"--addr", w.Addr, "--token", testToken, "pause", "nosuch"},
			wantCode:   exitError,
			wantStderr: []string{`unknown agent "nosuch" (NotFound)`},
		},
		{
			name:       "worker not running",
			args:       []string{"--addr", starting.Addr, "--token", testToken, "pause"},
			wantCode:   exitError,
			wantStderr: []string{"the worker is not running: state is STARTING (Unavailable)"},
		},
		{
			name:       "bad output format",
			args:       []string{"--addr", w.Addr, "status", "-o", "yaml"},
			wantCode:   exitUsage,
			wantStderr: []string{`invalid --output "yaml": want table or json`},
		},
		{
			name:       "unknown command",
			args:       []string{"statu"},
			wantCode:   exitUsage,
			wantStderr: []string{`unknown command "statu"`, "did you mean stats or status?"},
		},
		{
			name:       "unknown flag",
			args:       []string{"status", "--bogus"},
			wantCode:   exitUsage,
			wantStderr: []string{"unknown flag: --bogus", "Run 'workerctl status --help' for usage."},
		},
		{
			name:       "too many arguments",
			args:       []string{"pause", "a", "b"},
			wantCode:   exitUsage,
			wantStderr: []string{"accepts at most 1 arg(s), received 2"},
		},
		{
			name:       "argument to status",
			args:       []string{"status", "x"},
			wantCode:   exitUsage,
			wantStderr: []string{`"x"`},
		},
		{
			name:       "bad timeout",
			args:       []string{"status", "--timeout", "0s"},
			wantCode:   exitUsage,
			wantStderr: []string{"invalid --timeout 0s"},
		},
		{
			name:       "bad address",
			args:       []string{"--addr", "localhost", "status"},
			wantCode:   exitUsage,
			wantStderr: []string{`invalid worker address "localhost"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCLI(t, nil, tt.args...)
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

func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{args: []string{"--help"}, want: []string{"Exit codes:", "3  the worker is unreachable", "EDDY_ADDR", "EDDY_TOKEN"}},
		{args: nil, want: []string{"Available Commands:"}},
		{args: []string{"status", "--help"}, want: []string{"Examples:", "workerctl status -o json"}},
		{args: []string{"pause", "--help"}, want: []string{"pause [AGENT]", "--token"}},
		{args: []string{"shutdown", "--help"}, want: []string{"--reason"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			res := runCLI(t, map[string]string{envToken: "do-not-print"}, tt.args...)
			if res.code != exitOK {
				t.Fatalf("exit code: got %v, want %v (stderr %q)", res.code, exitOK, res.stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(res.stdout, want) {
					t.Errorf("help lacks %q; got:\n%s", want, res.stdout)
				}
			}
			if strings.Contains(res.stdout, "do-not-print") {
				t.Errorf("help prints the token from %s", envToken)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{args: []string{"version"}, want: "workerctl " + cliVersion() + "\n"},
		{args: []string{"version", "-o", "json"}, want: "{\n  \"version\": \"" + cliVersion() + "\"\n}\n"},
		{args: []string{"--version"}, want: "workerctl " + cliVersion() + "\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			res := runCLI(t, nil, tt.args...)
			if res.code != exitOK || res.stdout != tt.want {
				t.Errorf("got code %v output %q, want code %v output %q", res.code, res.stdout, exitOK, tt.want)
			}
		})
	}
}

// TestEveryCommandMarked: the root help marks every command read-only,
// mutating or local, and only local commands claim to need no token at all.
func TestEveryCommandMarked(t *testing.T) {
	res := runCLI(t, nil, "--help")
	root := newRootCommand(&bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" })
	marks := map[string]string{}
	for _, cmd := range root.Commands() {
		line := ""
		for l := range strings.SplitSeq(res.stdout, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == cmd.Name() {
				line = l
			}
		}
		mark := ""
		for _, m := range []string{accessRead, accessMutate, accessLocal} {
			if strings.HasSuffix(line, "["+m+"]") {
				mark = m
			}
		}
		marks[cmd.Name()] = mark
		if mark == "" {
			t.Errorf("command %s: help line %q has no access mark", cmd.Name(), line)
		}
		if strings.Contains(cmd.Long, "Needs no token.") && mark != accessLocal {
			t.Errorf("command %s (%s) says it needs no token; the worker asks for one when it protects reads", cmd.Name(), mark)
		}
	}
	for name, want := range map[string]string{"status": accessRead, "get": accessRead, "pause": accessMutate, "send": accessMutate, "version": accessLocal} {
		if marks[name] != want {
			t.Errorf("%s: got [%s], want [%s]", name, marks[name], want)
		}
	}
}

// TestStatusAll: status --all asks the worker at --addr for the app's
// workers and each of them for its status; a worker that does not answer is
// shown with its error and makes the exit code 1.
func TestStatusAll(t *testing.T) {
	st1 := testStatus()
	st2 := testStatus()
	st2.WorkerId, st2.State, st2.Agents = "w-2", eddyv1.WorkerState_WORKER_STATE_RECOVERING, nil
	w1 := admintest.Start(t, "", st1)
	w2 := admintest.Start(t, "", st2)
	w1.SetWorkers(&eddyv1.WorkerInfo{WorkerId: "w-1", GrpcAddress: w1.Addr}, &eddyv1.WorkerInfo{WorkerId: "w-2", GrpcAddress: w2.Addr})

	res := runCLI(t, nil, "--addr", w1.Addr, "status", "--all")
	if res.code != exitOK {
		t.Fatalf("exit code %v, stderr %q", res.code, res.stderr)
	}
	for _, want := range []string{
		"WORKER ADDRESS STATE PARTITIONS AGENTS RECOVERING STALLED PROBLEMS",
		"w-1 " + w1.Addr + " RUNNING 6 enricher:2,mailer:1 1 1 3",
		"w-2 " + w2.Addr + " RECOVERING 6 - 1 1 3",
	} {
		if !strings.Contains(squashSpaces(res.stdout), want) {
			t.Errorf("output lacks %q:\n%s", want, res.stdout)
		}
	}
	if n := len(w2.Calls()); n != 1 || w2.Calls()[0].Method != "GetStatus" {
		t.Errorf("w-2 calls: %v, want one GetStatus", w2.Calls())
	}

	gone := admintest.RefusedAddr(t)
	w1.SetWorkers(&eddyv1.WorkerInfo{WorkerId: "w-1", GrpcAddress: w1.Addr}, &eddyv1.WorkerInfo{WorkerId: "w-3", GrpcAddress: gone})
	res = runCLI(t, nil, "--addr", w1.Addr, "status", "--all", "-o", "json")
	if res.code != exitError || !strings.Contains(res.stderr, "1 of 2 workers did not answer") {
		t.Errorf("a worker not answering: code %v stderr %q, want %v and the count", res.code, res.stderr, exitError)
	}
	var js struct {
		Workers []struct {
			WorkerID    string `json:"worker_id"`
			GrpcAddress string `json:"grpc_address"`
			Status      *struct {
				State string `json:"state"`
			} `json:"status"`
			Error string `json:"error"`
		} `json:"workers"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &js); err != nil {
		t.Fatalf("JSON: %v\n%s", err, res.stdout)
	}
	if len(js.Workers) != 2 || js.Workers[0].Status == nil || js.Workers[0].Status.State != "WORKER_STATE_RUNNING" ||
		js.Workers[1].WorkerID != "w-3" || js.Workers[1].Status != nil || js.Workers[1].Error == "" {
		t.Errorf("JSON: got %+v", js)
	}
}
