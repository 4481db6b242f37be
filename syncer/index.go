package syncer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
)

// Defaults of the chain index.
const (
	// defaultStartDepth is how far below the tip a pool registered without a
	// from_height starts (about 17 days of Bytom mainnet blocks).
	defaultStartDepth = 10_000
	// defaultIndexBatch is how many blocks one database transaction applies.
	defaultIndexBatch = 100
	// defaultIndexFetchers is how many blocks are fetched from the node at once.
	defaultIndexFetchers = 8
)

// errOtherChain means the node follows another chain than the one the index
// was built from (its genesis block differs): the index stops rather than
// mix two chains.
var errOtherChain = errors.New("syncer: the node is on another chain than the index")

// chainIndex is the chain index of a node-backed syncer (bytomd). It reads every
// block from each pool's start height on and keeps the outputs of each pool's
// asset and program (any program: P2WPKH, P2WSH, contract programs; BTM and
// issued assets alike), marks them spent when an input spends them, rolls
// them back when the chain reorganises, and puts the mempool on top: outputs
// of pending transactions are offered unconfirmed where the pool allows it,
// outputs pending transactions spend are withheld at once and come back when
// their spend vanishes. Coinbase outputs wait for their maturity. It needs no
// wallet on the node.
//
// A pool is offered (its Redis state loaded) once its index reached the tip;
// until then it is backfilling and reserves in it answer "rebuilding".
type chainIndex struct {
	Store   indexStore
	Node    chain.Indexer
	Apply   *Applier
	Rebuild *Rebuilder
	// StartDepth is how far below the tip a pool registered without
	// from_height starts; 0 means defaultStartDepth.
	StartDepth uint64
	// Batch is how many blocks one transaction applies (defaultIndexBatch),
	// Fetchers how many blocks are fetched at once (defaultIndexFetchers).
	Batch, Fetchers int
	// ProgressEvery is how often a backfill logs its progress
	// (DefaultProgressEvery when 0).
	ProgressEvery time.Duration
	Log           *slog.Logger

	backfill backfillProgress     // of the backfill under way
	mempool  map[string]*chain.Tx // pending transactions read so far, by id
	genesis  string               // the genesis hash, once checked
	ahead    *prefetch            // the next batch, being fetched while one is applied
}

// prefetch is a batch of blocks being fetched in the background.
type prefetch struct {
	from   uint64
	n      int
	done   chan struct{}
	blocks []*chain.Block
	err    error
}

// fetchAhead starts fetching n blocks from height from in the background.
func (x *chainIndex) fetchAhead(ctx context.Context, from uint64, n int) {
	p := &prefetch{from: from, n: n, done: make(chan struct{})}
	x.ahead = p
	go func() {
		defer close(p.done)
		p.blocks, p.err = x.fetch(ctx, from, n)
	}()
}

// take returns the blocks fetched ahead from height from, if that is what
// was fetched (at most n of them): ok is false when nothing usable was.
func (x *chainIndex) take(from uint64, n int) (blocks []*chain.Block, ok bool) {
	p := x.ahead
	x.ahead = nil
	if p == nil {
		return nil, false
	}
	<-p.done
	if p.from != from || p.err != nil {
		return nil, false
	}
	return p.blocks[:min(len(p.blocks), n)], true
}

// indexResult is what one pass did.
type indexResult struct {
	Tip     uint64 // the chain's tip
	TipHash string
	Blocks  int // blocks applied (to one pool or several)
	Reorgs  int // reorganisations rolled back
	Pending int // pending transactions that touch a pool
	Touched int // UTXOs whose chain state changed
}

