package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/bufferd/bufferd/devstack"
	"github.com/bufferd/bufferd/handlers"
)

// The demo pool `bufferd dev` seeds (devstack's).
var (
	demoAsset   = devstack.DemoAsset
	demoProgram = devstack.DemoProgram
	demoAmounts = devstack.DemoAmounts
)

func newDevCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Everything in one process: embedded Redis and SQLite, simulated chain, demo pool",
		Args:  cobra.NoArgs,
	}
	chainAddr := cmd.Flags().String("chain-addr", "127.0.0.1:3101", "listen address of the simulated chain")
	data := cmd.Flags().String("data", "./data", "directory of the embedded database")
	c := loadConfig(cmd, append([]string{"addr", "admin-token", "sync-interval", "shutdown-timeout"}, protectionFlags...)...)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if c.LogFormat == "json" && !cmd.Flags().Changed("log-format") && os.Getenv("BUFFERD_LOG_FORMAT") == "" {
			c.LogFormat = "text"
		}
		log, err := newLogger(c)
		if err != nil {
			return err
		}
		api := apiConfig(c, handlers.Config{})
		if err := api.Validate(); err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		d, err := devstack.Start(ctx, devstack.Options{
			Addr: c.Addr, ChainAddr: *chainAddr, DataDir: *data, AdminToken: c.AdminToken,
			SyncInterval: c.SyncInterval, Logger: log, API: api,
		})
		if err != nil {
			return err
		}
		registerPools(log, d.Redis, d.Store)
		setBuildInfo()
		printWelcome(cmd.OutOrStdout(), d)
		<-ctx.Done()
		log.Info("shutting down")
		return d.Shutdown(c.ShutdownGrace)
	}
	return cmd
}

// printWelcome tells what `bufferd dev` serves and how to try it.
func printWelcome(w io.Writer, d *devstack.Stack) {
	// Best effort: the stack serves whether or not anyone reads this.
	_, _ = fmt.Fprintf(w, `
bufferd dev is ready.

  status page      %[1]s/
  API docs         %[1]s/docs   (OpenAPI: %[1]s/openapi.json)
  metrics          %[1]s/metrics
  simulated chain  %[2]s   (blockcenter /api/v1/btm/*, bytomd, explorer, /sim/*)
  admin token      %[3]s
  demo pool        id %[4]d: %[7]d UTXOs of 0.5 to 12 BTM
                   asset   %[5]s
                   program %[6]s

Try:

  # reserve the smallest UTXO worth at least 1 BTM for 60 s
  curl -s -X POST %[1]s/v1/reservations -H 'Content-Type: application/json' \
    -d '{"pool":%[4]d,"amount":100000000,"ttl_seconds":60,"owner":"me"}'

  # the pool's free UTXOs, largest first (the legacy route frontends use)
  curl -s -X POST '%[1]s/dapp/list-utxos?limit=5' -H 'Content-Type: application/json' \
    -d '{"asset":"%[5]s","program":"%[6]s","sort":{"by":"amount","order":"desc"}}'

`, d.APIURL, d.ChainURL, d.AdminToken, d.Pool.ID, d.Pool.Asset, d.Pool.Program, len(devstack.DemoAmounts()))
}
