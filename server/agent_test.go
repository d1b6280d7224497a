package server

import (
	"testing"

	"github.com/eddy-streams/eddy/worker/agents"
)

func TestOutboundStateReply(t *testing.T) {
	m := outbound(agents.Outbound{StateReply: &agents.StateReply{RequestID: 7, HasValue: true, Value: []byte("v"), Error: ""}})
	r := m.GetStateReply()
	if r == nil || r.GetRequestId() != 7 || !r.GetHasValue() || string(r.GetValue()) != "v" || r.GetError() != "" {
		t.Fatalf("outbound(StateReply) = %v", m)
	}
	m = outbound(agents.Outbound{StateReply: &agents.StateReply{RequestID: 8, Error: "stale epoch"}})
	if r := m.GetStateReply(); r.GetRequestId() != 8 || r.GetHasValue() || r.GetError() != "stale epoch" {
		t.Fatalf("outbound(StateReply error) = %v", m)
	}
}
