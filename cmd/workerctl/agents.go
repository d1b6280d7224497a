package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/client/admin"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

func newAgentsCommand(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:         "agents",
		Annotations: access(accessRead),
		Short:       "Show the agents, their connected instances and partitions",
		Long: `Show every agent declared in the worker's app: source topics, ordering,
tables, whether it is paused, its connected instances, events in flight and
lag; then one row per connected instance with its instance id, session,
remote address, partitions, events in flight, unused credit and connection
age.

The table output leads with problems: partitions of an agent with no
connected instance are not being processed (the worker pauses them in Kafka
until an instance connects), so they are listed first, loudly. The JSON
output is the eddy.v1.ListAgentsResponse message in protojson form with
snake_case field names and every field present, for scripts.

Needs no token unless the worker protects reads.`,
		Example: `  # Agents and their instances
  workerctl agents

  # Partitions waiting for an instance, for scripts
  workerctl agents -o json | jq -r '.agents[] | select(.unassigned | length > 0) | .name'`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, func(ctx context.Context, client *admin.Client) error {
				resp, err := client.Agents().ListAgents(ctx, &eddyv1.ListAgentsRequest{})
				if err != nil {
					return fmt.Errorf("list agents: %w", err)
				}
				return c.printer().agents(resp)
			})
		},
	}
}

func (p *jsonPrinter) agents(resp *eddyv1.ListAgentsResponse) error { return p.message(resp) }

func (p *tablePrinter) agents(resp *eddyv1.ListAgentsResponse) error {
	agents := resp.GetAgents()
	tw := newTabWriter(p.w)
	if len(agents) == 0 {
		fmt.Fprintln(tw, "Agents: none")
		return tw.Flush()
	}

	// Unassigned partitions first: nothing processes them.
	var unassigned int
	for _, a := range agents {
		unassigned += len(a.GetUnassigned())
	}
	if unassigned > 0 {
		fmt.Fprintf(tw, "!! UNASSIGNED (%d): no instance connected, these partitions are paused\n", unassigned)
		fmt.Fprintln(tw, "AGENT\tPARTITIONS")
		for _, a := range agents {
			if len(a.GetUnassigned()) > 0 {
				fmt.Fprintf(tw, "%s\t%s\n", a.GetName(), compactPartitions(a.GetUnassigned()))
			}
		}
		fmt.Fprintln(tw)
	}

	fmt.Fprintln(tw, "NAME\tTOPICS\tORDERING\tTABLES\tPAUSED\tINSTANCES\tIN-FLIGHT\tLAG")
	var instances int
	for _, a := range agents {
		instances += len(a.GetInstances())
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", a.GetName(), commaList(a.GetTopics()), orDash(a.GetOrdering()),
			commaList(a.GetTables()), yesNo(a.GetPaused()), len(a.GetInstances()), a.GetInFlight(), a.GetLag())
	}

	if instances > 0 {
		fmt.Fprintln(tw, "\nINSTANCES")
		fmt.Fprintln(tw, "AGENT\tINSTANCE\tSESSION\tPEER\tPARTITIONS\tIN-FLIGHT\tCREDIT\tCONNECTED")
		for _, a := range agents {
			for _, in := range a.GetInstances() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", a.GetName(), orDash(in.GetInstanceId()),
					orDash(in.GetSessionId()), orDash(in.GetPeer()), compactPartitions(in.GetPartitions()),
					in.GetInFlight(), strconv.FormatInt(in.GetCreditEvents(), 10), p.ago(in.GetConnectedAt()))
			}
		}
	}
	return tw.Flush()
}

// commaList joins names with commas; "-" for none.
func commaList(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}
