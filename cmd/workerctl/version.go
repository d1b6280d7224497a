package main

import (
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is the CLI's version, set at build time with
// -ldflags "-X main.version=v1.2.3". When empty, the module version from the
// build information is used, else "dev".
var version string

func cliVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func newVersionCommand(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:         "version",
		Annotations: access(accessLocal),
		Short:       "Print workerctl's version",
		Long: `Print workerctl's own version. It does not contact the worker: the worker's
version is in "workerctl status".`,
		Example: `  workerctl version`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			return c.printer().version(cliVersion())
		},
	}
}