// Pass brings every pool up to the tip (in batches; a backfilling pool may
// need several passes), overlays the mempool on the pools that reached it,
// matures coinbase outputs, and applies what changed to Redis and the
// reservations.
func (x *chainIndex) Pass(ctx context.Context) (indexResult, error) {
	var res indexResult
	st, err := x.Node.ChainStatus(ctx)
	if err != nil {
		return res, fmt.Errorf("syncer: index: chain tip: %w", err)
	}
	res.Tip, res.TipHash = st.Height, st.BlockHash
	metrics.ChainTipHeight.Set(float64(st.Height))
	if err := x.checkGenesis(ctx); err != nil {
		return res, err
	}
	pools, err := x.Store.ListPools(ctx)
	if err != nil {
		return res, err
	}
	cursors, err := x.startPools(ctx, pools, st.Height)
	if err != nil {
		return res, err
	}
	deadline := time.Now().Add(2 * time.Second) // let the mempool and the others have their turn
	for time.Now().Before(deadline) {
		touched := storage.Touched{}
		applied, reorg, err := x.advance(ctx, pools, cursors, st.Height, touched)
		if err != nil {
			return res, err
		}
		res.Blocks += applied
		res.Touched += touched.Len()
		// A batch reaches Redis at once: a UTXO a block spent stops being
		// offered before the next batch is fetched.
		if err := x.settle(ctx, pools, nil, touched); err != nil {
			return res, err
		}
		if reorg {
			res.Reorgs++
			if cursors, err = x.Store.IndexCursors(ctx); err != nil {
				return res, err
			}
			continue
		}
		if applied == 0 {
			break
		}
	}
	var current []storage.Pool // the pools at the tip
	for _, p := range pools {
		if cur, ok := cursors[p.ID]; ok && uint64(cur.Height) >= st.Height {
			current = append(current, p)
		}
	}
	touched := storage.Touched{}
	pending, err := x.overlay(ctx, current, st, touched)
	if err != nil {
		return res, err
	}
	res.Pending = pending
	mature, err := x.Store.MatureUTXOs(ctx, int64(st.Height))
	if err != nil {
		return res, err
	}
	touched.Merge(mature)
	res.Touched += touched.Len()
	return res, x.settle(ctx, pools, current, touched)
}

// settle applies changes to the pools already offered; a pool that just
// reached the tip is marked synced and loaded into Redis instead.
func (x *chainIndex) settle(ctx context.Context, pools, current []storage.Pool, touched storage.Touched) error {
	isCurrent := map[int64]bool{}
	for _, p := range current {
		isCurrent[p.ID] = true
	}
	for _, p := range current {
		metrics.SyncLastSuccess.WithLabelValues(poolLabel(p.ID), storage.JobIndex).SetToCurrentTime()
	}
	for _, p := range pools {
		switch {
		case p.SyncedAt == nil && !isCurrent[p.ID]:
			continue // still backfilling: not offered yet
		case p.SyncedAt == nil:
			// The pool's whole UTXO set is known now: Redis may have it.
			if err := x.Store.MarkSynced(ctx, p.ID); err != nil {
				return err
			}
			x.logger().Info("pool indexed up to the tip: offered from now on", "pool", p.ID)
		default:
			if _, err := x.Apply.Apply(ctx, p.ID, touched[p.ID]); err != nil {
				return err
			}
		}
		if _, err := x.Rebuild.RebuildIfLost(context.WithoutCancel(ctx), p.ID); err != nil {
			return err
		}
	}
	return nil
}

// checkGenesis refuses a node whose genesis block is not the one the index
// was built from (recording it the first time).
func (x *chainIndex) checkGenesis(ctx context.Context) error {
	if x.genesis != "" {
		return nil
	}
	blk, err := x.Node.GetBlock(ctx, 0)
	if err != nil {
		return fmt.Errorf("syncer: index: genesis block: %w", err)
	}
	stored, err := x.Store.Genesis(ctx)
	if err != nil {
		return err
	}
	switch {
	case stored == "":
		if err := x.Store.SetGenesis(ctx, blk.Hash); err != nil {
			return err
		}
	case stored != blk.Hash:
		return fmt.Errorf("%w: its genesis block is %s, the index's %s", errOtherChain, blk.Hash, stored)
	}
	x.genesis = blk.Hash
	return nil
}

// startPools gives each pool without a position its starting point (its
// from_height, else StartDepth below the tip) and returns every position.
func (x *chainIndex) startPools(ctx context.Context, pools []storage.Pool, tip uint64) (map[int64]storage.SyncCursor, error) {
	cursors, err := x.Store.IndexCursors(ctx)
	if err != nil {
		return nil, err
	}
	depth := cmp.Or(x.StartDepth, defaultStartDepth)
	for _, p := range pools {
		if _, ok := cursors[p.ID]; ok {
			continue
		}
		start := uint64(p.FromHeight)
		if start == 0 {
			start = tip - min(tip, depth)
		}
		start = max(start, 1)
		// The block below the start is taken as it is: its hash is unknown.
		c := storage.SyncCursor{PoolID: p.ID, Job: storage.JobIndex, Height: int64(start) - 1}
		if err := x.Store.SaveCursor(ctx, c); err != nil {
			return nil, err
		}
		cursors[p.ID] = c
		x.logger().Info("pool joins the chain index", "pool", p.ID, "from_height", start, "tip", tip)
	}
	return cursors, nil
}

