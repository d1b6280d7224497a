// Command orders feeds and reads the router example's topics directly in
// Kafka, with confluent-kafka-go, independently of eddy: it is how the demo
// (and its tests) put orders in and check what came out.
//
//	orders produce --brokers B [--topic orders] [-n 20]
//	orders consume --brokers B --topics orders-eu,orders-us,demo-router-dlq [-n N] [--timeout 20s]
//
// produce writes n deterministic sample orders, keyed by order id, waiting
// for every delivery report; every tenth order, from the seventh on, has the
// region "mars", which the router dead-letters.
//
// consume reads the topics from the beginning, in a consumer group of its own
// with a random id (so it never disturbs, or is disturbed by, another group),
// and prints one line per record: "topic key value". It stops after n records
// (exit 0) or at the timeout (exit 0 if n is 0, else 1: fewer records than
// expected). --brokers defaults to $EDDY_BROKERS, else localhost:9092.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2

	envBrokers     = "EDDY_BROKERS"
	defaultBrokers = "localhost:9092"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

const usage = `usage:
  orders produce --brokers B [--topic orders] [-n 20]
  orders consume --brokers B --topics T1,T2,... [-n N] [--timeout 20s]`

// run is main without the process, for tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return exitUsage
	}
	fs := flag.NewFlagSet("orders "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", cmp.Or(getenv(envBrokers), defaultBrokers), "Kafka bootstrap servers (env "+envBrokers+")")
	var err error
	switch args[0] {
	case "produce":
		topic := fs.String("topic", "orders", "topic to produce the orders to")
		n := fs.Int("n", 20, "number of orders")
		if code, ok := parse(fs, args[1:], stderr); !ok {
			return code
		}
		if *n < 0 {
			fmt.Fprintf(stderr, "orders produce: -n %d is negative\n", *n)
			return exitUsage
		}
		err = produce(ctx, *brokers, *topic, *n, stdout)
	case "consume":
		topics := fs.String("topics", "", "comma-separated topics to read (required)")
		n := fs.Int("n", 0, "stop after this many records; 0: read until the timeout")
		timeout := fs.Duration("timeout", 20*time.Second, "give up after this long")
		if code, ok := parse(fs, args[1:], stderr); !ok {
			return code
		}
		list := splitList(*topics)
		if len(list) == 0 || *n < 0 || *timeout <= 0 {
			fmt.Fprintln(stderr, "orders consume: --topics is required, -n must not be negative and --timeout must be positive")
			return exitUsage
		}
		err = consume(ctx, *brokers, list, *n, *timeout, stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stderr, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "orders: unknown command %q\n%s\n", args[0], usage)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "orders %s: %v\n", args[0], err)
		return exitError
	}
	return exitOK
}

func parse(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return exitUsage, false
	}
	return 0, true
}

func splitList(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// Order is the JSON value of a record on the orders topic.
type Order struct {
	ID     string  `json:"id"`
	Region string  `json:"region"`
	Amount float64 `json:"amount"`
}

// sampleOrder is the i-th (from 1) sample order: regions alternate eu and
// us, except every tenth order from the seventh on, which is for "mars".
func sampleOrder(i int) Order {
	region := []string{"eu", "us"}[i%2]
	if i%10 == 7 {
		region = "mars"
	}
	return Order{ID: fmt.Sprintf("order-%03d", i), Region: region, Amount: float64(i)*2.5 + 10}
}

func produce(ctx context.Context, brokers, topic string, n int, stdout io.Writer) error {
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":  brokers,
		"client.id":          "eddy-example-orders",
		"acks":               "all",
		"enable.idempotence": true,
		"log_level":          4, // librdkafka warnings and errors only
	})
	if err != nil {
		return fmt.Errorf("create producer: %w", err)
	}
	defer p.Close()

	reports := make(chan kafka.Event, n)
	mars := 0
	for i := 1; i <= n; i++ {
		o := sampleOrder(i)
		if o.Region == "mars" {
			mars++
		}
		value, err := json.Marshal(o)
		if err != nil {
			return err
		}
		err = p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Key:            []byte(o.ID),
			Value:          value,
		}, reports)
		if err != nil {
			return fmt.Errorf("produce order %s: %w", o.ID, err)
		}
	}
	// Every record gets exactly one delivery report; wait for all of them.
	var errs []error
	for range n {
		select {
		case e := <-reports:
			if m, ok := e.(*kafka.Message); ok && m.TopicPartition.Error != nil {
				errs = append(errs, fmt.Errorf("order %s: %w", m.Key, m.TopicPartition.Error))
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delivery to %s failed: %w", topic, err)
	}
	_, err = fmt.Fprintf(stdout, "produced %d orders to %s (%d for region mars, which the router dead-letters)\n", n, topic, mars)
	return err
}

func consume(ctx context.Context, brokers string, topics []string, n int, timeout time.Duration, stdout io.Writer) (err error) {
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":  brokers,
		"group.id":           "eddy-example-orders-" + randomHex(4),
		"auto.offset.reset":  "earliest",
		"enable.auto.commit": false, // read-only: the group is thrown away
		"log_level":          4,     // librdkafka warnings and errors only
	})
	if err != nil {
		return fmt.Errorf("create consumer: %w", err)
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	if err := c.SubscribeTopics(topics, nil); err != nil {
		return fmt.Errorf("subscribe to %s: %w", strings.Join(topics, ","), err)
	}
	deadline := time.Now().Add(timeout)
	got := 0
	for n == 0 || got < n {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		m, err := c.ReadMessage(min(left, 200*time.Millisecond))
		if err != nil {
			var kerr kafka.Error
			if errors.As(err, &kerr) && kerr.IsFatal() {
				return fmt.Errorf("read: %w", err)
			}
			// Timeouts, and transient errors such as a topic that does not
			// exist yet: keep reading until the deadline.
			continue
		}
		got++
		if _, err := fmt.Fprintf(stdout, "%s %s %s\n", *m.TopicPartition.Topic, m.Key, m.Value); err != nil {
			return err
		}
	}
	if n > 0 && got < n {
		return fmt.Errorf("read %d of %d records from %s within %v", got, n, strings.Join(topics, ","), timeout)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on supported platforms
	return hex.EncodeToString(b)
}
