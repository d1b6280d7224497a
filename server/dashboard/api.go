package dashboard

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/app"
	"github.com/eddy-streams/eddy/worker/tables/live"
)

// State is the answer of GET /dashboard/api/state: everything the page
// shows, read when asked (the charts' samples and the events come from
// Run's buffers).
type State struct {
	Now        int64          `json:"now"` // Unix milliseconds
	App        string         `json:"app"`
	Worker     WorkerView     `json:"worker"`
	Auth       authState      `json:"auth"`
	Workers    []WorkerView   `json:"workers"`
	Agents     []AgentView    `json:"agents"`
	Partitions []PartView     `json:"partitions"`
	Series     Series         `json:"series"`
	Restores   []RestoreView  `json:"restores"`
	Standbys   []StandbyView  `json:"standbys"`
	Tables     []TableView    `json:"tables"`
	Events     []Event        `json:"events"`
	Errors     []string       `json:"errors"`
	Paused     []string       `json:"paused_agents"`
	Stalled    []StallView    `json:"stalled"`
	Counts     map[string]int `json:"counts"`
}

// WorkerView is one worker of the group.
type WorkerView struct {
	ID         string  `json:"id"`
	Addr       string  `json:"addr"`
	HTTP       string  `json:"http,omitempty"`
	State      string  `json:"state"`
	Version    string  `json:"version"`
	UptimeS    float64 `json:"uptime_s"`
	Partitions int     `json:"partitions"`
	Self       bool    `json:"self"`
	Guarantee  string  `json:"guarantee,omitempty"`
	Brokers    string  `json:"brokers,omitempty"`
	Error      string  `json:"error,omitempty"`

	started time.Time // of a peer: UptimeS is computed when asked
}

// AgentView is one declared agent on this worker.
type AgentView struct {
	Name         string         `json:"name"`
	Topics       []string       `json:"topics"`
	Ordering     string         `json:"ordering"`
	Paused       bool           `json:"paused"`
	Blocked      string         `json:"blocked,omitempty"`
	Instances    []InstanceView `json:"instances"`
	Partitions   int            `json:"partitions"`
	Unassigned   int            `json:"unassigned"`
	InFlight     int64          `json:"in_flight"`
	Credit       int64          `json:"credit"`
	Lag          int64          `json:"lag"`
	Processed    uint64         `json:"processed"`
	Rate         float64        `json:"rate"`
	ProcessingMS float64        `json:"processing_p99_ms"`
}

// InstanceView is one connected agent instance.
type InstanceView struct {
	ID         string  `json:"id"`
	Peer       string  `json:"peer"`
	Partitions int     `json:"partitions"`
	InFlight   int64   `json:"in_flight"`
	Credit     int64   `json:"credit"`
	UptimeS    float64 `json:"uptime_s"`
	Stalled    bool    `json:"stalled"`
}

// PartView is one partition this worker owns, per agent.
type PartView struct {
	Agent        string  `json:"agent"`
	Topic        string  `json:"topic"`
	Partition    int32   `json:"partition"`
	Rate         float64 `json:"rate"`
	Lag          int64   `json:"lag"`
	Committed    int64   `json:"committed"`
	InFlight     int64   `json:"in_flight"`
	Received     uint64  `json:"received"`
	Processed    uint64  `json:"processed"`
	Retried      uint64  `json:"retried"`
	DeadLettered uint64  `json:"dead_lettered"`
	ProcessingMS float64 `json:"processing_p99_ms"`
	EndToEndMS   float64 `json:"e2e_p99_ms"`
	Stalled      string  `json:"stalled,omitempty"`
}

// RestoreView is a table partition's restore, running or finished.
type RestoreView struct {
	Table      string  `json:"table"`
	Partition  int32   `json:"partition"`
	Done       int64   `json:"done"`
	Total      int64   `json:"total"`
	Rate       float64 `json:"rate"`
	ETAMS      int64   `json:"eta_ms"` // expected end, Unix ms; 0 unknown
	Finished   bool    `json:"finished"`
	FinishedAt int64   `json:"finished_at,omitempty"`
	DurationMS int64   `json:"duration_ms,omitempty"`
	Full       bool    `json:"full,omitempty"`
	Reason     string  `json:"reason,omitempty"`
	Error      string  `json:"error,omitempty"`
}

// StandbyView is one standby replica this worker keeps warm.
type StandbyView struct {
	Table     string `json:"table"`
	Partition int32  `json:"partition"`
	Lag       int64  `json:"lag"`
	Position  int64  `json:"position"`
	End       int64  `json:"end"`
	Error     string `json:"error,omitempty"`
}

// TableView is one declared table as this worker holds it.
type TableView struct {
	Name       string  `json:"name"`
	Partitions int32   `json:"partitions"`
	Keys       int64   `json:"keys"`
	Active     []int32 `json:"active"`
	Standby    []int32 `json:"standby"`
	Window     string  `json:"window,omitempty"`
}

