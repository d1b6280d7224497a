// Command wordcount is an example eddy agent process written in Go with
// the SDK in client/agent. It runs two agents of app.yaml:
//
//   - split reads lines of text from the lines topic and emits one record
//     per word to the words topic, keyed by the word (value "1"). Keying by
//     the word sends every occurrence of a word to the same partition of
//     words: a table's state lives with the partition of its key, so the
//     count of a word can only be kept where the word's events arrive.
//   - count reads words and keeps the count of each word in the counts
//     table (the decimal count as the value). The worker delivers each
//     event with the table's value for its key and writes the new value to
//     the table's changelog before the event counts as done; count also
//     emits "word → count" to the word-counts topic.
//
// Usage:
//
//	wordcount [--addr host:port[,host:port...]] [--app wordcount] [--token TOKEN]
//	          [--words words] [--table counts] [--out word-counts]
//
// --addr (any worker of the app: the agents connect to every one) defaults
// to $EDDY_ADDR, else 127.0.0.1:6066; split's source topic is the app file's
// (lines in app.yaml); --app (the app file's
// app, which a worker of another app refuses) to $EDDY_APP, else wordcount;
// --token to $EDDY_TOKEN. SIGINT or SIGTERM stops it gracefully; a second signal
// exits at once. See README.md.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"golang.org/x/sync/errgroup"

	"github.com/eddy-streams/eddy/client/agent"
)

// Exit codes.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitRejected = 3 // the worker does not know an agent or refused the token
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
	}()
	code := run(ctx, os.Args[1:], os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run is main without the process, for tests.
func run(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("wordcount", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", cmp.Or(getenv(agent.EnvAddr), agent.DefaultAddr), "worker gRPC address, host:port (env "+agent.EnvAddr+")")
	app := fs.String("app", cmp.Or(getenv(agent.EnvApp), "wordcount"), "the app file's app (env "+agent.EnvApp+")")
	token := fs.String("token", "", "bearer token, when the worker requires one (env "+agent.EnvToken+")")
	wc := WordCount{}
	fs.StringVar(&wc.Words, "words", "words", "topic split writes words to (count's source topic)")
	fs.StringVar(&wc.Table, "table", "counts", "table count keeps the counts in")
	fs.StringVar(&wc.Out, "out", "word-counts", "topic count emits word → count to")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wordcount: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	tok := cmp.Or(*token, getenv(agent.EnvToken))
	log := slog.New(slog.NewTextHandler(stderr, nil))
	opts := []agent.Option{agent.WithApp(*app), agent.WithAddr(*addr), agent.WithToken(tok), agent.WithLogger(log)}
	split, err := agent.New("split", wc.Split, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "wordcount: %v\n", err)
		return exitUsage
	}
	count, err := agent.New("count", wc.Count, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "wordcount: %v\n", err)
		return exitUsage
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return split.Run(gctx) })
	g.Go(func() error { return count.Run(gctx) })
	err = g.Wait()
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, agent.ErrUnknownAgent):
		fmt.Fprintf(stderr, "wordcount: %v\nDeclare the agents split and count in the worker's app file (see app.yaml).\n", err)
		return exitRejected
	case errors.Is(err, agent.ErrUnauthenticated):
		fmt.Fprintf(stderr, "wordcount: %v\nPass --token or set %s.\n", err, agent.EnvToken)
		return exitRejected
	default:
		fmt.Fprintf(stderr, "wordcount: %v\n", err)
		return exitError
	}
}

// WordCount holds the topic and table names of the two handlers.
type WordCount struct {
	Words string // split's output, count's source
	Table string // the counts table
	Out   string // count's output
}

// Words returns the words of a line, lower-cased: runs of letters, digits
// and underscores.
func Words(line string) []string {
	return strings.FieldsFunc(strings.ToLower(line), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_'
	})
}

// Split is the split agent: one line in, one (word, "1") record per word
// out, keyed by the word.
func (wc WordCount) Split(_ context.Context, ev *agent.Event) error {
	for _, w := range Words(string(ev.Value)) {
		ev.Emit(wc.Words, []byte(w), []byte("1"))
	}
	return nil
}

// Count is the count agent: it adds the event's value (1 when empty) to
// the count of the event's key in the table, and emits the new count. A
// count that does not parse is dead-lettered: retrying cannot fix it.
func (wc WordCount) Count(_ context.Context, ev *agent.Event) error {
	if len(ev.Key) == 0 {
		return agent.DeadLetter(errors.New("a word record needs the word as its key"))
	}
	add := int64(1)
	if len(ev.Value) > 0 {
		n, err := strconv.ParseInt(string(ev.Value), 10, 64)
		if err != nil {
			return agent.DeadLetter(fmt.Errorf("value %q is not a count: %w", ev.Value, err))
		}
		add = n
	}
	var count int64
	if v, ok := ev.State(wc.Table); ok {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return agent.DeadLetter(fmt.Errorf("table %s holds %q for %q, not a count: %w", wc.Table, v, ev.Key, err))
		}
		count = n
	}
	count += add
	v := []byte(strconv.FormatInt(count, 10))
	ev.SetState(wc.Table, v)
	ev.Emit(wc.Out, ev.Key, v)
	return nil
}