// advance applies one batch of blocks to the pools furthest behind (those
// sharing the lowest position), up to the next group's position or the tip,
// and moves their cursors. It reports a reorganisation it rolled back
// instead.
func (x *chainIndex) advance(ctx context.Context, pools []storage.Pool, cursors map[int64]storage.SyncCursor, tip uint64,
	touched storage.Touched) (applied int, reorg bool, err error) {
	heights := map[int64][]int64{}
	hashes := map[int64]string{}
	for _, p := range pools {
		c, ok := cursors[p.ID]
		if !ok || uint64(c.Height) >= tip {
			continue
		}
		heights[c.Height] = append(heights[c.Height], p.ID)
		if c.BlockHash != "" {
			hashes[c.Height] = c.BlockHash
		}
	}
	if len(heights) == 0 {
		x.backfill = backfillProgress{} // every pool is at the tip
		return 0, false, nil
	}
	levels := slices.Sorted(maps.Keys(heights))
	low := levels[0]
	stop := int64(tip)
	if len(levels) > 1 {
		stop = levels[1]
	}
	n := int(min(stop-low, int64(cmp.Or(x.Batch, defaultIndexBatch))))
	start := time.Now()
	blocks, ok := x.take(uint64(low)+1, n)
	if !ok {
		blocks, err = x.fetch(ctx, uint64(low)+1, n)
	}
	if err != nil {
		return 0, false, err
	}
	if len(blocks) == 0 {
		return 0, false, nil // the chain got shorter since its tip was read
	}
	if want := hashes[low]; want != "" && blocks[0].PreviousHash != want {
		return 0, true, x.rollback(ctx, low, touched)
	}
	// Pools further ahead applied some of these heights already: a block
	// that differs from theirs means the chain reorganised under them.
	known, err := x.Store.IndexedHashes(ctx, int64(blocks[0].Height), int64(blocks[len(blocks)-1].Height))
	if err != nil {
		return 0, false, err
	}
	for _, b := range blocks {
		if h, ok := known[int64(b.Height)]; ok && h != b.Hash {
			x.ahead = nil
			return 0, true, x.rollback(ctx, int64(b.Height), touched)
		}
	}
	// A reorganisation while fetching shows as a break in the batch: apply
	// the part before it; the next batch finds the fork.
	for i := 1; i < len(blocks); i++ {
		if blocks[i].PreviousHash != blocks[i-1].Hash {
			blocks = blocks[:i]
			break
		}
	}
	// While this batch is applied, the next one is fetched.
	if next := low + int64(len(blocks)); next < stop {
		x.fetchAhead(ctx, uint64(next)+1, int(min(stop-next, int64(cmp.Or(x.Batch, defaultIndexBatch)))))
	}
	members := poolsByID(pools, heights[low])
	indexed := make([]storage.IndexedBlock, len(blocks))
	for i, b := range blocks {
		indexed[i] = indexBlock(b, members)
	}
	fetched := time.Now()
	t, err := x.Store.ApplyBlocks(ctx, heights[low], indexed)
	if err != nil {
		return 0, false, err
	}
	x.logger().Debug("index batch", "blocks", len(blocks), "pools", len(heights[low]),
		"fetch", fetched.Sub(start).Round(time.Millisecond), "apply", time.Since(fetched).Round(time.Millisecond))
	touched.Merge(t)
	if err := x.releaseFailedSubmits(ctx, members, blocks); err != nil {
		return 0, false, err
	}
	last := blocks[len(blocks)-1]
	for _, id := range heights[low] {
		c := cursors[id]
		c.Height, c.BlockHash = int64(last.Height), last.Hash
		cursors[id] = c
		metrics.SyncLastSuccess.WithLabelValues(poolLabel(id), storage.JobIndex).SetToCurrentTime()
	}
	metrics.IndexBlocks.Add(float64(len(blocks)))
	metrics.IndexBatchDuration.Observe(time.Since(start).Seconds())
	x.reportBackfill(start, low, int64(last.Height), int64(tip), len(blocks), len(heights))
	for _, id := range heights[low] {
		metrics.SyncBlocksBehind.WithLabelValues(poolLabel(id)).Set(float64(tip - last.Height))
	}
	return len(blocks), false, nil
}

