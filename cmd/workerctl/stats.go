package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/client/admin"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

func newStatsCommand(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:         "stats",
		Annotations: access(accessRead),
		Short:       "Print one snapshot of the worker's metrics",
		Long: `Print one snapshot of the worker's metrics (MonitorService.GetSnapshot): per
partition the agent, records received, events delivered, processed (OK),
retried and dead-lettered, in flight, consumer lag, the committed offset,
p99 processing and end-to-end latency and the recent rate; per agent its
sessions; and any stalled partitions or instances.

For a live view use "workerctl top". Needs no token unless the worker protects reads.`,
		Example: `  workerctl stats
  workerctl stats -o json | jq '.snapshot.partitions[] | {topic, partition, lag}'`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, func(ctx context.Context, client *admin.Client) error {
				resp, err := client.Monitor().GetSnapshot(ctx, &eddyv1.GetSnapshotRequest{})
				if err != nil {
					return fmt.Errorf("get snapshot: %w", err)
				}
				return c.printer().stats(resp)
			})
		},
	}
}

func (p *jsonPrinter) stats(resp *eddyv1.GetSnapshotResponse) error { return p.message(resp) }

func (p *tablePrinter) stats(resp *eddyv1.GetSnapshotResponse) error {
	return writeSnapshot(p.w, resp.GetSnapshot())
}

// writeSnapshot renders a snapshot as tables; top and stats share it.
func writeSnapshot(w io.Writer, s *eddyv1.Snapshot) error {
	tw := newTabWriter(w)
	if n := len(s.GetStalled()); n > 0 {
		fmt.Fprintf(tw, "!! STALLED (%d)\n", n)
		for _, st := range s.GetStalled() {
			who := st.GetInstanceId()
			if who == "" {
				who = "-"
			}
			fmt.Fprintf(tw, "!! %s[%d]\t%s\t%s\t%s\n", st.GetPartition().GetTopic(), st.GetPartition().GetPartition(),
				st.GetAgent(), who, st.GetReason())
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintln(tw, "AGENT\tSESSIONS\tPROCESSED\tIN-FLIGHT\tSTALE")
	for _, a := range s.GetAgents() {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", a.GetAgent(), a.GetSessions(), a.GetProcessed(), a.GetInFlight(), a.GetStaleDropped())
	}
	fmt.Fprintln(tw)
	stalled := map[string]bool{}
	for _, st := range s.GetStalled() {
		stalled[st.GetPartition().GetTopic()+"/"+strconv.Itoa(int(st.GetPartition().GetPartition()))] = true
	}
	fmt.Fprintln(tw, "PARTITION\tAGENT\tRATE/S\tLAG\tIN-FLIGHT\tRECEIVED\tPROCESSED\tRETRIED\tDLQ\tCOMMITTED\tP99 PROC\tP99 E2E\t")
	for _, ps := range s.GetPartitions() {
		mark := ""
		if stalled[ps.GetTopic()+"/"+strconv.Itoa(int(ps.GetPartition()))] {
			mark = "STALLED"
		}
		lag := "?"
		if ps.GetLag() >= 0 {
			lag = strconv.FormatInt(ps.GetLag(), 10)
		}
		fmt.Fprintf(tw, "%s[%d]\t%s\t%.0f\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n",
			ps.GetTopic(), ps.GetPartition(), ps.GetAgent(), ps.GetEventsPerSecond(), lag, ps.GetInFlight(),
			ps.GetReceived(), ps.GetProcessed(), ps.GetRetried(), ps.GetDeadLettered(), ps.GetCommitted(),
			shortDur(ps.GetProcessingP99().AsDuration()), shortDur(ps.GetEndToEndP99().AsDuration()), mark)
	}
	if len(s.GetPartitions()) == 0 {
		fmt.Fprintln(tw, "(no partitions owned)")
	}
	return tw.Flush()
}

func shortDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
	return d.Round(10 * time.Millisecond).String()
}
