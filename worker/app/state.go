package app

import (
	"errors"

	"fmt"
	"github.com/eddy-streams/eddy/worker/monitor"
	"time"
)

// State is the lifecycle state of the worker:
// STARTING → RUNNING ⇄ PAUSED → STOPPING → STOPPED.
type State int32

// The lifecycle states, in order. 2 was RECOVERING, never entered: tables
// are restored per partition while the worker is RUNNING
// (docs/architecture.md#lifecycle); the numbers stay those of the
// protocol's WorkerState.
const (
	StateStarting State = iota + 1
	_
	StateRunning
	StatePaused
	StateStopping
	StateStopped
)

var stateNames = map[State]string{
	StateStarting: "STARTING",
	StateRunning:  "RUNNING",
	StatePaused:   "PAUSED",
	StateStopping: "STOPPING",
	StateStopped:  "STOPPED",
}

// allStateNames are the states' names in lifecycle order
// (eddy_worker_state's state set).
var allStateNames = []string{"STARTING", "RUNNING", "PAUSED", "STOPPING", "STOPPED"}

// String returns the state's upper-case name.
func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Serving reports whether the worker is up for business: RUNNING or PAUSED.
// Health checks report SERVING exactly then.
func (s State) Serving() bool { return s == StateRunning || s == StatePaused }

// TopicPartition names one partition of one topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// String formats tp as topic[partition].
func (tp TopicPartition) String() string { return fmt.Sprintf("%s[%d]", tp.Topic, tp.Partition) }

// AgentSummary is the short status of one declared agent.
type AgentSummary struct {
	Name       string
	Instances  int
	Partitions int
	Paused     bool
}

// KafkaError is an error the Kafka client reported.
type KafkaError struct {
	At      time.Time
	Code    string
	Message string
	Fatal   bool
}

// Status is a point-in-time view of the worker, for GetStatus.
type Status struct {
	State               State
	Version             string
	App                 string
	WorkerID            string
	Brokers             string
	Embedded            bool
	ProcessingGuarantee string
	StartedAt           time.Time
	GRPCAddr            string
	HTTPAddr            string
	Assigned            []TopicPartition
	PausedAgents        []string
	Agents              []AgentSummary
	KafkaErrors         []KafkaError
	Stalled             []monitor.Stall
	Warnings            []string
	// Errors lists conditions that stopped part of the worker's work
	// until an operator acts, e.g. an agent blocked because a source
	// topic changed its partition count under its tables.
	Errors []string
	// Recovery lists the table partitions being restored now.
	Recovery []RecoveryProgress
	// LastRestores holds the latest finished restore of each table
	// partition this worker restored since it started, by table and
	// partition.
	LastRestores []LastRestore
}

// LastRestore is how the latest finished restore of a table partition
// went.
type LastRestore struct {
	Table     string
	Partition int32
	// Full is set when the store was rebuilt from the changelog's
	// beginning (Reason says why); otherwise the restore continued from the
	// local checkpoint (or a standby's store).
	Full   bool
	Reason string
	// From is the first changelog offset read, To the end the restore
	// caught up to (exclusive).
	From, To int64
	// Records is the changelog records read; Duration how long it took.
	Records  int64
	Duration time.Duration
	// FinishedAt is when it ended.
	FinishedAt time.Time
	// Err is why the restore failed; empty when it succeeded.
	Err string
}

// RecoveryProgress is where one running restore of a table partition
// stands.
type RecoveryProgress struct {
	Table     string
	Partition int32
	// Done is the changelog records applied so far; Total adds the
	// offsets left (an upper bound: compaction leaves gaps).
	Done, Total int64
	// Rate is records per second; Remaining the estimated time left (-1:
	// unknown).
	Rate      float64
	Remaining time.Duration
}

// AgentInfo describes one declared agent, for ListAgents.
type AgentInfo struct {
	Name     string
	Topics   []string
	Ordering string
	Tables   []string
	Paused   bool
	// Blocked says why nothing of the agent's partitions is delivered or
	// written any more, since BlockedSince; "" while it works.
	Blocked      string
	BlockedSince time.Time
	Instances    []InstanceInfo
	Unassigned   []TopicPartition
	InFlight     int64
	Lag          int64
}

// InstanceInfo describes one connected agent instance.
type InstanceInfo struct {
	InstanceID   string
	SessionID    string
	Peer         string
	ConnectedAt  time.Time
	Partitions   []TopicPartition
	InFlight     int64
	CreditEvents int64
}

// TableInfo describes one declared table, for ListTables.
type TableInfo struct {
	Name            string
	Partitions      int32
	ChangelogTopic  string
	StandbyReplicas int
	WindowType      string
	WindowSize      time.Duration
	WindowStep      time.Duration
	WindowExpires   time.Duration
	// ActivePartitions are the partitions this worker owns (restoring
	// ones included), StandbyPartitions those it keeps warm for others.
	ActivePartitions  []int32
	StandbyPartitions []int32
	// Keys counts the keys of the active partitions, as the agents see
	// them (restoring partitions not counted).
	Keys int64
}

// ErrNotRunning is returned outside RUNNING and PAUSED by the calls that
// need a running worker (Pause, Resume, OpenAgentSession, Send): it is
// transient, the worker is starting or stopping. An unknown agent name is
// *agents.UnknownAgentError.
var ErrNotRunning = errors.New("the worker is not running")