// releaseFailedSubmits releases the submitted reservations whose transaction
// a block took with status_fail without moving their pool's asset: their
// UTXOs were not spent (an index pass may never have seen the transaction
// pending, so no UTXO state tells).
func (x *chainIndex) releaseFailedSubmits(ctx context.Context, pools map[string]storage.Pool, blocks []*chain.Block) error {
	var failed []string
	for _, b := range blocks {
		for i := range b.Txs {
			if b.Txs[i].StatusFail {
				failed = append(failed, b.Txs[i].ID)
			}
		}
	}
	if len(failed) == 0 {
		return nil
	}
	var ids []int64
	for _, p := range pools {
		if p.Asset != chain.BTMAsset {
			ids = append(ids, p.ID)
		}
	}
	released, err := x.Store.ReleaseFailedSubmits(ctx, ids, failed)
	if err != nil {
		return err
	}
	byPool := map[int64][]string{}
	for _, r := range released {
		byPool[r.PoolID] = append(byPool[r.PoolID], r.ID)
		metrics.Outcome(metrics.OutcomeReleased)
	}
	for pool, rs := range byPool {
		if err := x.Apply.Locks.EndReservations(context.WithoutCancel(ctx), pool, rs); err != nil {
			return err
		}
	}
	return nil
}

// fetch reads n blocks from height from on, Fetchers at a time. A block past
// the node's tip ends the list early.
func (x *chainIndex) fetch(ctx context.Context, from uint64, n int) ([]*chain.Block, error) {
	out := make([]*chain.Block, n)
	errs := make([]error, n)
	sem := make(chan struct{}, cmp.Or(x.Fetchers, defaultIndexFetchers))
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[i] = x.Node.GetBlock(ctx, from+uint64(i))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if errors.Is(err, chain.ErrBlockNotFound) {
			return out[:i], nil
		}
		if err != nil {
			return nil, fmt.Errorf("syncer: index: block %d: %w", from+uint64(i), err)
		}
	}
	return out, nil
}

// rollback finds where the chain forked below height and rolls the index
// back to it.
func (x *chainIndex) rollback(ctx context.Context, height int64, touched storage.Touched) error {
	fork, forkHash, err := x.forkPoint(ctx, height)
	if err != nil {
		return err
	}
	t, err := x.Store.RollbackIndex(ctx, fork, forkHash)
	if err != nil {
		return err
	}
	touched.Merge(t)
	metrics.IndexReorgs.Inc()
	x.logger().Info("chain reorganised: index rolled back", "from", height, "to", fork, "utxos_touched", len(t))
	return nil
}

// forkPoint returns the highest height at or below height whose block the
// node still has as the index applied it: block by block over the last
// ReorgWindow heights, then by bisection over every block the index
// remembers. Below all of them, it is the height under the lowest one, of
// unknown hash.
func (x *chainIndex) forkPoint(ctx context.Context, height int64) (int64, string, error) {
	same := func(h int64) (bool, string, error) {
		known, err := x.Store.IndexedHashes(ctx, h, h)
		if err != nil {
			return false, "", err
		}
		stored, ok := known[h]
		if !ok {
			return false, "", nil
		}
		blk, err := x.Node.GetBlock(ctx, uint64(h))
		if errors.Is(err, chain.ErrBlockNotFound) {
			return false, stored, nil
		}
		if err != nil {
			return false, "", fmt.Errorf("syncer: index: block %d: %w", h, err)
		}
		return blk.Hash == stored, stored, nil
	}
	lowest, indexed, err := x.Store.LowestIndexed(ctx)
	if err != nil || !indexed {
		return max(0, height-1), "", err
	}
	for h := height; h >= max(lowest, height-storage.ReorgWindow); h-- {
		ok, hash, err := same(h)
		if err != nil || ok {
			return h, hash, err
		}
	}
	// Deeper: the heights the node still agrees on form a prefix.
	lo, hi := lowest, height-storage.ReorgWindow-1 // the answer is in [lo-1, hi]
	if ok, _, err := same(lo); err != nil || !ok {
		// Below every block the index applied: the genesis hash is known.
		if lo-1 == 0 {
			return 0, x.genesis, err
		}
		return lo - 1, "", err
	}
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		ok, _, err := same(mid)
		if err != nil {
			return 0, "", err
		}
		if ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	_, hash, err := same(lo)
	return lo, hash, err
}

// poolKey identifies a pool by its asset and program.
func poolKey(asset, program string) string {
	return strings.ToLower(asset) + "/" + strings.ToLower(program)
}

func poolsByID(pools []storage.Pool, ids []int64) map[string]storage.Pool {
	out := make(map[string]storage.Pool, len(ids))
	for _, p := range pools {
		if slices.Contains(ids, p.ID) {
			out[poolKey(p.Asset, p.Program)] = p
		}
	}
	return out
}

