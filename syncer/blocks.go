package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/storage"
)

// DefaultCrawlBlocks is how many blocks the crawler applies per pool per pass.
const DefaultCrawlBlocks = 500

// Crawler scans the chain block by block and records, per pool, every
// transaction that spends one of the pool's UTXOs: its id, block, time,
// status and the addresses and amounts of its inputs and outputs. Each pool
// has its own cursor. When a block's previous hash is not the hash the
// crawler applied below it, the chain reorganised: the pool is rolled back to
// the fork point (the last height whose remembered hash the chain still has)
// and the new branch is applied.
type Crawler struct {
	Store  *storage.Store
	Chain  chain.Source      // tells the tip
	Blocks chain.BlockSource // serves the blocks
	// StartHeight is where a pool's first crawl starts; 0 is the tip at that time.
	StartHeight uint64
	// MaxBlocks bounds the blocks applied per pool per pass (0: DefaultCrawlBlocks).
	MaxBlocks int
	Log       *slog.Logger
}

// CrawlResult is what one pass did.
type CrawlResult struct {
	Blocks     int   // blocks applied, over all pools
	Txs        int   // transactions recorded
	Reorgs     int   // reorganisations rolled back
	RolledBack int64 // transactions removed by them
}

// Run makes one pass over every pool, each block fetched once. A pool that
// fails is logged and retried next pass; a write refused for a stale epoch
// ends the pass with that error.
func (c *Crawler) Run(ctx context.Context) (CrawlResult, error) {
	var res CrawlResult
	tip, err := c.Chain.ChainStatus(ctx)
	if err != nil {
		return res, fmt.Errorf("syncer: crawl: chain status: %w", err)
	}
	pools, err := c.Store.ListPools(ctx)
	if err != nil {
		return res, err
	}
	cache := map[uint64]*chain.Block{}
	get := func(h uint64) (*chain.Block, error) {
		if b, ok := cache[h]; ok {
			return b, nil
		}
		b, err := c.Blocks.GetBlock(ctx, h)
		if err != nil {
			return nil, err
		}
		cache[h] = b
		return b, nil
	}
	for _, p := range pools {
		r, err := c.crawlPool(ctx, p, tip.Height, get)
		res.Blocks, res.Txs, res.Reorgs, res.RolledBack = res.Blocks+r.Blocks, res.Txs+r.Txs, res.Reorgs+r.Reorgs, res.RolledBack+r.RolledBack
		if err != nil {
			if isStale(err) || ctx.Err() != nil {
				return res, err
			}
			c.logger().Warn("crawl pool", "pool", p.ID, "err", err)
		}
	}
	return res, nil
}

func (c *Crawler) crawlPool(ctx context.Context, p storage.Pool, tip uint64, get func(uint64) (*chain.Block, error)) (CrawlResult, error) {
	var res CrawlResult
	var height int64
	var hash string // "" when unknown: the next block is taken as it is
	cur, err := c.Store.Cursor(ctx, p.ID, storage.JobCrawl)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		start := c.StartHeight
		if start == 0 {
			start = max(tip, 1)
		}
		height = int64(start) - 1
	case err != nil:
		return res, err
	default:
		height, hash = cur.Height, cur.BlockHash
	}
	limit := c.MaxBlocks
	if limit <= 0 {
		limit = DefaultCrawlBlocks
	}
	for n := 0; n < limit && uint64(height) < tip; n++ {
		blk, err := get(uint64(height + 1))
		if errors.Is(err, chain.ErrBlockNotFound) {
			return res, nil // the chain got shorter since its tip was read
		}
		if err != nil {
			return res, fmt.Errorf("syncer: crawl: block %d: %w", height+1, err)
		}
		if hash != "" && blk.PreviousHash != hash {
			fork, forkHash, err := c.forkPoint(ctx, p.ID, height, get)
			if err != nil {
				return res, err
			}
			removed, err := c.Store.RollbackCrawl(ctx, p.ID, fork, forkHash)
			if err != nil {
				return res, err
			}
			c.logger().Info("chain reorganised: crawl rolled back", "pool", p.ID, "from", height, "to", fork,
				"transactions_removed", removed)
			res.Reorgs++
			res.RolledBack += removed
			height, hash = fork, forkHash
			continue
		}
		txs := poolTxs(p, blk)
		hdr := storage.BlockHeader{Height: int64(blk.Height), Hash: blk.Hash, PreviousHash: blk.PreviousHash, Time: blk.Time}
		if err := c.Store.ApplyBlock(ctx, p.ID, hdr, txs); err != nil {
			return res, err
		}
		res.Blocks++
		res.Txs += len(txs)
		height, hash = int64(blk.Height), blk.Hash
	}
	return res, nil
}

// forkPoint walks back from height to the highest block whose remembered hash
// the chain still has. Past the remembered window it gives the oldest height
// remembered, with an unknown hash.
func (c *Crawler) forkPoint(ctx context.Context, poolID, height int64, get func(uint64) (*chain.Block, error)) (int64, string, error) {
	low := max(0, height-storage.ReorgWindow)
	known, err := c.Store.CrawledHashes(ctx, poolID, low, height)
	if err != nil {
		return 0, "", err
	}
	for h := height; h > low; h-- {
		stored, ok := known[h]
		if !ok {
			continue
		}
		blk, err := get(uint64(h))
		if errors.Is(err, chain.ErrBlockNotFound) {
			continue
		}
		if err != nil {
			return 0, "", fmt.Errorf("syncer: crawl: block %d: %w", h, err)
		}
		if blk.Hash == stored {
			return h, stored, nil
		}
	}
	return low, "", nil
}

// poolTxs are the transactions of blk that spend a UTXO of pool.
func poolTxs(pool storage.Pool, blk *chain.Block) []storage.CrawledTx {
	var out []storage.CrawledTx
	for _, tx := range blk.Txs {
		var spends []string
		for _, in := range tx.Inputs {
			if in.Program == pool.Program && in.Asset == pool.Asset && in.UTXO != "" {
				spends = append(spends, in.UTXO)
			}
		}
		if len(spends) == 0 {
			continue
		}
		out = append(out, storage.CrawledTx{TxID: tx.ID, StatusFail: tx.StatusFail,
			Inputs: txIOs(tx.Inputs), Outputs: txIOs(tx.Outputs), Spends: spends})
	}
	return out
}

func txIOs(ios []chain.TxIO) []storage.TxIO {
	out := make([]storage.TxIO, len(ios))
	for i, io := range ios {
		out[i] = storage.TxIO{Address: io.Address, Program: io.Program, Asset: io.Asset, Amount: io.Amount, UTXO: io.UTXO}
	}
	return out
}

func (c *Crawler) logger() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.Default()
}
