package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/bufferd/bufferd/metrics"
)

// version and revision are set at build time with
// -ldflags "-X main.version=v1.2.3 -X main.revision=<commit>".
var version, revision = "", ""

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "bufferd", versionString())
			return err
		},
	}
}

func versionString() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v
}

// buildLabels returns the version and VCS revision of this binary: the
// values set at build time, else what the Go toolchain recorded ("unknown"
// when nothing did).
func buildLabels() (v, rev string) {
	v, rev = version, revision
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			if rev == "" && s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	if v == "" {
		v = "unknown"
	}
	if rev == "" {
		rev = "unknown"
	}
	return v, rev
}

// setBuildInfo sets bufferd_build_info for this binary.
func setBuildInfo() {
	v, rev := buildLabels()
	metrics.SetBuildInfo(v, rev, runtime.Version())
}
