// Package app wires the worker's runtime services and owns them: it starts
// them in order, tracks the lifecycle state, and stops them in reverse.
// It is the only package that knows all of them.
package app

import (
	"context"
	"fmt"

	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/monitor"
	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/tables/live"
	"github.com/eddy-streams/eddy/worker/transport"
)

// Options are what the worker process hands the app.
type Options struct {
	// Logger is the worker's logger. Required.
	Logger *slog.Logger
	// Version is reported in status.
	Version string
	// Bootstrap is the resolved bootstrap list (the embedded broker's address
	// when brokers is "embedded").
	Bootstrap string
	// GRPCAddr and HTTPAddr are the bound control-plane addresses.
	GRPCAddr, HTTPAddr string
	// Advertise is the gRPC address the other workers dial to reach this
	// one, published in the consumer group's client.id (config
	// Listen.Advertised). Default: GRPCAddr.
	Advertise string
	// Shutdown is called when a Shutdown RPC asks the process to stop.
	Shutdown func(reason string)
}

// App is the runtime of one worker. Its methods are safe for concurrent use.
type App struct {
	cfg       *config.Config
	opts      Options
	log       *slog.Logger
	startedAt time.Time
	mon       *monitor.Monitor
	running   atomic.Bool
	state     atomic.Int32

	mu           sync.Mutex
	onState      []func(State)
	assigned     map[TopicPartition]bool
	pausedAgents map[string]bool
	kafkaErrs    func() []KafkaError
	startWarns   []string // found at start, e.g. replicationWarning
	mgr          *agents.Manager
	recovery     map[tablePartition]tables.Progress // restores under way
	lastRestores map[tablePartition]LastRestore     // the latest finished restore of each
	restored     map[string]int64                   // changelog records read by restores, by table
	describer    groupDescriber                     // set by Run once the admin client is up
	producer     *transport.Producer                // set by Run: Send writes through it
	members      members
	standbys     *tables.Standbys // set by Run when a table has standby replicas
	standbyKick  chan struct{}    // an assignment changed: re-place standbys
	// partitioners place the keys of each declared topic
	// (topics[].partitioner); read-only.
	partitioners transport.TopicPartitioners
}

type tablePartition struct {
	table     string
	partition int32
}

