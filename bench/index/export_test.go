package index

import "time"

// Blocks is how many blocks the backfill applied.
func (r *Report) Blocks() int { return r.blocks }

// PoolTxs is how many transactions of the backfill touch a pool.
func (r *Report) PoolTxs() int { return r.poolTxs }

// Latency is the latency of each block mined one by one, sorted.
func (r *Report) Latency() []time.Duration { return r.latency }

// BlocksPerSecond is the backfill rate.
func (r *Report) BlocksPerSecond() float64 { return r.blocksPerSecond() }
