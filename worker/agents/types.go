// Package agents runs the worker side of the agent protocol (docs/protocol.md):
// it owns agent sessions, hands each owned Kafka partition to exactly one
// connected instance of its agent (or spreads it by key), delivers events
// within the agent's credit, applies results (produced records, dead
// letters, retries) and moves each partition's commit frontier only past
// events whose work is done and acknowledged by Kafka.
//
// All partition and session state is owned by one goroutine (Manager.Run);
// everything else talks to it through a non-blocking inbox, so the Kafka
// poll loop and the producer's delivery reports never wait on an agent.
package agents

import (
	"errors"
	"fmt"
	"time"

	"github.com/eddy-streams/eddy/worker/transport"
)

// ProtocolVersion is the agent protocol version this worker speaks.
const ProtocolVersion = 1

// Status is the outcome of one event.
type Status int32

// Outcomes, as in eddy.v1.ResultStatus.
const (
	StatusUnspecified Status = iota
	StatusOK
	StatusRetry
	StatusDeadLetter
)

// Header is a Kafka record header. It is transport.Header, so a record's
// headers pass from the consumer to the agents and from the agents to the
// producer without a conversion of their own.
type Header = transport.Header

// Record is a record an agent asks the worker to produce.
type Record struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers []Header
	// Timestamp is the record's timestamp; zero: the input event's (as in
	// Kafka Streams: windowing downstream depends on it).
	Timestamp time.Time
}

// Mutation changes one key of a table.
type Mutation struct {
	Table  string
	Key    []byte
	Value  []byte
	Delete bool
	// WindowStart names the window of a windowed table; zero for a plain
	// table.
	WindowStart time.Time
}

// Result is the outcome of one delivered event.
type Result struct {
	Offset    int64
	Status    Status
	Error     string
	Produced  []Record
	Mutations []Mutation
}

// Results reports outcomes for events of one partition, delivered under Epoch.
type Results struct {
	Topic     string
	Partition int32
	Epoch     uint64
	Results   []Result
}

// Hello opens a session.
type Hello struct {
	// App is the app the agent was written for; Open refuses a Hello
	// whose App is not the worker's (an agent pointed at another app's
	// worker). Empty is accepted with a deprecation warning, for SDKs
	// older than the field (docs/protocol.md).
	App             string
	Agent           string
	InstanceID      string
	ProtocolVersion uint32
	CreditEvents    uint32
	CreditBytes     uint64
	// Peer is the remote address, for ListAgents and logs.
	Peer string
}

// Welcome accepts a session.
type Welcome struct {
	SessionID       string
	MaxMessageBytes uint32
	MaxBatchEvents  uint32
	MaxBatchBytes   uint32
	MaxRetries      uint32
}

// PartitionRef names a partition under an epoch, for acknowledgements.
type PartitionRef struct {
	Topic     string
	Partition int32
	Epoch     uint64
}

// Event is one Kafka record delivered to an agent.
type Event struct {
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time
	Attempt   uint32
	// State holds, for each table of the agent (in the app file's order),
	// the key's current value. Empty for agents without tables.
	State []TableState
}

// TableState is the value of one table for an event's key.
type TableState struct {
	Table string
	// HasValue tells an absent key (false) from an empty value (true).
	HasValue bool
	Value    []byte
	// WindowStart is the window's start for a windowed table; zero for a
	// plain table.
	WindowStart time.Time
}

// Outbound is one message to an agent; exactly one field is set.
type Outbound struct {
	Assign    *PartitionRef
	Revoke    *Revoke
	Batch     *Batch
	Committed *Committed
	// StateReply answers a StateGet of the instance.
	StateReply *StateReply
}

// Revoke takes a partition away from an instance.
type Revoke struct {
	PartitionRef
	Deadline time.Time
}

// Batch carries events of one partition in offset order.
type Batch struct {
	PartitionRef
	Events []Event
}

// Committed says every event of a partition below Offset is done and durable.
type Committed struct {
	Topic     string
	Partition int32
	Offset    int64
}

// UnknownAgentError is returned by Open for an agent the app file does not
// declare.
type UnknownAgentError struct {
	Name     string
	Declared []string
}

func (e *UnknownAgentError) Error() string {
	if len(e.Declared) == 0 {
		return fmt.Sprintf("unknown agent %q: the app declares no agents", e.Name)
	}
	list := ""
	for i, n := range e.Declared {
		if i > 0 {
			list += ", "
		}
		list += fmt.Sprintf("%q", n)
	}
	return fmt.Sprintf("unknown agent %q: declared agents are %s", e.Name, list)
}

// AppMismatchError is returned by Open for a Hello naming another app than
// the worker's: the agent was pointed at the wrong worker.
type AppMismatchError struct {
	// Hello is the app the agent named; Worker is the worker's app.
	Hello, Worker string
}

func (e *AppMismatchError) Error() string {
	return fmt.Sprintf("hello.app %q does not match this worker's app %q", e.Hello, e.Worker)
}

// ErrProtocolVersion is returned by Open for a protocol version other than
// ProtocolVersion.
var ErrProtocolVersion = errors.New("unsupported agent protocol version")

// ErrBadRequest is a request the worker cannot answer as asked; the
// wrapping error says why. It wraps every protocol violation by an agent
// (results for offsets never delivered, duplicates, unknown tables...): the
// session ends with it; nothing is lost, the session's events are delivered
// again. The app wraps it for table reads and Send out of range.
var ErrBadRequest = errors.New("bad request")

// ErrShuttingDown ends sessions when the worker stops; agents reconnect to
// another worker.
var ErrShuttingDown = errors.New("the worker is shutting down")

// ErrReplaced ends a session when its instance opened a new one (a
// reconnect under the same instance id).
var ErrReplaced = errors.New("replaced by a new session of the same instance")

// ErrStalled ends a session that does not read what the worker sends.
var ErrStalled = errors.New("the agent does not read its stream")

// ErrProcessingTimeout ends a session that held a partition's oldest
// unanswered event longer than its agent's processing_timeout: the instance
// is taken as hung, and its events go to another instance.
var ErrProcessingTimeout = errors.New("the agent instance did not answer within its processing_timeout")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}
