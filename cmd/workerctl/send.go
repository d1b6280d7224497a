package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/client/admin"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

type sendFlags struct {
	key       string
	partition int32
	headers   []string
}

func newSendCommand(c *cli) *cobra.Command {
	var f sendFlags
	cmd := &cobra.Command{
		Use:               "send TOPIC VALUE",
		ValidArgsFunction: c.completeFirst(topicNames),
		Annotations:       access(accessMutate),
		Short:             "Write one record to a topic of the app, through the worker",
		Long: `Write one record with VALUE ("-" reads the value from standard input) to
TOPIC, one of the topics declared in the worker's app file, through the
worker's producer (acks=all, idempotent) — the way to feed an agent by hand,
like "faust send". It returns once Kafka has acknowledged the record and
prints its partition and offset.

Without --partition the partition is chosen from --key (murmur2, as the Java
client does), or at random for a record without a key.

Needs the worker's token when one is configured (--token or EDDY_TOKEN).`,
		Example: `  workerctl send lines "the cat sat on the mat"
  workerctl send orders --key o-17 --header source=ops '{"amount": 12}'
  cat order.json | workerctl send orders --key o-18 -`,
		Args: usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &eddyv1.SendRequest{Topic: args[0], Key: []byte(f.key), Value: []byte(args[1])}
			if args[1] == "-" {
				v, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 4<<20))
				if err != nil {
					return fmt.Errorf("read the value from standard input: %w", err)
				}
				req.Value = v
			}
			if cmd.Flags().Changed("partition") {
				if f.partition < 0 {
					return newUsageError(cmd, "invalid --partition %d: partitions count from 0", f.partition)
				}
				req.Partition = &f.partition
			}
			for _, h := range f.headers {
				k, v, ok := strings.Cut(h, "=")
				if !ok || k == "" {
					return newUsageError(cmd, "invalid --header %q: want NAME=VALUE", h)
				}
				req.Headers = append(req.Headers, &eddyv1.Header{Key: k, Value: []byte(v)})
			}
			return c.withClient(cmd, func(ctx context.Context, client *admin.Client) error {
				resp, err := client.Topics().Send(ctx, req)
				if err != nil {
					return fmt.Errorf("send to %s: %w", args[0], err)
				}
				return c.printer().send(args[0], resp)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.key, "key", "", "record key (default: none)")
	fl.Int32Var(&f.partition, "partition", 0, "destination partition (default: from the key)")
	fl.StringArrayVar(&f.headers, "header", nil, "record header NAME=VALUE (repeatable)")
	return cmd
}

func (p *jsonPrinter) send(_ string, resp *eddyv1.SendResponse) error { return p.message(resp) }

func (p *tablePrinter) send(topic string, resp *eddyv1.SendResponse) error {
	_, err := fmt.Fprintf(p.w, "Sent to %s[%d] at offset %d.\n", topic, resp.GetPartition(), resp.GetOffset())
	return err
}
