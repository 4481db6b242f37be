package index_test

import (
	"context"
	"testing"
	"time"

	"github.com/bufferd/bufferd/bench/index"
	"github.com/bufferd/bufferd/testenv"
)

// A small run of the index benchmark: it measures, and the index keeps up.
func TestIndexBenchmarkRuns(t *testing.T) {
	rep, err := index.Run(context.Background(), index.Options{
		DatabaseURL: testenv.DatabaseURL(), RedisURL: testenv.RedisURL(),
		Pools: 3, TxsPerBlock: 10, Blocks: 60, LatencyRuns: 5, BlockEvery: 50 * time.Millisecond, Poll: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Blocks < 60 || len(rep.Latency) != 5 || rep.BlocksPerSecond() <= 0 {
		t.Fatalf("report %+v", rep)
	}
	t.Log("\n" + rep.Markdown())
}
