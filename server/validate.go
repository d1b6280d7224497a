package server

import (
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/tables/live"
)

// The request validators of every RPC with request fields, and of each
// Connect message kind: each checks what the adapter can check without the
// core and answers INVALID_ARGUMENT naming the field. They are fuzzed
// (validate_fuzz_test.go; `make fuzz`). GetStatus, ListAgents, ListTables,
// ListTopics, ListWorkers and GetSnapshot take no fields; Pause and
// Resume take an agent name the core looks up (NOT_FOUND names the
// declared ones).

// Bounds on the identifiers of a Hello: they are kept per session (status,
// logs, the instance map of limits.max_streams_per_client), so a client
// may not make them arbitrarily large. App and agent names are Kafka
// topic-name parts (at most 249 bytes).
const (
	maxHelloIDBytes  = 256
	maxShutdownBytes = 1024
)

func invalid(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, args...))
}

// validateGet checks a GetRequest before the core sees it.
func validateGet(req *eddyv1.GetRequest) error {
	switch {
	case req.GetTable() == "":
		return invalid("table is required")
	case len(req.GetKey()) == 0:
		return invalid("key is required (tables never store an empty key)")
	case req.WindowStart != nil && !req.WindowStart.IsValid():
		return invalid("window_start is not a valid timestamp")
	}
	return nil
}

// validateScan checks a ScanRequest before the core sees it.
func validateScan(req *eddyv1.ScanRequest) error {
	switch {
	case req.GetTable() == "":
		return invalid("table is required")
	case req.GetLimit() > live.MaxScanLimit:
		return invalid("limit %d is above the maximum of %d", req.GetLimit(), live.MaxScanLimit)
	}
	for _, p := range req.GetPartitions() {
		if p < 0 {
			return invalid("partitions: %d is negative", p)
		}
	}
	return nil
}

// validateSend checks a SendRequest; the core checks the topic is declared
// and the partition exists.
func validateSend(req *eddyv1.SendRequest) error {
	if req.GetTopic() == "" {
		return invalid("topic is required")
	}
	if req.Partition != nil && *req.Partition < 0 {
		return invalid("partition %d is negative", *req.Partition)
	}
	for i, h := range req.GetHeaders() {
		if h.GetKey() == "" {
			return invalid("headers[%d]: a header needs a key", i)
		}
	}
	return nil
}

// validateWatch checks a WatchRequest and returns its interval.
func validateWatch(req *eddyv1.WatchRequest) (time.Duration, error) {
	d := req.GetInterval()
	if d == nil {
		return defaultWatchInterval, nil
	}
	if !d.IsValid() {
		return 0, invalid("interval is not a valid duration")
	}
	if iv := d.AsDuration(); iv < minWatchInterval {
		return 0, invalid("interval %s is below the minimum of %s", iv, minWatchInterval)
	}
	return d.AsDuration(), nil
}

// validateShutdown checks a ShutdownRequest: its reason is logged and kept
// in status, so it is bounded.
func validateShutdown(req *eddyv1.ShutdownRequest) error {
	if n := len(req.GetReason()); n > maxShutdownBytes {
		return invalid("reason is %d bytes, above the maximum of %d", n, maxShutdownBytes)
	}
	return nil
}

// validateHello checks the first message of a Connect stream: a Hello
// whose identifiers are within maxHelloIDBytes. The core checks the rest
// (app, agent, protocol version, instance id, credit;
// docs/protocol.md).
func validateHello(first *eddyv1.ConnectRequest) (*eddyv1.Hello, error) {
	h := first.GetHello()
	if h == nil {
		return nil, invalid("the first message of Connect must be Hello")
	}
	for _, f := range []struct{ name, v string }{
		{"app", h.GetApp()}, {"agent", h.GetAgent()}, {"instance_id", h.GetInstanceId()},
	} {
		if len(f.v) > maxHelloIDBytes {
			return nil, invalid("hello.%s is %d bytes, above the maximum of %d", f.name, len(f.v), maxHelloIDBytes)
		}
	}
	return h, nil
}

// inboundMsg is one agent message after the first, converted for the
// session: exactly one field is set.
type inboundMsg struct {
	credit    *creditMsg
	results   *agents.Results
	assignAck *agents.PartitionRef
	revokeAck *agents.PartitionRef
	stateGet  *agents.StateGetRequest
}

// creditMsg is a Credit message.
type creditMsg struct {
	events uint32
	bytes  uint64
}

// inbound checks and converts one agent message after the Hello: a Hello
// again, or a message of no kind, is refused. What the message says
// (partitions held, offsets, statuses, tables) is the session's to check.
func inbound(msg *eddyv1.ConnectRequest) (inboundMsg, error) {
	var in inboundMsg
	switch m := msg.GetMsg().(type) {
	case *eddyv1.ConnectRequest_Credit:
		in.credit = &creditMsg{m.Credit.GetEvents(), m.Credit.GetBytes()}
	case *eddyv1.ConnectRequest_Results:
		in.results = resultsOf(m.Results)
	case *eddyv1.ConnectRequest_AssignAck:
		a := m.AssignAck
		in.assignAck = &agents.PartitionRef{Topic: a.GetTopic(), Partition: a.GetPartition(), Epoch: a.GetEpoch()}
	case *eddyv1.ConnectRequest_RevokeAck:
		a := m.RevokeAck
		in.revokeAck = &agents.PartitionRef{Topic: a.GetTopic(), Partition: a.GetPartition(), Epoch: a.GetEpoch()}
	case *eddyv1.ConnectRequest_StateGet:
		g := m.StateGet
		in.stateGet = &agents.StateGetRequest{RequestID: g.GetRequestId(), Topic: g.GetTopic(), Partition: g.GetPartition(),
			Epoch: g.GetEpoch(), Table: g.GetTable(), Key: g.GetKey()}
	case *eddyv1.ConnectRequest_Hello:
		return in, invalid("Hello may only be the first message of Connect")
	default:
		return in, invalid("empty Connect message")
	}
	return in, nil
}