// indexBlock picks out of a block what concerns pools: outputs of a pool's
// asset and program, pool outputs spent, and each pool's transactions.
// A transaction that failed (status_fail) moves only its BTM (see
// chain.Tx.Moves); a coinbase output waits for its maturity.
func indexBlock(b *chain.Block, pools map[string]storage.Pool) storage.IndexedBlock {
	out := storage.IndexedBlock{
		Header: storage.BlockHeader{Height: int64(b.Height), Hash: b.Hash, PreviousHash: b.PreviousHash, Time: b.Time},
		Txs:    map[int64][]storage.CrawledTx{},
	}
	for i := range b.Txs {
		tx := &b.Txs[i]
		spender := map[int64]bool{}
		for _, in := range tx.Inputs {
			p, ok := pools[poolKey(in.Asset, in.Program)]
			if in.Type != "spend" || in.UTXO == "" || !ok {
				continue
			}
			spender[p.ID] = true
			if tx.Moves(in.Asset) {
				out.Spends = append(out.Spends, storage.IndexedSpend{PoolID: p.ID, Hash: in.UTXO, TxID: tx.ID, Height: int64(b.Height)})
			}
		}
		for _, o := range tx.Outputs {
			p, ok := pools[poolKey(o.Asset, o.Program)]
			if o.UTXO == "" || !ok || !tx.Moves(o.Asset) {
				continue
			}
			io := storage.IndexedOutput{PoolID: p.ID, Hash: o.UTXO, Asset: p.Asset, Amount: o.Amount, TxID: tx.ID,
				Height: int64(b.Height), State: storage.StateAvailable}
			if tx.Coinbase() {
				io.ValidHeight, io.State = int64(b.Height)+chain.CoinbaseMaturity, storage.StateImmature
			}
			out.Outputs = append(out.Outputs, io)
		}
		for id := range spender {
			out.Txs[id] = append(out.Txs[id], storage.CrawledTx{TxID: tx.ID, StatusFail: tx.StatusFail,
				Inputs: txIOs(tx.Inputs), Outputs: txIOs(tx.Outputs)})
		}
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

// overlay puts the mempool on the pools at the tip: outputs of pending
// transactions become pending UTXOs (where the pool takes unconfirmed ones),
// UTXOs pending transactions spend are withheld (spent at height 0), and
// what the mempool no longer has falls back: a withheld UTXO whose spend
// vanished is available again, a pending output whose transaction vanished
// is invalidated. It returns how many pending transactions touch a pool.
func (x *chainIndex) overlay(ctx context.Context, pools []storage.Pool, tip chain.Status, touched storage.Touched) (int, error) {
	if len(pools) == 0 {
		return 0, nil
	}
	ids, err := x.Node.Mempool(ctx)
	if err != nil {
		return 0, fmt.Errorf("syncer: index: mempool: %w", err)
	}
	next := make(map[string]*chain.Tx, len(ids))
	for _, id := range ids {
		if tx, ok := x.mempool[id]; ok {
			next[id] = tx
			continue
		}
		tx, err := x.Node.MempoolTx(ctx, id)
		if errors.Is(err, chain.ErrTxNotFound) {
			continue // mined or dropped since it was listed
		}
		if err != nil {
			return 0, fmt.Errorf("syncer: index: mempool transaction %s: %w", id, err)
		}
		next[id] = tx
	}
	// A block mined meanwhile took transactions out of the mempool that the
	// index has not applied yet: they would look dropped. The next pass
	// applies the block first.
	if st, err := x.Node.ChainStatus(ctx); err != nil || st.Height != tip.Height || st.BlockHash != tip.BlockHash {
		return 0, err
	}
	x.mempool = next

	byKey := poolsByID(pools, poolIDs(pools))
	outs := map[string]storage.IndexedOutput{}
	spenders := map[string][]string{} // pool UTXO -> pending transactions spending it
	touching := 0
	for _, id := range slices.Sorted(maps.Keys(next)) {
		tx := next[id]
		touches := false
		for _, in := range tx.Inputs {
			if _, ok := byKey[poolKey(in.Asset, in.Program)]; ok && in.Type == "spend" && in.UTXO != "" {
				spenders[in.UTXO] = append(spenders[in.UTXO], id)
				touches = true
			}
		}
		for _, o := range tx.Outputs {
			if p, ok := byKey[poolKey(o.Asset, o.Program)]; ok && o.UTXO != "" {
				touches = true
				if p.Unconfirmed {
					outs[o.UTXO] = storage.IndexedOutput{PoolID: p.ID, Hash: o.UTXO, Asset: p.Asset, Amount: o.Amount,
						TxID: id, State: storage.StateAvailable}
				}
			}
		}
		if touches {
			touching++
		}
	}
	hashes := append(slices.Collect(maps.Keys(outs)), slices.Collect(maps.Keys(spenders))...)
	rows, err := x.Store.MempoolRows(ctx, poolIDs(pools), hashes)
	if err != nil {
		return touching, err
	}
	inPools := map[int64]bool{}
	for _, p := range pools {
		inPools[p.ID] = true
	}
	var changes []storage.UTXOChange
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.Hash] || !inPools[r.PoolID] {
			continue
		}
		seen[r.Hash] = true
		if c, ok := pendingState(r, next, spenders[r.Hash]); ok {
			changes = append(changes, c)
			touched.Add(r.PoolID, r.Hash)
		}
	}
	var inserts []storage.IndexedOutput
	for _, h := range slices.Sorted(maps.Keys(outs)) {
		if !seen[h] {
			inserts = append(inserts, outs[h])
			touched.Add(outs[h].PoolID, h)
		}
	}
	return touching, x.Store.ChangeUTXOs(ctx, inserts, changes)
}

