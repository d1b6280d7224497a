package agents

import "slices"

// StateGetRequest reads one key of a table partition the session owns
// (StateGet in the protocol, docs/protocol.md).
type StateGetRequest struct {
	RequestID uint64
	Topic     string
	Partition int32
	Epoch     uint64
	Table     string
	Key       []byte
}

// StateReply answers a StateGetRequest. Error is set when the read was
// refused (stale epoch, undeclared table, empty key, partition restoring);
// the session goes on.
type StateReply struct {
	RequestID uint64
	HasValue  bool
	Value     []byte
	Error     string
}

// Errors of StateReply.Error.
const (
	StateErrStaleEpoch = "stale epoch"
	StateErrRestoring  = "partition is restoring"
)

type stateGetReq struct {
	s   *session
	req StateGetRequest
}

// StateGet reads another key of an owned table partition; the answer is
// queued on the Outbox as a StateReply. An epoch the worker never issued
// ends the session (protocol violation).
func (h *Session) StateGet(req StateGetRequest) { h.m.in.push(&stateGetReq{s: h.s, req: req}) }

// stateGet answers one StateGet through the same overlay and store the
// state delivered with events is read from: it sees every mutation whose
// changelog record Kafka acknowledged. A partition still restoring its
// tables is refused with StateErrRestoring (not queued): the agent holds
// no event of it yet, so only a misbehaving agent asks.
func (m *Manager) stateGet(s *session, req StateGetRequest) error {
	reply := func(r StateReply) {
		r.RequestID = req.RequestID
		m.send(s, Outbound{StateReply: &r})
	}
	p := m.parts[tpKey{req.Topic, req.Partition}]
	var l *lane
	if p != nil && !p.dropped {
		l = p.lanes[s]
	}
	if l == nil || l.epoch != req.Epoch {
		if req.Epoch > m.epochSeq {
			return badRequest("StateGet for %s[%d] carries epoch %d, which this worker never issued", req.Topic, req.Partition, req.Epoch)
		}
		reply(StateReply{Error: StateErrStaleEpoch})
		return nil
	}
	a := s.agent
	if !slices.Contains(a.cfg.Tables, req.Table) {
		reply(StateReply{Error: "table \"" + req.Table + "\" is not declared by agent \"" + a.cfg.Name + "\""})
		return nil
	}
	if len(req.Key) == 0 {
		reply(StateReply{Error: "empty key (empty keys are never stored)"})
		return nil
	}
	t := p.tableOf(req.Table)
	if p.recovering || t == nil || !t.Ready() {
		reply(StateReply{Error: StateErrRestoring})
		return nil
	}
	v, found, err := t.Get(req.Key)
	if err != nil {
		m.log.Error("table read failed", "table", t.Name(), "partition", p.ktp.partition, "err", err)
		reply(StateReply{Error: "table read failed: " + err.Error()})
		return nil
	}
	reply(StateReply{HasValue: found, Value: slices.Clone(v)})
	return nil
}
