package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/eddy-streams/eddy/client/admin"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

func newTablesCommand(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:         "tables",
		Annotations: access(accessRead),
		Short:       "List the app's tables and the partitions this worker holds",
		Long: `List every table declared in the worker's app: partitions, changelog
topic, standby replicas, window, then the partitions this worker owns
(active), those it keeps warm copies of for other workers (standby), and the
number of keys in its active partitions.

Needs no token unless the worker protects reads.`,
		Example: `  workerctl tables
  workerctl tables -o json | jq '.tables[] | {name, keys}'`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, func(ctx context.Context, client *admin.Client) error {
				resp, err := client.Tables().ListTables(ctx, &eddyv1.ListTablesRequest{})
				if err != nil {
					return fmt.Errorf("list tables: %w", err)
				}
				return c.printer().tables(resp)
			})
		},
	}
}

func newGetCommand(c *cli) *cobra.Command {
	var window string
	cmd := &cobra.Command{
		Use:               "get TABLE KEY",
		ValidArgsFunction: c.completeFirst(tableNames),
		Annotations:       access(accessRead),
		Short:             "Read one key of a table, from whichever worker owns it",
		Long: `Read the value of KEY in TABLE. Any worker answers: the one asked reads
the key's partition itself when it owns it, or forwards the read to the
owner. The answer includes the partition and the worker that served it.
A key that is not in the table is an error (exit code 1). The JSON output is
eddy.v1.GetResponse: key and value are base64, as protojson writes bytes.

A windowed table needs --window-start: the start of the window, as RFC 3339
(2026-11-27T13:05:00Z) or Unix milliseconds.`,
		Example: `  workerctl get counts kafka
  workerctl get counts kafka -o json | jq -r .value | base64 -d
  workerctl get per_minute kafka --window-start 2026-11-27T13:05:00Z`,
		Args: usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &eddyv1.GetRequest{Table: args[0], Key: []byte(args[1])}
			if window != "" {
				ws, err := parseWindowStart(window)
				if err != nil {
					return newUsageError(cmd, "invalid --window-start %q: %v", window, err)
				}
				req.WindowStart = timestamppb.New(ws)
			}
			return c.withClient(cmd, func(ctx context.Context, client *admin.Client) error {
				resp, err := client.Tables().Get(ctx, req)
				if err != nil {
					return fmt.Errorf("get %s %q: %w", args[0], args[1], err)
				}
				if resp.Key == nil {
					resp.Key = req.Key // a worker that predates the field
				}
				return c.printer().get(args[1], resp)
			})
		},
	}
	cmd.Flags().StringVar(&window, "window-start", "", "window start of a windowed table: RFC 3339 or Unix milliseconds")
	return cmd
}

// parseWindowStart reads RFC 3339 or Unix milliseconds.
func parseWindowStart(s string) (time.Time, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("want RFC 3339 (2026-11-27T13:05:00Z) or Unix milliseconds")
	}
	return t, nil
}

type scanFlags struct {
	prefix string
	limit  uint32
	all    bool
	token  string
}

