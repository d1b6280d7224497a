// Command worker runs one Eddy worker: it consumes the app's topics through
// the consumer group, feeds remote agents, keeps tables, and serves the
// control plane. Every worker of an app runs the same app file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/eddy-streams/eddy/daemon"
	"github.com/eddy-streams/eddy/worker/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // the worker failed or did not stop within shutdown_timeout
	exitUsage  = 2 // bad flags or a bad app file
	exitSignal = 130
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr, os.Getenv))
}

func run(args []string, stderr io.Writer, getenv func(string) string) int {
	cfg, opts, err := parseConfig(args, stderr, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return exitUsage
	}
	log := newLogger(stderr, cfg.Log)
	log = log.With("app", cfg.App)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal starts a graceful shutdown, a second one
		// exits at once.
		<-ctx.Done()
		stop()
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
		s := <-again
		log.Warn("second signal: exiting now, without finishing shutdown", "signal", s.String())
		os.Exit(exitSignal)
	}()

	w := daemon.New(cfg, log, opts)
	if err := w.Run(ctx); err != nil {
		log.Error("worker stopped with an error", "err", err)
		return exitFailed
	}
	log.Info("worker stopped cleanly")
	return exitOK
}

// parseConfig reads flags, the app file and EDDY_* variables, in increasing
// order of precedence: file < environment < flags.
func parseConfig(args []string, stderr io.Writer, getenv func(string) string) (*config.Config, daemon.Options, error) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		file     = fs.String("c", "", "app file (YAML); also --config")
		dev      = fs.Bool("dev", false, `use the embedded in-memory dev broker (brokers: embedded); keeps nothing`)
		addrFile = fs.String("addr-file", "", "write the bound gRPC and HTTP addresses as JSON to this file")
		showVer  = fs.Bool("version", false, "print the version and exit")
	)
	fs.StringVar(file, "config", "", "app file (YAML)")
	overrides := map[string]*string{}
	for _, f := range []struct{ flag, field, usage string }{
		{"app", "app", "app name (consumer group id)"},
		{"worker-id", "worker_id", "worker id (default <hostname>-<pid>)"},
		{"brokers", "brokers", `Kafka bootstrap servers, or "embedded"`},
		{"data-dir", "data_dir", "directory of the local table stores"},
		{"grpc", "listen.grpc", "gRPC listen address"},
		{"http", "listen.http", "HTTP listen address (/metrics, /healthz, /readyz)"},
		{"advertise", "listen.advertise", "gRPC host:port other workers dial (required with a wildcard --grpc; port 0: the bound port)"},
		{"shutdown-timeout", "shutdown_timeout", "graceful shutdown deadline, e.g. 30s"},
		{"log-level", "log.level", "debug, info, warn or error"},
		{"log-format", "log.format", "text or json"},
	} {
		overrides[f.field] = fs.String(f.flag, "", f.usage+" (overrides the app file)")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: worker -c APP_FILE [flags]\n\n"+
			"Runs one Eddy worker. Precedence: flags > EDDY_* environment > app file > defaults.\n"+
			"The token is read from auth.token or EDDY_TOKEN (not a flag, so it stays out of ps).\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\nEnvironment:\n")
		for _, e := range config.EnvVars {
			fmt.Fprintf(stderr, "  %-28s %s\n", e.Name, e.Field)
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, daemon.Options{}, err
	}
	opts := daemon.Options{Version: version, AddrFile: *addrFile}
	if *showVer {
		fmt.Fprintln(stderr, version)
		return nil, opts, flag.ErrHelp
	}
	if fs.NArg() > 0 {
		return nil, opts, fmt.Errorf("unexpected argument %q (the app file goes after -c)", fs.Arg(0))
	}
	if *file == "" {
		return nil, opts, errors.New("no app file: pass -c APP_FILE (see -h)")
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return nil, opts, err
	}
	if err := cfg.ApplyEnv(getenv); err != nil {
		return nil, opts, err
	}
	for field, v := range overrides {
		if *v != "" {
			if err := cfg.Set(field, *v); err != nil {
				return nil, opts, fmt.Errorf("flag: %w", err)
			}
		}
	}
	if *dev {
		cfg.Brokers = config.EmbeddedBrokers
	}
	if err := cfg.Validate(); err != nil {
		return nil, opts, config.InFile(*file, err)
	}
	host, _ := os.Hostname()
	if err := cfg.ResolveWorkerID(host, os.Getpid()); err != nil {
		return nil, opts, err
	}
	return cfg, opts, nil
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	o := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}
