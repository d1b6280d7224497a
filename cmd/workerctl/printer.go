package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// printer renders command results in the format chosen with -o.
type printer interface {
	status(*eddyv1.GetStatusResponse) error
	workers([]workerStatus) error
	agents(*eddyv1.ListAgentsResponse) error
	stats(*eddyv1.GetSnapshotResponse) error
	tables(*eddyv1.ListTablesResponse) error
	get(key string, resp *eddyv1.GetResponse) error
	scan(table string, resp *eddyv1.ScanResponse) error
	pause(agent string, resp *eddyv1.PauseResponse) error
	resume(agent string, resp *eddyv1.ResumeResponse) error
	shutdown(*eddyv1.ShutdownResponse) error
	send(topic string, resp *eddyv1.SendResponse) error
	version(v string) error
}

// jsonPrinter writes responses as protojson with snake_case names and every
// field present, so scripts can rely on the shape whatever the values.
type jsonPrinter struct{ w io.Writer }

var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// compact writes m as one line of JSON (for streams).
func (p *jsonPrinter) compact(m proto.Message) error {
	b, err := jsonOptions.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s as JSON: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return fmt.Errorf("compact JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err = p.w.Write(out.Bytes())
	return err
}

func (p *jsonPrinter) message(m proto.Message) error {
	b, err := jsonOptions.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s as JSON: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	// protojson varies its whitespace on purpose; re-indenting gives output
	// that is stable from one run to the next, so it can be diffed.
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("indent JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err = p.w.Write(out.Bytes())
	return err
}

func (p *jsonPrinter) status(st *eddyv1.GetStatusResponse) error { return p.message(st) }

func (p *jsonPrinter) pause(_ string, resp *eddyv1.PauseResponse) error { return p.message(resp) }

func (p *jsonPrinter) resume(_ string, resp *eddyv1.ResumeResponse) error { return p.message(resp) }

func (p *jsonPrinter) shutdown(resp *eddyv1.ShutdownResponse) error { return p.message(resp) }

func (p *jsonPrinter) version(v string) error {
	b, err := json.MarshalIndent(struct {
		Version string `json:"version"`
	}{v}, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(p.w, "%s\n", b)
	return err
}

// tablePrinter writes aligned text for people.
type tablePrinter struct {
	w   io.Writer
	now func() time.Time
}

func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

func (p *tablePrinter) status(st *eddyv1.GetStatusResponse) error {
	tw := newTabWriter(p.w)
	if st.GetEmbeddedBroker() {
		fmt.Fprintln(tw, "!! embedded broker: DEV ONLY, keeps nothing")
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "State:\t%s\n", stateName(st.GetState()))
	fmt.Fprintf(tw, "App:\t%s\n", orDash(st.GetApp()))
	fmt.Fprintf(tw, "Worker ID:\t%s\n", orDash(st.GetWorkerId()))
	fmt.Fprintf(tw, "Version:\t%s\n", orDash(st.GetVersion()))
	fmt.Fprintf(tw, "Uptime:\t%s\n", p.uptime(st))
	fmt.Fprintf(tw, "Brokers:\t%s\n", orDash(st.GetBrokers()))
	fmt.Fprintf(tw, "Guarantee:\t%s\n", orDash(st.GetProcessingGuarantee()))
	fmt.Fprintf(tw, "gRPC:\t%s\n", orDash(st.GetGrpcAddress()))
	fmt.Fprintf(tw, "HTTP:\t%s\n", orDash(st.GetHttpAddress()))
	fmt.Fprintf(tw, "Assigned:\t%s\n", compactPartitions(st.GetAssigned()))
	if paused := st.GetPausedAgents(); len(paused) > 0 {
		fmt.Fprintf(tw, "Paused agents:\t%s\n", strings.Join(paused, ", "))
	}
	if len(st.GetAgents()) == 0 {
		fmt.Fprintf(tw, "Agents:\tnone\n")
	}

	// Errors and stalls first among the sections: they are what the
	// operator must act on.
	if errs := st.GetErrors(); len(errs) > 0 {
		fmt.Fprintf(tw, "\n!! ERRORS (%d): these need an operator\n", len(errs))
		for _, e := range errs {
			fmt.Fprintf(tw, "- %s\n", e)
		}
	}
	if stalled := st.GetStalled(); len(stalled) > 0 {
		fmt.Fprintf(tw, "\n!! STALLED (%d): these stopped making progress\n", len(stalled))
		fmt.Fprintln(tw, "PARTITION\tAGENT\tINSTANCE\tSINCE\tREASON")
		for _, s := range stalled {
			part := "-"
			if s.GetPartition() != nil {
				part = compactPartitions([]*eddyv1.TopicPartition{s.GetPartition()})
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", part, orDash(s.GetAgent()), orDash(s.GetInstanceId()),
				p.ago(s.GetSince()), orDash(s.GetReason()))
		}
	}
	if agents := st.GetAgents(); len(agents) > 0 {
		fmt.Fprintln(tw, "\nAGENTS")
		fmt.Fprintln(tw, "NAME\tINSTANCES\tPARTITIONS\tPAUSED")
		for _, a := range agents {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", a.GetName(), a.GetInstances(), a.GetPartitions(), yesNo(a.GetPaused()))
		}
	}
	if recovery := st.GetRecovery(); len(recovery) > 0 {
		fmt.Fprintln(tw, "\nRECOVERING")
		fmt.Fprintln(tw, "TABLE\tPARTITION\tDONE/TOTAL\tRATE\tETA")
		for _, r := range recovery {
			eta := "-"
			if r.GetRemaining() != nil {
				eta = humanDuration(r.GetRemaining().AsDuration())
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", r.GetTable(), r.GetPartition(),
				progress(r.GetDone(), r.GetTotal()), rate(r.GetRecordsPerSecond()), eta)
		}
	}
	if last := st.GetLastRestores(); len(last) > 0 {
		fmt.Fprintln(tw, "\nLAST RESTORES")
		fmt.Fprintln(tw, "TABLE\tPARTITION\tFROM\tRECORDS\tTOOK\tFINISHED\tNOTE")
		for _, r := range last {
			from, note := "checkpoint", "-"
			if r.GetFull() {
				from, note = "full", orDash(r.GetReason())
			}
			if e := r.GetError(); e != "" {
				note = "FAILED: " + e
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\n", r.GetTable(), r.GetPartition(), from, r.GetRecords(),
				took(r.GetDuration().AsDuration()), p.ago(r.GetFinishedAt()), note)
		}
	}
	if errs := st.GetKafkaErrors(); len(errs) > 0 {
		fmt.Fprintln(tw, "\nKAFKA ERRORS (newest first)")
		fmt.Fprintln(tw, "WHEN\tCODE\tFATAL\tMESSAGE")
		for _, e := range errs {
			fatal := "no"
			if e.GetFatal() {
				fatal = "FATAL"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.ago(e.GetAt()), orDash(e.GetCode()), fatal, e.GetMessage())
		}
	}
	if warnings := st.GetWarnings(); len(warnings) > 0 {
		fmt.Fprintln(tw, "\nWARNINGS")
		for _, w := range warnings {
			fmt.Fprintf(tw, "- %s\n", w)
		}
	}
	return tw.Flush()
}

func (p *tablePrinter) pause(agent string, resp *eddyv1.PauseResponse) error {
	return p.pauseResult("Paused", agent, resp.GetState(), resp.GetPausedAgents())
}

func (p *tablePrinter) resume(agent string, resp *eddyv1.ResumeResponse) error {
	return p.pauseResult("Resumed", agent, resp.GetState(), resp.GetPausedAgents())
}

func (p *tablePrinter) pauseResult(verb, agent string, state eddyv1.WorkerState, paused []string) error {
	tw := newTabWriter(p.w)
	if agent == "" {
		fmt.Fprintf(tw, "%s all agents.\n", verb)
	} else {
		fmt.Fprintf(tw, "%s agent %s.\n", verb, agent)
	}
	fmt.Fprintf(tw, "State:\t%s\n", stateName(state))
	pausedList := "none"
	if len(paused) > 0 {
		pausedList = strings.Join(paused, ", ")
	}
	fmt.Fprintf(tw, "Paused agents:\t%s\n", pausedList)
	return tw.Flush()
}

func (p *tablePrinter) shutdown(resp *eddyv1.ShutdownResponse) error {
	if resp.GetDeadline() == nil {
		_, err := fmt.Fprintln(p.w, "Shutdown requested.")
		return err
	}
	deadline := resp.GetDeadline().AsTime()
	_, err := fmt.Fprintf(p.w, "Shutdown requested. The worker forces its exit at %s (in %s) if it has not stopped by then.\n",
		deadline.Local().Format(time.RFC3339), humanDuration(deadline.Sub(p.now())))
	return err
}

func (p *tablePrinter) version(v string) error {
	_, err := fmt.Fprintf(p.w, "workerctl %s\n", v)
	return err
}

// uptime prefers the worker's own figure and falls back to started_at.
func (p *tablePrinter) uptime(st *eddyv1.GetStatusResponse) string {
	switch {
	case st.GetUptime() != nil:
		return humanDuration(st.GetUptime().AsDuration())
	case st.GetStartedAt() != nil:
		return humanDuration(p.now().Sub(st.GetStartedAt().AsTime()))
	default:
		return "-"
	}
}

func (p *tablePrinter) ago(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	d := p.now().Sub(ts.AsTime())
	if d < time.Second {
		return "just now"
	}
	return humanDuration(d) + " ago"
}

// stateName is the state without the enum prefix: "RUNNING".
func stateName(s eddyv1.WorkerState) string {
	return strings.TrimPrefix(s.String(), "WORKER_STATE_")
}

// humanDuration rounds d to what a person needs: "45s", "12m3s", "3h12m",
// "2d5h".
func humanDuration(d time.Duration) string {
	if d < 0 {
		return "-" + humanDuration(-d)
	}
	const day = 24 * time.Hour
	d = d.Round(time.Second)
	switch {
	case d < time.Hour:
		return d.String()
	case d < day:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	default:
		d = d.Round(time.Hour)
		return fmt.Sprintf("%dd%dh", d/day, d%day/time.Hour)
	}
}

// took is the duration of a short job: "40ms", "1.5s", then as
// humanDuration.
func took(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	return humanDuration(d)
}

// compactPartitions lists partitions per topic with runs collapsed, topics in
// name order: "orders[0-3,5] payments[1]".
func compactPartitions(tps []*eddyv1.TopicPartition) string {
	if len(tps) == 0 {
		return "none"
	}
	byTopic := map[string][]int32{}
	for _, tp := range tps {
		byTopic[tp.GetTopic()] = append(byTopic[tp.GetTopic()], tp.GetPartition())
	}
	topics := make([]string, 0, len(byTopic))
	for t := range byTopic {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	parts := make([]string, 0, len(topics))
	for _, t := range topics {
		ps := byTopic[t]
		slices.Sort(ps)
		ps = slices.Compact(ps)
		var runs []string
		for i := 0; i < len(ps); {
			j := i
			for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
				j++
			}
			if j == i {
				runs = append(runs, strconv.Itoa(int(ps[i])))
			} else {
				runs = append(runs, fmt.Sprintf("%d-%d", ps[i], ps[j]))
			}
			i = j + 1
		}
		parts = append(parts, fmt.Sprintf("%s[%s]", t, strings.Join(runs, ",")))
	}
	return strings.Join(parts, " ")
}

func progress(done, total int64) string {
	if total <= 0 {
		return fmt.Sprintf("%d/?", done)
	}
	return fmt.Sprintf("%d/%d (%d%%)", done, total, done*100/total)
}

func rate(perSecond float64) string {
	if perSecond <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f/s", perSecond)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string { return cmp.Or(s, "-") }
