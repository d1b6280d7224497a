package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/client/admin"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

func newStatusCommand(c *cli) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:         "status",
		Annotations: access(accessRead),
		Short:       "Show the worker's state, partitions, agents and problems",
		Long: `Show the worker's status: lifecycle state, app, worker id, version, uptime,
brokers, processing guarantee, listen addresses, assigned partitions, agents,
table recovery progress, stalled partitions, recent Kafka errors and warnings.

The table output leads with problems: a worker on the embedded dev broker and
stalled partitions are called out loudly. The JSON output is the
eddy.v1.GetStatusResponse message in protojson form with snake_case field
names and every field present, for scripts.

--all shows every worker of the app, from any one: the worker at --addr lists
the members of the app's consumer group with the addresses they advertise
(listen.advertise), and each is asked for its status, one line per worker.
The JSON output is {"workers": [{"worker_id", "grpc_address", "status" (the
GetStatusResponse), "error"}]}. A worker that does not answer is shown with its
error and makes the exit code 1.

Needs no token unless the worker protects reads.`,
		Example: `  # Human-readable status
  workerctl status

  # The state only, for scripts (for example "WORKER_STATE_RUNNING")
  workerctl status -o json | jq -r .state

  # Stalled partitions, if any
  workerctl status -o json | jq '.stalled[]'

  # Every worker of the app
  workerctl status --all`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all {
				return c.statusAll(cmd)
			}
			return c.withClient(cmd, func(ctx context.Context, client *admin.Client) error {
				st, err := client.Status(ctx)
				if err != nil {
					return err
				}
				return c.printer().status(st)
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every worker of the app, found from the one at --addr")
	return cmd
}

// workerStatus is one worker's line of status --all.
type workerStatus struct {
	id, addr string
	status   *eddyv1.GetStatusResponse // nil when err
	err      error
}

// statusAll asks the worker at --addr for the app's workers, then each of
// them for its status.
func (c *cli) statusAll(cmd *cobra.Command) error {
	var rows []workerStatus
	err := c.withClient(cmd, func(ctx context.Context, client *admin.Client) error {
		resp, err := client.Workers(ctx)
		if err != nil {
			return err
		}
		for _, w := range resp.GetWorkers() {
			rows = append(rows, workerStatus{id: w.GetWorkerId(), addr: w.GetGrpcAddress()})
		}
		return nil
	})
	if err != nil {
		return err
	}
	failed := 0
	for i := range rows {
		r := &rows[i]
		r.err = c.withClientAt(cmd, r.addr, func(ctx context.Context, client *admin.Client) error {
			st, err := client.Status(ctx)
			r.status = st
			return err
		})
		if r.err != nil {
			failed++
		}
	}
	if err := c.printer().workers(rows); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d workers did not answer", failed, len(rows))
	}
	return nil
}

func (p *jsonPrinter) workers(rows []workerStatus) error {
	type row struct {
		WorkerID    string          `json:"worker_id"`
		GrpcAddress string          `json:"grpc_address"`
		Status      json.RawMessage `json:"status"`
		Error       string          `json:"error"`
	}
	out := struct {
		Workers []row `json:"workers"`
	}{Workers: []row{}}
	for _, r := range rows {
		x := row{WorkerID: r.id, GrpcAddress: r.addr, Status: json.RawMessage("null")}
		if r.status != nil {
			b, err := jsonOptions.Marshal(r.status)
			if err != nil {
				return fmt.Errorf("encode status as JSON: %w", err)
			}
			x.Status = b
		}
		if r.err != nil {
			x.Error = r.err.Error()
		}
		out.Workers = append(out.Workers, x)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(p.w, "%s\n", b)
	return err
}

func (p *tablePrinter) workers(rows []workerStatus) error {
	tw := newTabWriter(p.w)
	if len(rows) == 0 {
		fmt.Fprintln(tw, "Workers: none in the app's consumer group yet")
		return tw.Flush()
	}
	fmt.Fprintln(tw, "WORKER\tADDRESS\tSTATE\tPARTITIONS\tAGENTS\tRECOVERING\tSTALLED\tPROBLEMS")
	for _, r := range rows {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\t%s\tNOT ANSWERING\t-\t-\t-\t-\t%s\n", r.id, r.addr, oneLine(r.err.Error()))
			continue
		}
		st := r.status
		var agents []string
		for _, a := range st.GetAgents() {
			agents = append(agents, fmt.Sprintf("%s:%d", a.GetName(), a.GetInstances()))
		}
		problems := len(st.GetErrors()) + len(st.GetKafkaErrors()) + len(st.GetWarnings())
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\n", r.id, r.addr, stateName(st.GetState()), len(st.GetAssigned()),
			orDash(strings.Join(agents, ",")), len(st.GetRecovery()), len(st.GetStalled()), problems)
	}
	return tw.Flush()
}

// oneLine keeps the first line of s.
func oneLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}
