package main

import (
	"context"
	"strings"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/client/admin"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// completeFirst returns a ValidArgsFunction that offers, for a command's
// first argument, the names list reads from the worker at --addr (shell
// completion: "workerctl completion bash"). Nothing is offered when the
// worker does not answer; the reason goes to cobra's completion debug log.
func (c *cli) completeFirst(list func(context.Context, *admin.Client) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		// Completion skips PersistentPreRunE: apply EDDY_ADDR and EDDY_TOKEN here.
		if err := c.resolveFlags(cmd); err != nil {
			cobra.CompDebugln(err.Error(), true)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		err := c.withClient(cmd, func(ctx context.Context, client *admin.Client) error {
			var err error
			names, err = list(ctx, client)
			return err
		})
		if err != nil {
			cobra.CompDebugln("workerctl: "+err.Error(), true)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, n := range names {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func tableNames(ctx context.Context, client *admin.Client) ([]string, error) {
	resp, err := client.Tables().ListTables(ctx, &eddyv1.ListTablesRequest{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range resp.GetTables() {
		names = append(names, t.GetName())
	}
	return names, nil
}

func agentNames(ctx context.Context, client *admin.Client) ([]string, error) {
	resp, err := client.Agents().ListAgents(ctx, &eddyv1.ListAgentsRequest{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, a := range resp.GetAgents() {
		names = append(names, a.GetName())
	}
	return names, nil
}

func topicNames(ctx context.Context, client *admin.Client) ([]string, error) {
	resp, err := client.Topics().ListTopics(ctx, &eddyv1.ListTopicsRequest{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range resp.GetTopics() {
		names = append(names, t.GetName())
	}
	return names, nil
}
