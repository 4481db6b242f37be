package index_test

import (
	"context"
	"testing"
	"time"

	"github.com/bufferd/bufferd/bench/index"
	"github.com/bufferd/bufferd/internal/testenv"
)

// A small run of the index benchmark: it measures, the index keeps up, and
// it holds what the chain has (Run checks every pool's UTXOs), with blocks
// where only some transactions touch a pool.
func TestIndexBenchmarkRuns(t *testing.T) {
	rep, err := index.Run(context.Background(), index.Options{
		DatabaseURL: testenv.DatabaseURL(), RedisURL: testenv.RedisURL(),
		Pools: 3, TxsPerBlock: 10, Blocks: 60, LatencyRuns: 5, BlockEvery: 50 * time.Millisecond, Poll: 20 * time.Millisecond,
		PoolShare: 0.3,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Blocks() < 60 || len(rep.Latency()) != 5 || rep.BlocksPerSecond() <= 0 || rep.PoolTxs() != 60*3 {
		t.Fatalf("report %+v", rep)
	}
	t.Log("\n" + rep.Markdown())
}
