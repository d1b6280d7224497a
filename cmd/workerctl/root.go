package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/client/admin"
)

const (
	defaultAddr    = "127.0.0.1:6066"
	defaultTimeout = 5 * time.Second
	envAddr        = "EDDY_ADDR"
	envToken       = "EDDY_TOKEN"
	envCACert      = "EDDY_CACERT"
	envCert        = "EDDY_CERT"
	envKey         = "EDDY_KEY"
)

// globalFlags are the flags every command accepts.
type globalFlags struct {
	addr    string        // --addr, else EDDY_ADDR, else defaultAddr
	token   string        // --token, else EDDY_TOKEN; empty sends none
	output  string        // -o/--output: "table" or "json"
	timeout time.Duration // --timeout: bound on each call to the worker
	cacert  string        // --cacert, else EDDY_CACERT: CA of the worker's certificate
	cert    string        // --cert, else EDDY_CERT: client certificate
	key     string        // --key, else EDDY_KEY: its key
	// --insecure-skip-tls-verify: TLS without verifying the worker
	insecureSkipVerify bool
}

// tls reports whether the flags ask for TLS.
func (f globalFlags) tls() bool {
	return f.cacert != "" || f.cert != "" || f.key != "" || f.insecureSkipVerify
}

// cli is what commands share: the global flags and the process environment
// they run in, injected so tests can run commands in-process.
type cli struct {
	flags  globalFlags
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	now    func() time.Time
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct {
	command string // command path, for the "--help" hint
	err     error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func newUsageError(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{command: cmd.CommandPath(), err: fmt.Errorf(format, args...)}
}

// usageArgs makes an argument validator's errors usage errors.
func usageArgs(validate cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := validate(cmd, args); err != nil {
			return &usageError{command: cmd.CommandPath(), err: err}
		}
		return nil
	}
}

const rootLong = `workerctl inspects and controls a running eddy worker through its gRPC
control plane.

Each command below is marked:
  [read-only]  reads the worker; needs the token only when the worker protects
               reads (auth.protect_reads in its app file)
  [mutating]   changes the worker or writes to Kafka; needs the worker's token
               once the worker has one configured
  [local]      does not contact the worker; needs no token
Pass the token with --token or EDDY_TOKEN. It is sent as "authorization: Bearer
<token>", in clear text, which is only safe on loopback, the worker's default
listen address.

TLS is on as soon as --cacert, --cert, --key or --insecure-skip-tls-verify
is given: the worker's certificate is verified against --cacert (else the
system roots), and --cert/--key are the client certificate a worker with
tls.client_ca_file requires.

Environment:
  EDDY_ADDR    worker gRPC address, used when --addr is not given
  EDDY_TOKEN   bearer token, used when --token is not given
  EDDY_CACERT  CA file, used when --cacert is not given
  EDDY_CERT    client certificate file, used when --cert is not given
  EDDY_KEY     client key file, used when --key is not given

Exit codes:
  0  success
  1  any other error (for example the worker refused the request)
  2  usage error: unknown command or flag, wrong arguments, invalid flag value
  3  the worker is unreachable at --addr
  4  authentication failed: the worker rejected the token, or needs one; or
     TLS failed: the worker's certificate did not verify, or the worker
     refused the client certificate (or needs one)`

const rootExample = `  # Status of the worker on the default address
  workerctl status

  # Status of a remote worker, as JSON for scripts
  EDDY_ADDR=10.0.0.7:6066 workerctl status -o json | jq -r .state

  # Pause one agent, then resume it
  export EDDY_TOKEN=...
  workerctl pause enricher
  workerctl resume enricher`

// newRootCommand builds workerctl's command tree. Its output goes to stdout
// and stderr and its environment is read through getenv.
func newRootCommand(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	c := &cli{stdout: stdout, stderr: stderr, getenv: getenv, now: time.Now}
	root := &cobra.Command{
		Use:           "workerctl",
		Short:         "Inspect and control a running eddy worker",
		Long:          rootLong,
		Example:       rootExample,
		SilenceErrors: true, // run prints errors once, with a hint
		SilenceUsage:  true, // a failed call is not a usage problem
		// cobra applies this default only in its own unknown-command error,
		// which the Args below replaces.
		SuggestionsMinimumDistance: 2,
		// Root is runnable so that unknown commands go through Args and
		// become usage errors instead of cobra's untyped error.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				return newUsageError(cmd, "unknown command %q (did you mean %s?)", args[0], strings.Join(s, " or "))
			}
			return newUsageError(cmd, "unknown command %q", args[0])
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return c.resolveFlags(cmd)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{command: cmd.CommandPath(), err: err}
	})

	f := root.PersistentFlags()
	f.StringVar(&c.flags.addr, "addr", defaultAddr, "worker gRPC address, host:port (env "+envAddr+")")
	f.StringVar(&c.flags.token, "token", "", "bearer token for mutating calls (env "+envToken+")")
	f.StringVarP(&c.flags.output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&c.flags.timeout, "timeout", defaultTimeout, "time limit for each call to the worker")
	f.StringVar(&c.flags.cacert, "cacert", "", "connect with TLS, verifying the worker against this PEM CA file (env "+envCACert+")")
	f.StringVar(&c.flags.cert, "cert", "", "connect with TLS, presenting this PEM client certificate (env "+envCert+")")
	f.StringVar(&c.flags.key, "key", "", "PEM key of --cert (env "+envKey+")")
	f.BoolVar(&c.flags.insecureSkipVerify, "insecure-skip-tls-verify", false, "connect with TLS without verifying the worker's certificate (tests only)")

	root.Version = cliVersion()
	root.SetVersionTemplate("workerctl {{.Version}}\n")
	root.AddCommand(
		newStatusCommand(c),
		newAgentsCommand(c),
		newStatsCommand(c),
		newTablesCommand(c),
		newGetCommand(c),
		newScanCommand(c),
		newTopCommand(c),
		newPauseCommand(c),
		newResumeCommand(c),
		newShutdownCommand(c),
		newSendCommand(c),
		newVersionCommand(c),
	)
	markAccess(root)
	return root
}

