package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/client/admin"
)

func newStatusCommand(c *cli) *cobra.Command {
	return &cobra.Command{
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

Needs no token unless the worker protects reads.`,
		Example: `  # Human-readable status
  workerctl status

  # The state only, for scripts (for example "WORKER_STATE_RUNNING")
  workerctl status -o json | jq -r .state

  # Stalled partitions, if any
  workerctl status -o json | jq '.stalled[]'`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, func(ctx context.Context, client *admin.Client) error {
				st, err := client.Status(ctx)
				if err != nil {
					return err
				}
				return c.printer().status(st)
			})
		},
	}
}