// pendingState is the chain state the mempool gives a stored UTXO: spent by
// a pending transaction, available, or invalidated once its own pending
// creator is gone; ok is false when that is what it has.
func pendingState(r storage.UTXO, mempool map[string]*chain.Tx, spenders []string) (storage.UTXOChange, bool) {
	c := storage.UTXOChange{PoolID: r.PoolID, Hash: r.Hash, State: r.State, SpentTx: r.SpentTx, SpentHeight: r.SpentHeight}
	live := r.Confirmed || mempool[r.CreatedTx] != nil
	switch {
	case !live:
		c.State, c.SpentTx, c.SpentHeight = storage.StateInvalidated, "", 0
	case r.State == storage.StateImmature, r.State == storage.StateSpent && r.SpentHeight > 0:
		// final, or not the mempool's business
	case len(spenders) > 0:
		c.State, c.SpentHeight = storage.StateSpent, 0
		if !slices.Contains(spenders, r.SpentTx) {
			c.SpentTx = spenders[0]
		}
	default:
		c.State, c.SpentTx, c.SpentHeight = storage.StateAvailable, "", 0
	}
	return c, c.State != r.State || c.SpentTx != r.SpentTx || c.SpentHeight != r.SpentHeight
}

func poolIDs(pools []storage.Pool) []int64 {
	out := make([]int64, len(pools))
	for i, p := range pools {
		out[i] = p.ID
	}
	return out
}

// DefaultProgressEvery is how often long operations (a backfill, rebuilds)
// log their progress.
const DefaultProgressEvery = 5 * time.Second

// backfillProgress is what a backfill did since it started and since it last
// logged.
type backfillProgress struct {
	from     int64     // the lowest height the backfill started from
	started  time.Time // zero: no backfill under way
	reported time.Time
	blocks   int // applied since reported
}

// reportBackfill counts a batch of blocks applied from height low up to
// height (the chain's tip being tip, groups the pool positions behind it)
// and, every x.ProgressEvery, logs how far the backfill got: a "progress"
// record, which a terminal shows as one updating line.
func (x *chainIndex) reportBackfill(start time.Time, low, height, tip int64, blocks, groups int) {
	b := &x.backfill
	if b.started.IsZero() {
		*b = backfillProgress{from: low, started: start, reported: start}
	}
	b.from = min(b.from, low)
	b.blocks += blocks
	now := time.Now()
	every := cmp.Or(x.ProgressEvery, DefaultProgressEvery)
	if now.Sub(b.reported) < every {
		return
	}
	pct := 100.0
	if tip > b.from {
		pct = float64(height-b.from) / float64(tip-b.from) * 100
	}
	rate := float64(b.blocks) / now.Sub(b.reported).Seconds()
	x.logger().Info("index backfill", "progress", fmt.Sprintf("%.1f%%", pct), "height", height, "tip", tip,
		"behind", tip-height, "position_groups", groups, "blocks_per_second", math.Round(rate*10)/10,
		"elapsed", now.Sub(b.started).Round(time.Second).String())
	b.reported, b.blocks = now, 0
}

func (x *chainIndex) logger() *slog.Logger {
	if x.Log != nil {
		return x.Log
	}
	return slog.Default()
}
