package main

import (
	"net"

	"github.com/spf13/cobra"

	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/internal/fiberserve"
)

func newSimchainCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "simchain",
		Short: "Serve the simulated chain alone (blockcenter, explorer and bytomd routes plus /sim control)",
		Args:  cobra.NoArgs,
	}
	addr := cmd.Flags().String("addr", "127.0.0.1:3101", "listen address")
	seed := cmd.Flags().Bool("seed", false, "create the demo pool's UTXOs at start")
	c := loadConfig(cmd, "shutdown-timeout")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log, err := newLogger(c)
		if err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		ch := sim.New()
		if *seed {
			if _, err := ch.AddUTXOs(demoAsset, demoProgram, demoAmounts()); err != nil {
				return err
			}
		}
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return err
		}
		log.Info("simulated chain listening", "addr", ln.Addr().String(), "seeded", *seed)
		return fiberserve.Serve(ctx, ch.Handler(), ln, c.ShutdownGrace)
	}
	return cmd
}
