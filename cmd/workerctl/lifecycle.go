package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/client/admin"
)

// agentArg returns the optional AGENT argument; empty means every agent.
func agentArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func newPauseCommand(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:               "pause [AGENT]",
		ValidArgsFunction: c.completeFirst(agentNames),
		Annotations:       access(accessMutate),
		Short:             "Pause event delivery to one agent or to all",
		Long: `Pause event delivery to AGENT, or to every agent when AGENT is omitted.

Consumption of the affected partitions is paused in Kafka: nothing is skipped,
and delivery continues from where it stopped after "workerctl resume". Pausing
every agent moves the worker to the PAUSED state.

Needs the worker's token when one is configured (--token or EDDY_TOKEN).`,
		Example: `  # Pause the enricher agent
  workerctl pause enricher

  # Pause every agent
  workerctl pause`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			agent := agentArg(args)
			return c.withClient(cmd, func(ctx context.Context, client *admin.Client) error {
				resp, err := client.Pause(ctx, agent)
				if err != nil {
					return err
				}
				return c.printer().pause(agent, resp)
			})
		},
	}
}

func newResumeCommand(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:               "resume [AGENT]",
		ValidArgsFunction: c.completeFirst(agentNames),
		Annotations:       access(accessMutate),
		Short:             "Resume event delivery to one agent or to all",
		Long: `Resume event delivery to AGENT, or to every agent when AGENT is omitted,
undoing "workerctl pause".

Needs the worker's token when one is configured (--token or EDDY_TOKEN).`,
		Example: `  # Resume the enricher agent
  workerctl resume enricher

  # Resume every agent
  workerctl resume`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			agent := agentArg(args)
			return c.withClient(cmd, func(ctx context.Context, client *admin.Client) error {
				resp, err := client.Resume(ctx, agent)
				if err != nil {
					return err
				}
				return c.printer().resume(agent, resp)
			})
		},
	}
}

func newShutdownCommand(c *cli) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:         "shutdown [--reason TEXT]",
		Annotations: access(accessMutate),
		Short:       "Shut the worker down gracefully",
		Long: `Ask the worker to shut down gracefully. The command returns as soon as the
worker has accepted; the worker then stops within its shutdown deadline, which
is printed. Its partitions move to the app's other workers.

Needs the worker's token when one is configured (--token or EDDY_TOKEN).`,
		Example: `  # Shut down, recording why in the worker's log
  workerctl shutdown --reason "moving to a bigger host"`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, func(ctx context.Context, client *admin.Client) error {
				resp, err := client.Shutdown(ctx, reason)
				if err != nil {
					return err
				}
				return c.printer().shutdown(resp)
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the worker is shut down; logged by the worker")
	return cmd
}
