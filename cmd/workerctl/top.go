package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/eddy-streams/eddy/client/admin"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

func newTopCommand(c *cli) *cobra.Command {
	var interval time.Duration
	cmd := &cobra.Command{
		Use:         "top",
		Annotations: access(accessRead),
		Short:       "Live view of agents and partitions: rate, lag, in-flight, latency, stalls",
		Long: `Show a live view of the worker, refreshed from MonitorService.Watch: per agent
its sessions and events in flight; per partition the recent rate, consumer lag,
events in flight, counters, p99 latencies, and STALLED marks. Press q (or
Ctrl-C) to quit. Works on a plain terminal; with -o json it prints one JSON
snapshot per line instead (for scripts; Ctrl-C stops).

Needs no token unless the worker protects reads.`,
		Example: `  workerctl top
  workerctl top --interval 500ms`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval < 100*time.Millisecond {
				return newUsageError(cmd, "--interval %s: must be at least 100ms", interval)
			}
			return c.top(cmd, interval)
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "refresh interval (at least 100ms)")
	return cmd
}

// top streams snapshots until q, Ctrl-C or the worker goes away.
func (c *cli) top(cmd *cobra.Command, interval time.Duration) error {
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	client, err := admin.Dial(ctx, c.flags.addr, admin.WithToken(c.flags.token), admin.WithDialTimeout(c.flags.timeout))
	if err != nil {
		return newUsageError(cmd, "%w", err)
	}
	defer client.Close()
	sctx, scancel := context.WithTimeout(ctx, c.flags.timeout)
	st, err := client.Status(sctx)
	scancel()
	if err != nil {
		return err
	}
	stream, err := client.Monitor().Watch(ctx, &eddyv1.WatchRequest{Interval: durationpb.New(interval)})
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}

	out := c.stdout
	if f, ok := cmd.InOrStdin().(*os.File); ok && term.IsTerminal(int(f.Fd())) && c.flags.output != "json" {
		// Raw mode: single keys, no echo. Restore it whatever happens.
		if old, err := term.MakeRaw(int(f.Fd())); err == nil {
			defer term.Restore(int(f.Fd()), old)
			out = crlf{c.stdout}
		}
	}
	go func() {
		// q, Q or Ctrl-C (a byte in raw mode) quits.
		r := bufio.NewReader(cmd.InOrStdin())
		for {
			b, err := r.ReadByte()
			if err != nil || b == 'q' || b == 'Q' || b == 3 {
				if err == nil {
					cancel()
				}
				return
			}
		}
	}()

	header := fmt.Sprintf("eddy top — app %s, worker %s at %s — every %s — q quits", st.GetApp(), st.GetWorkerId(), c.flags.addr, interval)
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				if c.flags.output != "json" {
					fmt.Fprint(out, "\n")
				}
				return nil
			}
			return fmt.Errorf("watch: %w", err)
		}
		if c.flags.output == "json" {
			if err := c.printer().(*jsonPrinter).compact(resp); err != nil {
				return err
			}
			continue
		}
		var b strings.Builder
		b.WriteString("\x1b[H\x1b[2J") // home, clear
		fmt.Fprintf(&b, "%s\nstate %s, rebalances %d, dropped snapshots %d, %s\n\n", header,
			strings.TrimPrefix(resp.GetSnapshot().GetState().String(), "WORKER_STATE_"),
			resp.GetSnapshot().GetRebalances(), resp.GetDropped(), time.Now().Format("15:04:05"))
		if err := writeSnapshot(&b, resp.GetSnapshot()); err != nil {
			return err
		}
		if _, err := io.WriteString(out, b.String()); err != nil {
			return err
		}
	}
}

// crlf turns \n into \r\n, which a terminal in raw mode needs.
type crlf struct{ w io.Writer }

func (c crlf) Write(p []byte) (int, error) {
	if _, err := io.WriteString(c.w, strings.ReplaceAll(string(p), "\n", "\r\n")); err != nil {
		return 0, err
	}
	return len(p), nil
}
