package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/eddy-streams/eddy/client/agent"
)

// An agent that routes orders to a topic per region. Invalid orders go to
// the dead-letter topic; every other failure is retried by the worker.
func Example() {
	type order struct {
		ID     string `json:"id"`
		Region string `json:"region"`
	}
	route := func(ctx context.Context, ev *agent.Event) error {
		var o order
		if err := json.Unmarshal(ev.Value, &o); err != nil {
			return agent.DeadLetter(fmt.Errorf("invalid JSON: %w", err))
		}
		if o.Region != "eu" && o.Region != "us" {
			return agent.DeadLetter(fmt.Errorf("unknown region %q", o.Region))
		}
		ev.Emit("orders-"+o.Region, []byte(o.ID), ev.Value)
		return nil
	}

	a, err := agent.New("router", route,
		agent.WithApp("shop"),                    // the app file's app; default: $EDDY_APP
		agent.WithAddr("127.0.0.1:6066"),         // default: $EDDY_ADDR, else 127.0.0.1:6066
		agent.WithToken(os.Getenv("EDDY_TOKEN")), // the default, spelled out
		agent.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))),
	)
	if err != nil {
		log.Fatal(err)
	}

	// Signals belong to main: cancelling ctx stops the agent gracefully.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil {
		if errors.Is(err, agent.ErrUnknownAgent) {
			log.Fatalf("declare the agent in the app file: %v", err)
		}
		log.Fatal(err)
	}
}

// Handlers are plain functions: test them with an Event literal.
func ExampleEvent_Emitted() {
	handler := func(ctx context.Context, ev *agent.Event) error {
		ev.Emit("upper", ev.Key, []byte(fmt.Sprintf("%s!", ev.Value)))
		return nil
	}
	ev := &agent.Event{Topic: "words", Key: []byte("k"), Value: []byte("hi")}
	err := handler(context.Background(), ev)
	fmt.Println(agent.StatusOf(err))
	for _, r := range ev.Emitted() {
		fmt.Printf("%s %s %s\n", r.Topic, r.Key, r.Value)
	}
	// Output:
	// OK
	// upper k hi!
}
