package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/bufferd/bufferd/bench/index"
)

// newBenchIndexCmd is `bufferd bench index`: the chain index's backfill rate
// and its block -> reservable latency against the simulated node.
func newBenchIndexCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "index",
		Short: "Measure the chain index: backfill blocks a second, block -> reservable latency",
		Long: `index builds a chain on the simulated node (in this process, serving the bytomd
routes on loopback): --pools pools, each funded with UTXOs, then --blocks blocks of
--txs-per-block transactions that each spend a pool UTXO into a new one. It
registers the pools from height 1 and times the chain index (the code the syncer
runs) until every pool reached the tip; then it mines --latency-blocks blocks one
every --block-every and times, for each, how long its first pool output takes to be
reservable. PostgreSQL (--database-url, a fresh database on that server) and Redis
(--redis-url, a key prefix of its own) are used as in production.`,
		Args: cobra.NoArgs,
	}
	c := loadConfig(cmd, "database-url", "redis-url")
	o := index.Options{}
	f := cmd.Flags()
	f.IntVar(&o.Pools, "pools", index.DefaultPools, "pools registered")
	f.IntVar(&o.TxsPerBlock, "txs-per-block", index.DefaultTxsPerBlock, "transactions per block")
	f.Float64Var(&o.PoolShare, "pool-share", index.DefaultPoolShare, "share of the transactions that touch a pool (0-1]; the others move BTM between programs no pool watches")
	f.IntVar(&o.Blocks, "blocks", index.DefaultBlocks, "blocks of the backfill")
	f.IntVar(&o.LatencyRuns, "latency-blocks", index.DefaultLatencyRuns, "blocks mined one by one to time block -> reservable")
	f.DurationVar(&o.BlockEvery, "block-every", index.DefaultBlockEvery, "interval of those blocks")
	f.DurationVar(&o.Poll, "poll", 0, "the index's poll interval (default: the syncer's, BUFFERD_INDEX_POLL's default)")
	out := f.String("out", "", "write the markdown report to this file (default: standard output)")
	cpuProfile := f.String("cpu-profile", "", "write a Go CPU profile of the backfill (the simulated node and the index) to this file")
	cmd.RunE = func(cmd *cobra.Command, _ []string) (err error) {
		log, err := newLogger(c)
		if err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		o.DatabaseURL, o.RedisURL, o.Log = c.DatabaseURL, c.RedisURL, log
		if *cpuProfile != "" {
			pf, err := os.Create(*cpuProfile)
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, pf.Close()) }() // a profile is complete only once closed
			o.CPUProfile = pf
		}
		start := time.Now()
		rep, err := index.Run(ctx, o)
		if err != nil {
			return err
		}
		md := fmt.Sprintf("`%s` (%s, %s)\n\n%s", commandLine(os.Args), time.Now().UTC().Format(time.RFC3339),
			time.Since(start).Round(time.Second), rep.Markdown())
		if *out == "" {
			_, err := fmt.Fprint(cmd.OutOrStdout(), md)
			return err
		}
		return os.WriteFile(*out, []byte(md), 0o644)
	}
	return cmd
}
