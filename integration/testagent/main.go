// Command testagent is the agent the integration tests run as real
// processes: it copies each event to an output topic with headers naming its
// source, and can be told to fail on purpose.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/eddy-streams/eddy/client/agent"
)

func main() {
	var (
		addr     = flag.String("addr", "127.0.0.1:6066", "worker gRPC address")
		name     = flag.String("name", "pass", "agent name")
		app      = flag.String("app", "", "the app file's app (default: $EDDY_APP)")
		out      = flag.String("out", "", "output topic (required)")
		instance = flag.String("instance", "", "instance id (default: chosen by the SDK)")
		poison   = flag.String("poison", "", "events with this value always ask for RETRY")
		panicOn  = flag.String("panic", "", "the handler panics on events with this value")
		delay    = flag.Duration("delay", 0, "time spent on each event")
		jitter   = flag.Duration("jitter", 0, "a further random time in [0, jitter) spent on each event, so that instances of a key-ordered agent finish out of offset order")
		credit   = flag.Int("credit", 1000, "credit window in events")
		token    = flag.String("token", "", "bearer token")
		cacert   = flag.String("cacert", "", "TLS: CA file of the worker's certificate")
		cert     = flag.String("cert", "", "TLS: client certificate file")
		key      = flag.String("key", "", "TLS: client key file")
		hangFile = flag.String("hang-file", "", "while this file exists, events are held without a result")
		discover = flag.Duration("discovery", 0, "how often to list the app's workers and connect to each (0: only --addr, the tests' default)")
		store    = flag.String("store", "", "table: every event sets its key's value in this table to the event's value")
		table    = flag.String("table", "", "table: events of key k0 set k0's value, others output k0's value read with Event.Get (\"k0=V\" or \"k0 absent\")")
	)
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "testagent: --out is required")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	handler := func(ctx context.Context, ev *agent.Event) error {
		if *poison != "" && string(ev.Value) == *poison {
			return agent.Retry(errors.New("poison event"))
		}
		if *panicOn != "" && string(ev.Value) == *panicOn {
			panic("testagent: --panic value")
		}
		if *delay > 0 {
			time.Sleep(*delay)
		}
		if *jitter > 0 {
			time.Sleep(rand.N(*jitter))
		}
		for *hangFile != "" && exists(*hangFile) {
			time.Sleep(20 * time.Millisecond)
		}
		value := ev.Value
		if *store != "" {
			ev.SetState(*store, ev.Value)
		}
		switch {
		case *table != "" && string(ev.Key) == "k0":
			ev.SetState(*table, ev.Value)
		case *table != "":
			v, found, err := ev.Get(ctx, *table, []byte("k0"))
			if err != nil {
				return agent.Retry(err)
			}
			value = []byte("k0 absent")
			if found {
				value = append([]byte("k0="), v...)
			}
		}
		ev.EmitRecord(agent.Record{
			Topic: *out,
			Key:   ev.Key,
			Value: value,
			Headers: []agent.Header{
				{Key: "src.partition", Value: []byte(strconv.Itoa(int(ev.Partition)))},
				{Key: "src.offset", Value: []byte(strconv.FormatInt(ev.Offset, 10))},
				{Key: "agent.pid", Value: []byte(strconv.Itoa(os.Getpid()))},
			},
		})
		return nil
	}
	opts := []agent.Option{agent.WithAddr(*addr), agent.WithLogger(log), agent.WithCredit(*credit, 8<<20), agent.WithDiscovery(*discover)}
	if *app != "" {
		opts = append(opts, agent.WithApp(*app))
	}
	if *token != "" {
		opts = append(opts, agent.WithToken(*token))
	}
	if *instance != "" {
		opts = append(opts, agent.WithInstanceID(*instance))
	}
	if *cacert != "" || *cert != "" {
		opts = append(opts, agent.WithTLSFiles(*cacert, *cert, *key))
	}
	a, err := agent.New(*name, handler, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testagent:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "testagent:", err)
		os.Exit(1)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
