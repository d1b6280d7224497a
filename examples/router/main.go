// Command router is an example eddy agent written in Go with the SDK in
// client/agent. It reads JSON orders such as
//
//	{"id": "order-001", "region": "eu", "amount": 12.5}
//
// from the agent's source topic (orders, in examples/demo/app.yaml) and
// produces each one, unchanged, to orders-<region>, keyed by the order id.
// An order that is not valid JSON, has no id or has a region other than eu
// and us is dead-lettered with the reason; the worker writes it to the
// agent's dead-letter topic (<app>-router-dlq).
//
// Usage:
//
//	router [--addr host:port] [--app demo] [--token TOKEN] [--name router]
//
// --addr defaults to $EDDY_ADDR, else 127.0.0.1:6066; --app (the app file's
// app, which a worker of another app refuses) to $EDDY_APP, else demo;
// --token to $EDDY_TOKEN. SIGINT or SIGTERM stops it gracefully: events in progress
// finish and their results are sent; a second signal exits at once. See
// README.md for the whole demo.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/eddy-streams/eddy/client/agent"
)

// Exit codes.
const (
	exitOK       = 0
	exitError    = 1 // the worker rejected the agent, or another error
	exitUsage    = 2 // bad flags
	exitRejected = 3 // the worker does not know the agent or refused the token
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default handling so that a
		// second one ends the process at once.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run is main without the process, for tests.
func run(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("router", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", cmp.Or(getenv(agent.EnvAddr), agent.DefaultAddr), "worker gRPC address, host:port (env "+agent.EnvAddr+")")
	token := fs.String("token", "", "bearer token, when the worker requires one (env "+agent.EnvToken+")")
	name := fs.String("name", "router", "agent name, as declared in the app file")
	app := fs.String("app", cmp.Or(getenv(agent.EnvApp), "demo"), "the app file's app (env "+agent.EnvApp+")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "router: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	// The environment default is applied here, not as the flag default, so
	// that -help never prints the token.
	tok := *token
	if tok == "" {
		tok = getenv(agent.EnvToken)
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	a, err := agent.New(*name, route,
		agent.WithApp(*app),
		agent.WithAddr(*addr),
		agent.WithToken(tok),
		agent.WithLogger(log),
	)
	if err != nil {
		fmt.Fprintf(stderr, "router: %v\n", err)
		return exitUsage
	}
	err = a.Run(ctx)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, agent.ErrUnknownAgent):
		fmt.Fprintf(stderr, "router: %v\nIs an agent named %q declared in the worker's app file? Set the name with --name.\n", err, *name)
		return exitRejected
	case errors.Is(err, agent.ErrUnauthenticated):
		fmt.Fprintf(stderr, "router: %v\nPass --token or set %s.\n", err, agent.EnvToken)
		return exitRejected
	default:
		fmt.Fprintf(stderr, "router: %v\n", err)
		return exitError
	}
}

// Order is an order as found on the source topic. Only ID and Region are
// needed for routing; the record is passed on unchanged.
type Order struct {
	ID     string  `json:"id"`
	Region string  `json:"region"`
	Amount float64 `json:"amount"`
}

// regions are the regions with a topic of their own, orders-<region>.
var regions = map[string]bool{"eu": true, "us": true}

// route is the agent's handler: one order in, one order out, or a dead
// letter saying what is wrong with it. It keeps no state and calls nothing,
// so a redelivered order is simply routed again.
func route(_ context.Context, ev *agent.Event) error {
	var o Order
	if err := json.Unmarshal(ev.Value, &o); err != nil {
		return agent.DeadLetter(fmt.Errorf("invalid order JSON: %w", err))
	}
	if o.ID == "" {
		return agent.DeadLetter(errors.New(`invalid order: no "id"`))
	}
	if !regions[o.Region] {
		return agent.DeadLetter(fmt.Errorf("order %s: unknown region %q, want eu or us", o.ID, o.Region))
	}
	ev.EmitRecord(agent.Record{
		Topic:   "orders-" + o.Region,
		Key:     []byte(o.ID),
		Value:   ev.Value,
		Headers: ev.Headers,
	})
	return nil
}
