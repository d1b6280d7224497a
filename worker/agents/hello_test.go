package agents_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/internal/testutil"
	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/config"
)

func TestOpenValidatesHello(t *testing.T) {
	cfg := testConfig()
	cfg.Agents = []config.Agent{agentCfg("count", "", 3, "in"), agentCfg("audit", "key", 7, "audit-in")}
	h := start(t, cfg)
	valid := agents.Hello{App: "app", Agent: "count", InstanceID: "i1", ProtocolVersion: agents.ProtocolVersion, CreditEvents: 1}

	tests := []struct {
		name    string
		edit    func(*agents.Hello)
		check   func(error) bool
		wantMsg []string // substrings of the error a user needs to act on
	}{
		{
			name: "unknown agent",
			edit: func(h *agents.Hello) { h.Agent = "cnt" },
			check: func(err error) bool {
				var u *agents.UnknownAgentError
				return errors.As(err, &u) && u.Name == "cnt" && strings.Join(u.Declared, ",") == "audit,count"
			},
			wantMsg: []string{`"cnt"`, "audit", "count"},
		},
		{
			name: "another app",
			edit: func(h *agents.Hello) { h.App = "billing" },
			check: func(err error) bool {
				var m *agents.AppMismatchError
				return errors.As(err, &m) && m.Hello == "billing" && m.Worker == "app"
			},
			wantMsg: []string{`hello.app "billing" does not match this worker's app "app"`},
		},
		{
			name:    "newer protocol version",
			edit:    func(h *agents.Hello) { h.ProtocolVersion = agents.ProtocolVersion + 1 },
			check:   func(err error) bool { return errors.Is(err, agents.ErrProtocolVersion) },
			wantMsg: []string{"2", "1"},
		},
		{
			name:  "protocol version unset",
			edit:  func(h *agents.Hello) { h.ProtocolVersion = 0 },
			check: func(err error) bool { return errors.Is(err, agents.ErrProtocolVersion) },
		},
		{
			name:    "empty instance id",
			edit:    func(h *agents.Hello) { h.InstanceID = "" },
			check:   func(err error) bool { return errors.Is(err, agents.ErrBadRequest) },
			wantMsg: []string{"instance_id"},
		},
		{
			name:    "zero event credit",
			edit:    func(h *agents.Hello) { h.CreditEvents = 0; h.CreditBytes = 1 << 20 },
			check:   func(err error) bool { return errors.Is(err, agents.ErrBadRequest) },
			wantMsg: []string{"credit"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hello := valid
			tt.edit(&hello)
			s, _, err := h.m.Open(hello)
			if err == nil || s != nil {
				t.Fatalf("Open(%+v) = %v, %v; want an error", hello, s, err)
			}
			if !tt.check(err) {
				t.Fatalf("Open(%+v) error = %#v (%v), wrong kind", hello, err, err)
			}
			for _, w := range tt.wantMsg {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if got := h.info("count").Connects; got != 0 {
		t.Errorf("Connects after refused Hellos = %d, want 0", got)
	}
}

// TestOpenHelloWithoutApp checks that a Hello without an app, from an SDK
// older than the field, is still accepted, with a deprecation warning.
func TestOpenHelloWithoutApp(t *testing.T) {
	cfg := testConfig()
	var logs syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h := start(t, cfg)
	s, _, err := h.m.Open(agents.Hello{Agent: "count", InstanceID: "old", ProtocolVersion: agents.ProtocolVersion, CreditEvents: 1})
	if err != nil {
		t.Fatalf("Open without app: got %v, want a session", err)
	}
	t.Cleanup(func() { s.Close(nil) })
	if got := logs.String(); !strings.Contains(got, "deprecated") || !strings.Contains(got, "instance=old") {
		t.Errorf("warnings: got %q, want a deprecation warning naming the instance", got)
	}
}

// syncBuffer is a buffer safe for a writer and a reading test.
type syncBuffer = testutil.Buffer

func TestOpenWelcome(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBatchEvents = 42
	cfg.MaxBatchBytes = 1000
	cfg.Agents = []config.Agent{agentCfg("count", "", 3, "in"), {Name: "plain", Topics: []string{"p"}}}
	h := start(t, cfg)

	a := h.open("count", "i1", 10)
	b := h.open("count", "i2", 10)
	if a.w.SessionID == "" || a.w.SessionID == b.w.SessionID || a.s.ID() != a.w.SessionID {
		t.Errorf("session ids %q, %q (handle %q): want distinct, non-empty, matching the handle", a.w.SessionID, b.w.SessionID, a.s.ID())
	}
	if a.w.MaxBatchEvents != 42 || a.w.MaxBatchBytes != 1000 || a.w.MaxRetries != 3 || a.w.MaxMessageBytes == 0 {
		t.Errorf("Welcome = %+v, want MaxBatchEvents 42, MaxBatchBytes 1000, MaxRetries 3, MaxMessageBytes set", a.w)
	}
	p := h.open("plain", "i1", 10)
	if p.w.MaxRetries != config.DefaultMaxRetries {
		t.Errorf("Welcome.MaxRetries without max_retries = %d, want the default %d", p.w.MaxRetries, config.DefaultMaxRetries)
	}
	waitFor(t, wait, func() string { return "2 connected instances of count" }, func() bool {
		return len(h.info("count").Instances) == 2
	})
}