// Access marks, set on each command as its "access" annotation: what the
// root help says of it (and of the token it needs).
const (
	accessRead   = "read-only"
	accessMutate = "mutating"
	accessLocal  = "local"
)

// access returns the annotation for a command that has the given access.
func access(a string) map[string]string { return map[string]string{"access": a} }

// markAccess appends each command's access mark to its short help, so that
// the root help's command list shows it. cobra's own completion command does
// not contact the worker. A command without a mark is a bug that
// TestEveryCommandMarked catches.
func markAccess(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	for _, cmd := range root.Commands() {
		a := cmd.Annotations["access"]
		if cmd.Name() == "completion" || cmd.Name() == "help" {
			a = accessLocal
		}
		if a != "" {
			cmd.Short += " [" + a + "]"
		}
	}
}

// resolveFlags fills in defaults from the environment and validates the
// global flags. The token's environment default is applied here rather than
// as the flag default so that --help never prints it.
func (c *cli) resolveFlags(cmd *cobra.Command) error {
	if !cmd.Flags().Changed("addr") {
		if v := c.getenv(envAddr); v != "" {
			c.flags.addr = v
		}
	}
	if !cmd.Flags().Changed("token") {
		c.flags.token = c.getenv(envToken)
	}
	for _, f := range []struct {
		flag, env string
		v         *string
	}{{"cacert", envCACert, &c.flags.cacert}, {"cert", envCert, &c.flags.cert}, {"key", envKey, &c.flags.key}} {
		if !cmd.Flags().Changed(f.flag) {
			*f.v = c.getenv(f.env)
		}
	}
	switch {
	case (c.flags.cert == "") != (c.flags.key == ""):
		return newUsageError(cmd, "--cert and --key go together (or %s and %s): got --cert %q, --key %q", envCert, envKey, c.flags.cert, c.flags.key)
	case c.flags.insecureSkipVerify && c.flags.cacert != "":
		return newUsageError(cmd, "--insecure-skip-tls-verify and --cacert exclude each other: either verify the worker against the CA or not")
	}
	switch c.flags.output {
	case "table", "json":
	default:
		return newUsageError(cmd, "invalid --output %q: want table or json", c.flags.output)
	}
	if c.flags.timeout <= 0 {
		return newUsageError(cmd, "invalid --timeout %v: want a positive duration such as 5s", c.flags.timeout)
	}
	return nil
}

// withClient connects to the worker, runs call with a context bounded by
// --timeout, and closes the connection.
func (c *cli) withClient(cmd *cobra.Command, call func(context.Context, *admin.Client) error) error {
	return c.withClientAt(cmd, c.flags.addr, call)
}

// withClientAt is withClient for the worker at addr (another worker of the
// app, as ListWorkers names it).
func (c *cli) withClientAt(cmd *cobra.Command, addr string, call func(context.Context, *admin.Client) error) (err error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), c.flags.timeout)
	defer cancel()
	opts := []admin.Option{admin.WithToken(c.flags.token), admin.WithDialTimeout(c.flags.timeout)}
	if c.flags.tls() {
		opts = append(opts, admin.WithTLSFiles(c.flags.cacert, c.flags.cert, c.flags.key))
		if c.flags.insecureSkipVerify {
			opts = append(opts, admin.WithInsecureSkipVerify())
		}
	}
	client, err := admin.Dial(ctx, addr, opts...)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		// Dial reads only the TLS files: otherwise it fails only on a bad
		// address, token or file.
		return newUsageError(cmd, "%w", err)
	}
	defer func() {
		if cerr := client.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close connection: %w", cerr)
		}
	}()
	return call(ctx, client)
}

// printer returns the printer for the chosen --output.
func (c *cli) printer() printer {
	if c.flags.output == "json" {
		return &jsonPrinter{w: c.stdout}
	}
	return &tablePrinter{w: c.stdout, now: c.now}
}