// onRestoreProgress records a restore's progress for status; it runs on
// the restoring goroutine.
func (a *App) onRestoreProgress(p tables.Progress) {
	if p.Standby {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	k := tablePartition{p.Table, p.Partition}
	if prev := a.recovery[k].Records; p.Records >= prev {
		a.restored[p.Table] += p.Records - prev
	} else {
		a.restored[p.Table] += p.Records // a new attempt after a failed one
	}
	if p.Done {
		// Kept after the restore, unlike its progress: an operator looking
		// at a slow start-up after the fact wants to know how it went.
		delete(a.recovery, k)
		a.lastRestores[k] = LastRestore{Table: p.Table, Partition: p.Partition, Full: p.Rebuild, Reason: p.Reason,
			From: p.From, To: p.To, Records: p.Records, Duration: p.Elapsed, FinishedAt: time.Now(), Err: p.Err}
	} else {
		a.recovery[k] = p
	}
}

func (a *App) lastRestoresLocked() []LastRestore {
	out := make([]LastRestore, 0, len(a.lastRestores))
	for _, r := range a.lastRestores {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Table != out[j].Table {
			return out[i].Table < out[j].Table
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

func (a *App) recoveryLocked() []RecoveryProgress {
	var out []RecoveryProgress
	for _, p := range a.recovery {
		out = append(out, RecoveryProgress{Table: p.Table, Partition: p.Partition, Done: p.Records,
			Total: p.Records + p.Remaining(), Rate: p.Rate, Remaining: p.ETA})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Table != out[j].Table {
			return out[i].Table < out[j].Table
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

// New returns an app for a validated config.
func New(cfg *config.Config, opts Options) *App {
	a := &App{
		cfg:          cfg,
		opts:         opts,
		log:          opts.Logger,
		startedAt:    time.Now(),
		mon:          monitor.New(cfg.App, opts.Version, cfg.Monitor.Enabled),
		partitioners: partitioners(cfg),
		assigned:     map[TopicPartition]bool{},
		standbyKick:  make(chan struct{}, 1),
		pausedAgents: map[string]bool{},
		recovery:     map[tablePartition]tables.Progress{},
		lastRestores: map[tablePartition]LastRestore{},
		restored:     map[string]int64{},
	}
	a.mon.Registry().MustRegister(restoreCollector{a})
	a.setState(StateStarting)
	return a
}

// Snapshot returns the worker's metrics now.
func (a *App) Snapshot() monitor.Snapshot { return a.mon.Snapshot() }

// WatchDropped counts a snapshot a slow Watch caller missed.
func (a *App) WatchDropped() { a.mon.WatchDropped.Add(1) }

// State returns the current lifecycle state.
func (a *App) State() State { return State(a.state.Load()) }

// Metrics is the Prometheus registry of the worker.
func (a *App) Metrics() prometheus.Gatherer { return a.mon.Registry() }

// OnStateChange registers f to be called with every new state, and once now
// with the current one. f must not block.
func (a *App) OnStateChange(f func(State)) {
	a.mu.Lock()
	a.onState = append(a.onState, f)
	a.mu.Unlock()
	f(a.State())
}

func (a *App) setState(s State) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.setStateLocked(s)
}

// setStateLocked records s and notifies the listeners, with a.mu held so
// listeners see transitions in order.
func (a *App) setStateLocked(s State) {
	old := State(a.state.Swap(int32(s)))
	if old == s {
		return
	}
	a.mon.SetState(s.String(), allStateNames)
	if a.log != nil && old != 0 {
		a.log.Info("state", "from", old.String(), "to", s.String())
	}
	for _, f := range a.onState {
		f(s)
	}
}

// casState moves to s if the current state is one of from, and reports
// whether it did.
func (a *App) casState(s State, from ...State) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !slices.Contains(from, State(a.state.Load())) {
		return false
	}
	a.setStateLocked(s)
	return true
}

// Status returns a point-in-time view of the worker.
func (a *App) Status() Status {
	instances := map[string]int{}
	var blocked []string
	for _, in := range a.AgentInfos() {
		instances[in.Name] = len(in.Instances)
		if in.Blocked != "" {
			blocked = append(blocked, fmt.Sprintf("agent %q is blocked since %s: %s", in.Name,
				in.BlockedSince.UTC().Format(time.RFC3339), in.Blocked))
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{
		State:               State(a.state.Load()),
		Version:             a.opts.Version,
		App:                 a.cfg.App,
		WorkerID:            a.cfg.WorkerID,
		Brokers:             a.cfg.Brokers,
		Embedded:            a.cfg.Embedded(),
		ProcessingGuarantee: a.cfg.ProcessingGuarantee,
		StartedAt:           a.startedAt,
		GRPCAddr:            a.opts.GRPCAddr,
		HTTPAddr:            a.opts.HTTPAddr,
		Assigned:            a.assignedLocked(),
		PausedAgents:        a.pausedLocked(),
		Errors:              blocked,
	}
	if st.Embedded {
		st.Brokers = "embedded (" + a.opts.Bootstrap + ")"
		st.Warnings = append(st.Warnings, "embedded broker: DEV ONLY, in memory, keeps nothing across restarts")
	}
	st.Warnings = append(st.Warnings, a.startWarns...)
	for _, ag := range a.cfg.Agents {
		st.Agents = append(st.Agents, AgentSummary{
			Name:       ag.Name,
			Instances:  instances[ag.Name],
			Partitions: len(a.partitionsOfLocked(ag)),
			Paused:     a.pausedAgents[ag.Name] || st.State == StatePaused,
		})
	}
	if a.kafkaErrs != nil {
		st.KafkaErrors = a.kafkaErrs()
	}
	st.Stalled = a.mon.Stalls()
	for _, s := range st.Stalled {
		if s.Error {
			st.Errors = append(st.Errors, fmt.Sprintf("agent %q, topic %q partition %d, since %s: %s",
				s.Agent, s.Topic, s.Partition, s.Since.UTC().Format(time.RFC3339), s.Reason))
		}
	}
	st.Recovery = a.recoveryLocked()
	st.LastRestores = a.lastRestoresLocked()
	return st
}

func (a *App) assignedLocked() []TopicPartition {
	out := make([]TopicPartition, 0, len(a.assigned))
	for tp := range a.assigned {
		out = append(out, tp)
	}
	sortTPs(out)
	return out
}

func (a *App) partitionsOfLocked(ag config.Agent) []TopicPartition {
	var out []TopicPartition
	for tp := range a.assigned {
		if slices.Contains(ag.Topics, tp.Topic) {
			out = append(out, tp)
		}
	}
	sortTPs(out)
	return out
}

func (a *App) pausedLocked() []string {
	var out []string
	for name := range a.pausedAgents {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func sortTPs(tps []TopicPartition) {
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].Topic != tps[j].Topic {
			return tps[i].Topic < tps[j].Topic
		}
		return tps[i].Partition < tps[j].Partition
	})
}

// Pause pauses delivery to one agent, or to all (agent ""), which moves the
// worker to PAUSED. It returns the new state and the paused agents.
func (a *App) Pause(agent string) (State, []string, error) {
	return a.setPaused(agent, true)
}

// Resume undoes Pause.
func (a *App) Resume(agent string) (State, []string, error) {
	return a.setPaused(agent, false)
}

func (a *App) setPaused(agent string, paused bool) (State, []string, error) {
	if agent != "" {
		if _, ok := a.cfg.Agent(agent); !ok {
			names := make([]string, len(a.cfg.Agents))
			for i, ag := range a.cfg.Agents {
				names[i] = ag.Name
			}
			return a.State(), nil, &agents.UnknownAgentError{Name: agent, Declared: names}
		}
	}
	if !a.State().Serving() {
		return a.State(), nil, errNotRunning(a.State())
	}
	if agent == "" {
		from, to := StateRunning, StatePaused
		if !paused {
			from, to = StatePaused, StateRunning
		}
		a.casState(to, from)
	} else {
		a.mu.Lock()
		if paused {
			a.pausedAgents[agent] = true
		} else {
			delete(a.pausedAgents, agent)
		}
		a.mu.Unlock()
		a.log.Info("agent delivery", "agent", agent, "paused", paused)
	}
	a.syncPause()
	a.mu.Lock()
	defer a.mu.Unlock()
	return State(a.state.Load()), a.pausedLocked(), nil
}

// syncPause tells the agents manager which agents are paused: all while
// the worker is PAUSED, plus those paused one by one.
func (a *App) syncPause() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mgr == nil {
		return
	}
	all := State(a.state.Load()) == StatePaused
	for _, ag := range a.cfg.Agents {
		a.mgr.SetPaused(ag.Name, all || a.pausedAgents[ag.Name])
	}
}

// OpenAgentSession starts an agent session (AgentService.Connect).
func (a *App) OpenAgentSession(h agents.Hello) (*agents.Session, agents.Welcome, error) {
	a.mu.Lock()
	mgr := a.mgr
	a.mu.Unlock()
	if mgr == nil || !a.State().Serving() {
		return nil, agents.Welcome{}, errNotRunning(a.State())
	}
	return mgr.Open(h)
}

func errNotRunning(s State) error {
	return fmt.Errorf("%w: state is %s", ErrNotRunning, s)
}

// Shutdown asks the worker process to stop gracefully and returns the
// deadline by which it will have stopped.
func (a *App) Shutdown(reason string) time.Time {
	deadline := time.Now().Add(a.cfg.ShutdownTimeout.D())
	if a.opts.Shutdown != nil {
		a.opts.Shutdown(reason)
	}
	return deadline
}

// AgentInfos describes the declared agents, their instances and partitions.
func (a *App) AgentInfos() []AgentInfo {
	a.mu.Lock()
	mgr := a.mgr
	a.mu.Unlock()
	if mgr == nil {
		var out []AgentInfo
		for _, ag := range a.cfg.Agents {
			out = append(out, AgentInfo{Name: ag.Name, Topics: ag.Topics, Ordering: ag.Ordering, Tables: ag.Tables})
		}
		return out
	}
	var out []AgentInfo
	lag := a.mon.LagByAgent()
	for _, in := range mgr.Info() {
		ai := AgentInfo{
			Name: in.Name, Topics: in.Topics, Ordering: in.Ordering, Tables: in.Tables, Paused: in.Paused,
			Blocked: in.Blocked, BlockedSince: in.BlockedSince,
			Unassigned: tps(in.Unassigned), InFlight: in.InFlight, Lag: lag[in.Name],
		}
		for _, s := range in.Instances {
			ai.Instances = append(ai.Instances, InstanceInfo{
				InstanceID: s.InstanceID, SessionID: s.SessionID, Peer: s.Peer, ConnectedAt: s.ConnectedAt,
				Partitions: tps(s.Partitions), InFlight: s.InFlight, CreditEvents: s.CreditEvents,
			})
		}
		out = append(out, ai)
	}
	return out
}

func tps(in []transport.TopicPartition) []TopicPartition {
	out := make([]TopicPartition, len(in))
	for i, tp := range in {
		out[i] = TopicPartition{Topic: tp.Topic, Partition: tp.Partition}
	}
	return out
}

// TableInfos describes the declared tables, with the partitions this
// worker holds. Safe for concurrent use.
func (a *App) TableInfos(ctx context.Context) ([]TableInfo, error) {
	var stats []live.Stat
	if mgr, err := a.manager(); err == nil {
		if stats, err = mgr.TableStats(ctx); err != nil {
			return nil, err
		}
	}
	standby := a.standbyPartitions()
	var out []TableInfo
	for _, t := range a.cfg.Tables {
		info := TableInfo{
			Name:            t.Name,
			Partitions:      a.tablePartitions(t.Name),
			ChangelogTopic:  tables.ChangelogTopic(a.cfg.App, t.Name),
			StandbyReplicas: t.StandbyReplicas,
		}
		if w := t.Window; w != nil {
			info.WindowType, info.WindowSize, info.WindowStep, info.WindowExpires = w.Type, w.Size.D(), w.Step.D(), w.Expires.D()
		}
		for _, st := range stats {
			if st.Table == t.Name {
				info.ActivePartitions = append(info.ActivePartitions, st.Partition)
				info.Keys += st.Keys
			}
		}
		info.StandbyPartitions = standby[t.Name]
		out = append(out, info)
	}
	return out, nil
}

// tablePartitions is the partition count of a table: that of its source
// topics (tables are partitioned like their source).
func (a *App) tablePartitions(table string) int32 {
	return int32(a.cfg.TablePartitions(table))
}
