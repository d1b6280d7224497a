package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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
Ctrl-C) to quit. On a terminal the view is redrawn in place and fitted to the
terminal's size (80x24 is enough; partitions that do not fit are counted).
When standard output is not a terminal (a pipe, a file), top prints each
snapshot in full as plain text, one after the other, with no screen escapes.
With -o json it prints one JSON snapshot per line instead (for scripts;
Ctrl-C stops).

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
	outFd, tty := terminalFd(c.stdout)
	if f, ok := cmd.InOrStdin().(*os.File); ok && tty && term.IsTerminal(int(f.Fd())) && c.flags.output != "json" {
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

	header := fmt.Sprintf("eddy top: app %s, worker %s at %s, every %s, q quits", st.GetApp(), st.GetWorkerId(), c.flags.addr, interval)
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				if c.flags.output != "json" && tty {
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
		status := fmt.Sprintf("state %s, rebalances %d, dropped snapshots %d, %s",
			strings.TrimPrefix(resp.GetSnapshot().GetState().String(), "WORKER_STATE_"),
			resp.GetSnapshot().GetRebalances(), resp.GetDropped(), time.Now().Format("15:04:05"))
		var b strings.Builder
		if tty {
			width, height, err := term.GetSize(outFd)
			if err != nil || width <= 0 || height <= 0 {
				width, height = 80, 24
			}
			b.WriteString("\x1b[H\x1b[2J") // home, clear
			b.WriteString(fitScreen(header, status, resp.GetSnapshot(), width, height))
		} else {
			// Plain snapshots, one after the other, for a pipe or a file.
			fmt.Fprintf(&b, "%s\n%s\n\n", header, status)
			if err := writeSnapshot(&b, resp.GetSnapshot()); err != nil {
				return err
			}
			b.WriteString("\n")
		}
		if _, err := io.WriteString(out, b.String()); err != nil {
			return err
		}
	}
}

// terminalFd returns w's file descriptor and whether it is a terminal.
func terminalFd(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}

// fitScreen renders one screen of top within width columns and height
// lines: a compact partition table (workerctl stats has every column), lines
// cut at the width, and the partitions that do not fit counted on the last
// line.
func fitScreen(header, status string, s *eddyv1.Snapshot, width, height int) string {
	var lines []string
	lines = append(lines, header, status, "")
	if n := len(s.GetStalled()); n > 0 {
		lines = append(lines, fmt.Sprintf("!! STALLED (%d)", n))
		for i, st := range s.GetStalled() {
			if i == 3 && n > 4 {
				lines = append(lines, fmt.Sprintf("!! ... %d more", n-3))
				break
			}
			lines = append(lines, fmt.Sprintf("!! %s[%d] %s %s: %s", st.GetPartition().GetTopic(), st.GetPartition().GetPartition(),
				st.GetAgent(), orDash(st.GetInstanceId()), st.GetReason()))
		}
		lines = append(lines, "")
	}
	var agents strings.Builder
	tw := newTabWriter(&agents)
	fmt.Fprintln(tw, "AGENT\tSESSIONS\tPROCESSED\tIN-FLIGHT")
	for _, a := range s.GetAgents() {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", a.GetAgent(), a.GetSessions(), a.GetProcessed(), a.GetInFlight())
	}
	_ = tw.Flush()
	lines = append(lines, strings.Split(strings.TrimSuffix(agents.String(), "\n"), "\n")...)
	lines = append(lines, "")

	stalled := map[string]bool{}
	for _, st := range s.GetStalled() {
		stalled[st.GetPartition().GetTopic()+"/"+strconv.Itoa(int(st.GetPartition().GetPartition()))] = true
	}
	// On a short terminal the table's header and one line below it win
	// over the agents.
	lines = lines[:min(len(lines), max(height-2, 0))]
	parts := s.GetPartitions()
	room := height - len(lines) - 1 // the table's header
	shown := len(parts)
	if shown > room {
		shown = max(room-1, 0) // a line to count the rest
	}
	var table strings.Builder
	tw = newTabWriter(&table)
	fmt.Fprintln(tw, "PARTITION\tAGENT\tRATE/S\tLAG\tIN-FL\tPROCESSED\tDLQ\tP99 E2E\t")
	for _, ps := range parts[:shown] {
		mark := ""
		if stalled[ps.GetTopic()+"/"+strconv.Itoa(int(ps.GetPartition()))] {
			mark = "STALLED"
		}
		lag := "?"
		if ps.GetLag() >= 0 {
			lag = strconv.FormatInt(ps.GetLag(), 10)
		}
		fmt.Fprintf(tw, "%s[%d]\t%s\t%.0f\t%s\t%d\t%d\t%d\t%s\t%s\n", ps.GetTopic(), ps.GetPartition(), ps.GetAgent(),
			ps.GetEventsPerSecond(), lag, ps.GetInFlight(), ps.GetProcessed(), ps.GetDeadLettered(),
			shortDur(ps.GetEndToEndP99().AsDuration()), mark)
	}
	_ = tw.Flush()
	lines = append(lines, strings.Split(strings.TrimSuffix(table.String(), "\n"), "\n")...)
	switch {
	case len(parts) == 0:
		lines = append(lines, "(no partitions owned)")
	case shown < len(parts):
		lines = append(lines, fmt.Sprintf("... %d more partitions: a taller terminal, or workerctl stats", len(parts)-shown))
	}
	if len(lines) > height {
		lines = lines[:height]
	}
	for i, l := range lines {
		lines[i] = cut(strings.TrimRight(l, " "), width)
	}
	// No newline after the last line: it would scroll a full screen.
	return strings.Join(lines, "\n")
}

// cut shortens s to at most width runes.
func cut(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:max(width-1, 0)]) + "…"
}

// crlf turns \n into \r\n, which a terminal in raw mode needs.
type crlf struct{ w io.Writer }

func (c crlf) Write(p []byte) (int, error) {
	if _, err := io.WriteString(c.w, strings.ReplaceAll(string(p), "\n", "\r\n")); err != nil {
		return 0, err
	}
	return len(p), nil
}
