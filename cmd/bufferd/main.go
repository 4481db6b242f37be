// Command bufferd is the UTXO reservation service: one binary whose
// subcommands run the API, the sync jobs, the schema migrations, the simulated
// chain, and everything at once for local development.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/bufferd/bufferd/config"
)

func main() {
	os.Exit(execute(newRootCmd(), os.Args[1:], os.Stderr))
}

// Exit codes: a runtime failure, and a usage or configuration error (unknown
// subcommand, bad flag or argument, bad setting).
const (
	exitFailure = 1
	exitUsage   = 2
)

// execute runs root with args and returns the exit code; errors go to stderr,
// with the usage of the command after a usage error.
func execute(root *cobra.Command, args []string, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	// There is nowhere else to report a failed write to stderr.
	_, _ = fmt.Fprintln(stderr, "bufferd:", err)
	var ue *usageError
	if !errors.As(err, &ue) {
		return exitFailure
	}
	if ue.config {
		_, _ = fmt.Fprintf(stderr, "Run '%s --help' for the settings.\n", cmd.CommandPath())
	} else {
		_, _ = fmt.Fprint(stderr, cmd.UsageString())
	}
	return exitUsage
}

// usageError is a mistake in the command line (config false) or in the
// settings (config true): the process exits 2.
type usageError struct {
	err    error
	config bool
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// flagError makes a flag that does not parse a usage error naming the flag's
// environment variable, if it has one.
func flagError(_ *cobra.Command, err error) error {
	var ive *pflag.InvalidValueError
	if errors.As(err, &ive) {
		f := ive.GetFlag()
		// Only a flag bound to a setting says "(env ...)" (bench chaos has
		// a --sweep-interval of its own).
		if env, ok := config.EnvOfFlag(f.Name); ok && strings.Contains(f.Usage, "(env "+env+")") {
			return &usageError{err: &config.SettingError{Env: env, Flag: f.Name, Value: ive.GetValue(), FromFlag: true,
				Reason: "invalid " + f.Value.Type()}, config: true}
		}
	}
	return &usageError{err: err}
}

// strictArgs makes every argument error of cmd and its subcommands a usage
// error, and an argument of a command that only groups subcommands an unknown
// subcommand (cobra would print the help and succeed).
func strictArgs(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		strictArgs(sub)
	}
	if !cmd.Runnable() && cmd.HasSubCommands() {
		cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		cmd.Args = unknownSubcommand
		return
	}
	if check := cmd.Args; check != nil {
		cmd.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				if cmd.HasSubCommands() && len(args) > 0 {
					return unknownSubcommand(cmd, args)
				}
				return &usageError{err: err}
			}
			return nil
		}
	}
}

// unknownSubcommand refuses any argument: it can only be a subcommand cobra
// did not find.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += " (did you mean " + strings.Join(s, ", ") + "?)"
	}
	return &usageError{err: errors.New(msg)}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "bufferd",
		Short: "bufferd hands out the UTXOs of smart contracts to many users at once, never one to two",
		Long: `bufferd hands out the UTXOs of smart contracts on a UTXO-model chain (Bytom
first) to many users at once, without ever giving one UTXO to two of them. It
follows the chain, expires abandoned reservations and keeps a durable history.

Every setting is read from an environment variable; a flag, where the
subcommand has one, overrides it.

Environment:
` + config.Help(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAPICmd(), newSyncerCmd(), newMigrateCmd(), newDevCmd(), newSimchainCmd(), newVersionCmd(), newHealthcheckCmd(), newPoolCmd(), newBenchCmd())
	root.SetFlagErrorFunc(flagError)
	strictArgs(root)
	// Long flag descriptions wrap at the terminal's width (100 columns when
	// it is unknown) instead of running on.
	cobra.AddTemplateFunc("wrappedFlagUsages", func(fs *pflag.FlagSet) string { return fs.FlagUsagesWrapped(helpWidth()) })
	t := root.UsageTemplate()
	for _, set := range []string{"LocalFlags", "InheritedFlags"} {
		t = strings.ReplaceAll(t, "{{."+set+".FlagUsages", "{{wrappedFlagUsages ."+set)
	}
	root.SetUsageTemplate(t)
	return root
}

// loadConfig reads the environment and binds the named flags of cmd over it.
// Before cmd runs, it checks every setting it uses (the named ones and the
// log's) without connecting to anything: a variable that does not parse or a
// bad setting is a usage error.
func loadConfig(cmd *cobra.Command, flags ...string) *config.Config {
	c, loadErr := config.Load()
	flags = append(flags, "log-level", "log-format")
	c.Bind(cmd.Flags(), flags...)
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		err := loadErr
		if err == nil {
			err = c.CheckWith(cmd.Flags(), map[string]config.Rule{"redis-url": redisURLRule}, flags...)
		}
		if err != nil {
			return &usageError{err: err, config: true}
		}
		return nil
	}
	return &c
}

// helpWidth is the columns help text wraps at.
func helpWidth() int {
	if w, _, err := term.GetSize(int(os.Stdout.Fd())); err == nil && w >= 40 {
		return w
	}
	return 100
}

// signalContext is cancelled on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
