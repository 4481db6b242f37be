// Command bufferd is the UTXO reservation service: one binary whose
// subcommands run the API, the sync jobs, the schema migrations, the simulated
// chain, and everything at once for local development.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/bufferd/bufferd/config"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "bufferd:", err)
		os.Exit(1)
	}
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
	return root
}

// loadConfig reads the environment and binds the named flags of cmd over it.
func loadConfig(cmd *cobra.Command, flags ...string) *config.Config {
	c, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bufferd:", err)
		os.Exit(2)
	}
	c.Bind(cmd.Flags(), append(flags, "log-level", "log-format")...)
	return &c
}

// signalContext is cancelled on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