// StallView is a stalled partition or instance.
type StallView struct {
	What   string `json:"what"`
	Since  int64  `json:"since"`
	Reason string `json:"reason"`
}

// Series are the chart samples after the request's since, oldest first,
// one slice per curve, aligned with T.
type Series struct {
	T        []int64   `json:"t"` // Unix ms
	In       []float64 `json:"in"`
	Out      []float64 `json:"out"`
	Lag      []int64   `json:"lag"`
	E2EP99MS []float64 `json:"e2e_p99_ms"`
	DLQ      []uint64  `json:"dlq"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// serveState answers GET /dashboard/api/state[?since=UNIX_MS].
func (d *Dashboard) serveState(w http.ResponseWriter, r *http.Request, auth authState) {
	var since int64
	if s := r.URL.Query().Get("since"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			writeError(w, http.StatusBadRequest, auth, fmt.Sprintf("since=%q: want Unix milliseconds (a non-negative integer)", s))
			return
		}
		since = v
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	writeJSON(w, http.StatusOK, d.state(ctx, since, auth))
}

// state builds the page's view now.
func (d *Dashboard) state(ctx context.Context, since int64, auth authState) State {
	now := time.Now()
	st := d.core.Status()
	snap := d.core.Snapshot()
	infos := d.core.AgentInfos()
	out := State{Now: now.UnixMilli(), App: st.App, Auth: auth, Errors: st.Errors, Paused: st.PausedAgents}
	out.Worker = WorkerView{ID: st.WorkerID, Addr: st.GRPCAddr, HTTP: st.HTTPAddr, State: st.State.String(), Version: st.Version,
		UptimeS: now.Sub(st.StartedAt).Seconds(), Partitions: len(st.Assigned), Self: true,
		Guarantee: st.ProcessingGuarantee, Brokers: st.Brokers}
	out.Workers = d.sampler.workers(out.Worker)

	stalledParts := map[[3]string]string{}
	stalledInst := map[string]bool{}
	for _, s := range snap.Stalled {
		what := s.Agent + " " + fmt.Sprintf("%s[%d]", s.Topic, s.Partition)
		if s.InstanceID != "" {
			stalledInst[s.Agent+"\x00"+s.InstanceID] = true
			what = s.Agent + " instance " + s.InstanceID
		} else {
			stalledParts[[3]string{s.Agent, s.Topic, strconv.Itoa(int(s.Partition))}] = s.Reason
		}
		out.Stalled = append(out.Stalled, StallView{What: what, Since: s.Since.UnixMilli(), Reason: s.Reason})
	}

	type agg struct {
		processed uint64
		rate      float64
		p99       time.Duration
	}
	byAgent := map[string]*agg{}
	out.Partitions = make([]PartView, 0, len(snap.Partitions))
	for _, p := range snap.Partitions {
		a := byAgent[p.Agent]
		if a == nil {
			a = &agg{}
			byAgent[p.Agent] = a
		}
		a.processed += p.Processed
		a.rate += p.EventsPerSecond
		a.p99 = max(a.p99, p.ProcessingP99)
		out.Partitions = append(out.Partitions, PartView{Agent: p.Agent, Topic: p.Topic, Partition: p.Partition,
			Rate: p.EventsPerSecond, Lag: p.Lag, Committed: p.Committed, InFlight: p.InFlight, Received: p.Received,
			Processed: p.Processed, Retried: p.Retried, DeadLettered: p.DeadLettered,
			ProcessingMS: ms(p.ProcessingP99), EndToEndMS: ms(p.EndToEndP99),
			Stalled: stalledParts[[3]string{p.Agent, p.Topic, strconv.Itoa(int(p.Partition))}]})
	}
	sortWorstFirst(out.Partitions)

	out.Agents = make([]AgentView, 0, len(infos))
	for _, in := range infos {
		av := AgentView{Name: in.Name, Topics: in.Topics, Ordering: in.Ordering, Paused: in.Paused, Blocked: in.Blocked,
			Unassigned: len(in.Unassigned), InFlight: in.InFlight, Lag: in.Lag, Instances: []InstanceView{}}
		for _, i := range in.Instances {
			av.Partitions += len(i.Partitions)
			av.Credit += i.CreditEvents
			av.Instances = append(av.Instances, InstanceView{ID: i.InstanceID, Peer: i.Peer, Partitions: len(i.Partitions),
				InFlight: i.InFlight, Credit: i.CreditEvents, UptimeS: now.Sub(i.ConnectedAt).Seconds(),
				Stalled: stalledInst[in.Name+"\x00"+i.InstanceID]})
		}
		if a := byAgent[in.Name]; a != nil {
			av.Processed, av.Rate, av.ProcessingMS = a.processed, a.rate, ms(a.p99)
		}
		out.Agents = append(out.Agents, av)
	}

	for _, rp := range st.Recovery {
		rv := RestoreView{Table: rp.Table, Partition: rp.Partition, Done: rp.Done, Total: rp.Total, Rate: rp.Rate}
		if rp.Remaining >= 0 {
			rv.ETAMS = now.Add(rp.Remaining).UnixMilli()
		}
		out.Restores = append(out.Restores, rv)
	}
	for _, lr := range st.LastRestores {
		out.Restores = append(out.Restores, RestoreView{Table: lr.Table, Partition: lr.Partition, Done: lr.Records,
			Total: lr.Records, Finished: true, FinishedAt: lr.FinishedAt.UnixMilli(), DurationMS: lr.Duration.Milliseconds(),
			Full: lr.Full, Reason: lr.Reason, Error: lr.Err})
	}
	for _, s := range d.core.StandbyLags() {
		out.Standbys = append(out.Standbys, StandbyView{Table: s.Table, Partition: s.Partition, Lag: s.Lag,
			Position: s.Position, End: s.End, Error: s.Err})
	}
	if tis, err := d.core.TableInfos(ctx); err == nil {
		for _, t := range tis {
			tv := TableView{Name: t.Name, Partitions: t.Partitions, Keys: t.Keys, Active: t.ActivePartitions, Standby: t.StandbyPartitions}
			if t.WindowType != "" {
				tv.Window = t.WindowType + " " + t.WindowSize.String()
			}
			out.Tables = append(out.Tables, tv)
		}
	} else {
		out.Errors = append(out.Errors, "tables: "+err.Error())
	}
	out.Series = d.sampler.series(since)
	out.Events = d.sampler.events()
	out.Counts = map[string]int{"workers": len(out.Workers), "agents": len(out.Agents), "partitions": len(out.Partitions)}
	return out
}

// sortWorstFirst orders partitions stalled first, then by lag, then by
// end-to-end p99, then by name: the ones to look at come first.
func sortWorstFirst(ps []PartView) {
	sort.Slice(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if (a.Stalled != "") != (b.Stalled != "") {
			return a.Stalled != ""
		}
		if a.Lag != b.Lag {
			return a.Lag > b.Lag
		}
		if a.EndToEndMS != b.EndToEndMS {
			return a.EndToEndMS > b.EndToEndMS
		}
		if a.Agent != b.Agent {
			return a.Agent < b.Agent
		}
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
}

// GetAnswer is the answer of GET /dashboard/api/get.
type GetAnswer struct {
	Table     string `json:"table"`
	Key       string `json:"key"`
	Found     bool   `json:"found"`
	Value     string `json:"value,omitempty"`
	Binary    bool   `json:"binary,omitempty"` // Value is base64: not UTF-8
	Partition int32  `json:"partition"`
	ServedBy  string `json:"served_by,omitempty"`
}

// serveGet answers GET /dashboard/api/get?table=T&key=K like `workerctl
// get T K`: the key's owner answers, wherever it is.
func (d *Dashboard) serveGet(w http.ResponseWriter, r *http.Request, auth authState) {
	q := r.URL.Query()
	table, key := q.Get("table"), q.Get("key")
	switch {
	case table == "":
		writeError(w, http.StatusBadRequest, auth, "table is required (?table=NAME&key=KEY)")
		return
	case key == "":
		writeError(w, http.StatusBadRequest, auth, "key is required (tables never store an empty key)")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	v, err := d.cfg.Get(ctx, table, []byte(key))
	ans := GetAnswer{Table: table, Key: key, Partition: v.Partition, ServedBy: v.ServedBy}
	switch {
	case errors.Is(err, live.ErrKeyNotFound):
		writeJSON(w, http.StatusOK, ans)
		return
	case err != nil:
		code := http.StatusBadGateway
		var ut *app.UnknownTableError
		if errors.As(err, &ut) {
			code = http.StatusNotFound
		}
		writeError(w, code, auth, err.Error())
		return
	}
	ans.Found = true
	if utf8.Valid(v.Value) {
		ans.Value = string(v.Value)
	} else {
		ans.Value, ans.Binary = base64.StdEncoding.EncodeToString(v.Value), true
	}
	writeJSON(w, http.StatusOK, ans)
}

// PauseAnswer is the answer of POST /dashboard/api/pause and resume.
type PauseAnswer struct {
	State  string   `json:"state"`
	Paused []string `json:"paused_agents"`
}

// servePause answers POST /dashboard/api/pause[?agent=A] (resume alike).
func (d *Dashboard) servePause(w http.ResponseWriter, r *http.Request, auth authState, pause bool) {
	agent := r.URL.Query().Get("agent")
	f := d.core.Resume
	if pause {
		f = d.core.Pause
	}
	st, paused, err := f(agent)
	if err != nil {
		code := http.StatusServiceUnavailable
		var ua *agents.UnknownAgentError
		if errors.As(err, &ua) {
			code = http.StatusNotFound
		}
		writeError(w, code, auth, err.Error())
		return
	}
	if paused == nil {
		paused = []string{}
	}
	writeJSON(w, http.StatusOK, PauseAnswer{State: st.String(), Paused: paused})
}