func newScanCommand(c *cli) *cobra.Command {
	var f scanFlags
	cmd := &cobra.Command{
		Use:               "scan TABLE",
		ValidArgsFunction: c.completeFirst(tableNames),
		Annotations:       access(accessRead),
		Short:             "List the keys of a table, in key order, from any worker",
		Long: `List the keys and values of TABLE from every partition, in key order (a
key present in several partitions is listed once per partition). The worker
asked reads the partitions it owns and asks the owners of the others (the
output names the workers). Partitions still being restored are not read and
are named; a partition that has no owner during a rebalance makes the scan
fail with exit code 1: try again.

One page of at most --limit entries is printed, with the token of the next
page when there is more (--page-token continues); --all follows the pages to
the end.`,
		Example: `  workerctl scan counts --prefix ka
  workerctl scan counts --all -o json | jq -r '.entries[] | .key | @base64d'`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.limit > 10000 {
				return newUsageError(cmd, "invalid --limit %d: at most 10000", f.limit)
			}
			return c.withClient(cmd, func(ctx context.Context, client *admin.Client) error {
				req := &eddyv1.ScanRequest{Table: args[0], Prefix: []byte(f.prefix), Limit: f.limit, PageToken: f.token}
				var out *eddyv1.ScanResponse
				for {
					resp, err := client.Tables().Scan(ctx, req)
					if err != nil {
						return fmt.Errorf("scan %s: %w", args[0], err)
					}
					if out == nil {
						out = resp
					} else {
						out.Entries = append(out.Entries, resp.Entries...)
						out.NextPageToken = resp.NextPageToken
					}
					if !f.all || resp.NextPageToken == "" {
						break
					}
					req.PageToken = resp.NextPageToken
				}
				return c.printer().scan(args[0], out)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.prefix, "prefix", "", "only keys starting with this")
	fl.Uint32Var(&f.limit, "limit", 100, "entries per page (at most 10000)")
	fl.BoolVar(&f.all, "all", false, "follow the pages to the end")
	fl.StringVar(&f.token, "page-token", "", "continue from a page token printed by an earlier scan")
	return cmd
}

func (p *jsonPrinter) tables(resp *eddyv1.ListTablesResponse) error { return p.message(resp) }

func (p *jsonPrinter) get(_ string, resp *eddyv1.GetResponse) error { return p.message(resp) }

func (p *jsonPrinter) scan(_ string, resp *eddyv1.ScanResponse) error { return p.message(resp) }

func (p *tablePrinter) tables(resp *eddyv1.ListTablesResponse) error {
	tw := newTabWriter(p.w)
	if len(resp.GetTables()) == 0 {
		fmt.Fprintln(tw, "Tables: none")
		return tw.Flush()
	}
	fmt.Fprintln(tw, "TABLE\tPARTITIONS\tSTANDBYS\tWINDOW\tACTIVE\tSTANDBY\tKEYS\tCHANGELOG")
	for _, t := range resp.GetTables() {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%d\t%s\n", t.GetName(), t.GetPartitions(), t.GetStandbyReplicas(),
			windowText(t.GetWindow()), partitionList(t.GetActivePartitions()), partitionList(t.GetStandbyPartitions()),
			t.GetKeys(), t.GetChangelogTopic())
	}
	return tw.Flush()
}

func windowText(w *eddyv1.Window) string {
	if w == nil {
		return "-"
	}
	s := w.GetType() + " " + w.GetSize().AsDuration().String()
	if w.GetStep() != nil {
		s += " step " + w.GetStep().AsDuration().String()
	}
	return s
}

// partitionList formats partitions compactly: 0-3,6.
func partitionList(ps []int32) string {
	if len(ps) == 0 {
		return "-"
	}
	var b strings.Builder
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(ps[i])))
		if j > i {
			b.WriteString("-" + strconv.Itoa(int(ps[j])))
		}
		i = j + 1
	}
	return b.String()
}

func (p *tablePrinter) get(key string, resp *eddyv1.GetResponse) error {
	tw := newTabWriter(p.w)
	fmt.Fprintln(tw, "KEY\tVALUE\tPARTITION\tSERVED BY")
	fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", showBytes([]byte(key)), showBytes(resp.GetValue()), resp.GetPartition(), orDash(resp.GetServedBy()))
	return tw.Flush()
}

func (p *tablePrinter) scan(table string, resp *eddyv1.ScanResponse) error {
	tw := newTabWriter(p.w)
	windowed := slices.ContainsFunc(resp.GetEntries(), func(e *eddyv1.Entry) bool { return e.GetWindowStart() != nil })
	if windowed {
		fmt.Fprintln(tw, "KEY\tWINDOW START\tVALUE\tPARTITION")
	} else {
		fmt.Fprintln(tw, "KEY\tVALUE\tPARTITION")
	}
	for _, e := range resp.GetEntries() {
		if windowed {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", showBytes(e.GetKey()), e.GetWindowStart().AsTime().UTC().Format(time.RFC3339Nano),
				showBytes(e.GetValue()), e.GetPartition())
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\n", showBytes(e.GetKey()), showBytes(e.GetValue()), e.GetPartition())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(p.w, "%d entries of table %s from partitions %s, served by worker %s", len(resp.GetEntries()), table,
		partitionList(resp.GetPartitions()), orDash(resp.GetServedBy()))
	if f := resp.GetForwardedTo(); len(f) > 0 {
		fmt.Fprintf(p.w, " with %s", strings.Join(f, ", "))
	}
	if r := resp.GetRestoringPartitions(); len(r) > 0 {
		fmt.Fprintf(p.w, " (restoring, not read: %s)", partitionList(r))
	}
	fmt.Fprintln(p.w)
	if t := resp.GetNextPageToken(); t != "" {
		fmt.Fprintf(p.w, "more: --page-token %s (or --all)\n", t)
	}
	return nil
}

// showBytes prints text as it is and anything else (control characters,
// invalid UTF-8) Go-quoted.
func showBytes(b []byte) string {
	s := string(b)
	if utf8.ValidString(s) && strconv.CanBackquote(s) && !strings.ContainsAny(s, "`\t ") && s != "" {
		return s
	}
	return strconv.Quote(s)
}
