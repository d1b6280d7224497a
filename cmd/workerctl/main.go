// Command workerctl inspects and controls a running eddy worker through its
// gRPC control plane. See docs/workerctl.md or run "workerctl --help".
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/eddy-streams/eddy/client/admin"
)

// Exit codes. They are part of the CLI's interface: scripts test them, so
// they are listed in the root --help and in docs/workerctl.md.
const (
	exitOK          = 0 // success
	exitError       = 1 // any other error
	exitUsage       = 2 // unknown command or flag, wrong arguments, invalid flag value
	exitUnreachable = 3 // the worker is not answering at --addr
	exitAuth        = 4 // the worker rejected the token or the client certificate, or the TLS handshake failed
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// Once the first signal has cancelled ctx, restore the default
		// handling so a second signal ends the process at once.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run executes workerctl with args (without the program name), writing
// results to stdout and diagnostics to stderr, reading the environment
// through getenv, and returns the exit code. It is main without the process:
// tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if args == nil {
		args = []string{} // cobra reads os.Args when args is nil
	}
	root := newRootCommand(stdout, stderr, getenv)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(stderr, errorMessage(err))
	}
	return exitCode(err)
}

// exitCode is the one place errors become exit codes.
func exitCode(err error) int {
	var usage *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &usage):
		return exitUsage
	case errors.Is(err, admin.ErrUnreachable):
		return exitUnreachable
	case errors.Is(err, admin.ErrUnauthenticated), errors.Is(err, admin.ErrTLS):
		return exitAuth
	default:
		return exitError
	}
}

// errorMessage is err as shown to the user, with a hint on what to do next.
func errorMessage(err error) string {
	msg := "workerctl: " + err.Error()
	var usage *usageError
	switch {
	case errors.As(err, &usage):
		msg += fmt.Sprintf("\nRun '%s --help' for usage.", usage.command)
	case errors.Is(err, admin.ErrUnreachable):
		msg += "\nIs the worker running? Set the address with --addr or EDDY_ADDR."
	case errors.Is(err, admin.ErrUnauthenticated):
		msg += "; pass --token or set EDDY_TOKEN"
	case errors.Is(err, admin.ErrTLS):
		msg += "\nCheck --cacert (the CA of the worker's certificate) and, for a worker that requires client certificates, --cert and --key."
	}
	return msg
}
