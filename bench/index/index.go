// Package index measures the chain index of a node-backed syncer: how many
// blocks a second it applies (the backfill rate) and how long a block's
// outputs take to become reservable once the block appears (the steady-state
// latency), against the simulated chain serving the bytomd routes over HTTP
// on loopback, with PostgreSQL and Redis as in production.
//
// The simulated chain runs in this process; the index runs in this process
// too, with the code `bufferd syncer` runs (syncer.Jobs.ForTerm), so the
// measure is of the index and its stores, not of the leader election. All of
// them share the machine's CPUs with PostgreSQL and Redis.
package index

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/internal/connset"
	"github.com/bufferd/bufferd/internal/scratchdb"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// Defaults of Options.
const (
	DefaultPools        = 10
	DefaultTxsPerBlock  = 100
	DefaultBlocks       = 2000
	DefaultLatencyRuns  = 100
	DefaultBlockEvery   = 300 * time.Millisecond
	defaultUTXOsPerPool = 1000
	DefaultPoolShare    = 1.0
)

// Errors of a run.
var (
	// errTimeout means the index did not catch up in time.
	errTimeout = errors.New("index: the index did not reach the tip in time")
	// errWrongIndex means the index does not hold what the chain has.
	errWrongIndex = errors.New("index: the index disagrees with the chain")
)

// Options describe a run.
type Options struct {
	// DatabaseURL names a PostgreSQL server; the run gets a fresh database
	// there, dropped at the end. RedisURL is the Redis it uses, under a key
	// prefix of its own.
	DatabaseURL, RedisURL string
	// Pools registered (each a BTM pool on a P2WSH program), transactions per
	// block, blocks of the backfill, and blocks mined one by one for the
	// latency, one every BlockEvery.
	Pools, TxsPerBlock, Blocks, LatencyRuns int
	BlockEvery                              time.Duration
	// PoolShare is the share of a block's transactions that touch a pool
	// (0 < PoolShare <= 1, at least one a block); the others move BTM between
	// programs no pool watches, which the index reads and skips.
	PoolShare float64
	// Poll is the index's poll interval (0: syncer.DefaultIndexPoll).
	Poll time.Duration
	// CPUProfile, when set, receives a Go CPU profile of this process (the
	// simulated node and the index) during the backfill.
	CPUProfile io.Writer
	Log        *slog.Logger
}

func (o *Options) defaults() {
	if o.Pools <= 0 {
		o.Pools = DefaultPools
	}
	if o.TxsPerBlock <= 0 {
		o.TxsPerBlock = DefaultTxsPerBlock
	}
	if o.Blocks <= 0 {
		o.Blocks = DefaultBlocks
	}
	if o.LatencyRuns <= 0 {
		o.LatencyRuns = DefaultLatencyRuns
	}
	if o.PoolShare <= 0 || o.PoolShare > 1 {
		o.PoolShare = DefaultPoolShare
	}
	// Every block has a pool transaction: the latency is timed on it.
	o.PoolShare = max(o.PoolShare, 1/float64(o.TxsPerBlock))
	if o.BlockEvery <= 0 {
		o.BlockEvery = DefaultBlockEvery
	}
	if o.Poll <= 0 {
		o.Poll = syncer.DefaultIndexPoll
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

// Report is what a run measured; Markdown renders it.
type Report struct {
	pools, txsPerBlock int
	poolShare          float64
	poolTxs            int // transactions of the backfill that touch a pool
	// Backfill: blocks applied in backfillTime.
	blocks       int
	backfillTime time.Duration
	// Latency of each block mined one by one: from the block's appearance to
	// the first of its outputs being reservable, sorted.
	latency []time.Duration
	poll    time.Duration
}

// blocksPerSecond is the backfill rate.
func (r *Report) blocksPerSecond() float64 { return float64(r.blocks) / r.backfillTime.Seconds() }

// percentile returns the q-quantile of the latencies (0 <= q <= 1).
func (r *Report) percentile(q float64) time.Duration {
	if len(r.latency) == 0 {
		return 0
	}
	return r.latency[int(q*float64(len(r.latency)-1)+0.5)]
}

// mainnetYear is how long a backfill of a year of Bytom mainnet (a block
// about every 150 s) would take at the backfill rate.
func (r *Report) mainnetYear() time.Duration {
	blocks := 365 * 24 * 3600 / 150.0
	return time.Duration(blocks / r.blocksPerSecond() * float64(time.Second))
}

// Markdown renders the report.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| figure | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| pools registered | %d |\n", r.pools)
	fmt.Fprintf(&b, "| transactions per block | %d, %.0f%% of them touching a pool |\n", r.txsPerBlock, 100*r.poolShare)
	fmt.Fprintf(&b, "| backfill | %d blocks in %s = **%.0f blocks/s** (%.0f transactions/s, %.0f of them pool transactions) |\n",
		r.blocks, r.backfillTime.Round(time.Millisecond), r.blocksPerSecond(), r.blocksPerSecond()*float64(r.txsPerBlock),
		float64(r.poolTxs)/r.backfillTime.Seconds())
	fmt.Fprintf(&b, "| a year of mainnet (~210,000 blocks) at that rate | %s |\n", r.mainnetYear().Round(time.Second))
	fmt.Fprintf(&b, "| block -> reservable, %d blocks, poll %s | p50 %s, p99 **%s**, max %s |\n", len(r.latency), r.poll,
		r.percentile(0.5).Round(time.Millisecond), r.percentile(0.99).Round(time.Millisecond),
		r.percentile(1).Round(time.Millisecond))
	return b.String()
}

// Run builds the chain, backfills it and measures the latency.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	scratch, err := scratchdb.Create(ctx, o.DatabaseURL, scratchdb.Name("bufferd_bench_index_"))
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	defer scratch.Discard()
	db := scratch.URL
	if err := storage.MigrateUp(ctx, db); err != nil {
		return nil, err
	}
	store, err := storage.Open(ctx, db, storage.WithMaxConns(8))
	if err != nil {
		return nil, err
	}
	defer func() { _ = store.Close() }()
	ropt, err := redis.ParseURL(o.RedisURL)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(ropt)
	defer func() { _ = rdb.Close() }()
	prefix := "benchindex" + randomHex(4) + ":"
	defer deleteKeys(rdb, prefix)
	journal := storage.NewJournal(store, storage.JournalOptions{})
	defer journal.Close()
	locks := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix, Journal: journal})

	ch := sim.New()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	app := ch.Handler()
	// The index's client may keep a connection open that never sent a
	// request, which the node's shutdown would wait for (30 s, in about 2
	// runs of 5): after a drain of in-flight requests, the node closes what
	// is left itself. Closing first would cut a request still being answered
	// (fasthttp panics writing to it).
	var accepted connset.Set
	go func() { _ = app.Listener(accepted.Listener(ln)) }()
	defer func() {
		_ = app.ShutdownWithTimeout(time.Second)
		accepted.CloseAll()
	}()

	programs := p2wshPrograms("bench index pool", o.Pools)
	others := p2wshPrograms("bench index other", o.Pools) // no pool watches them
	b := &builder{ch: ch, programs: append(programs, others...), pools: len(programs), share: o.PoolShare, txs: o.TxsPerBlock}
	if err := b.fund(defaultUTXOsPerPool); err != nil {
		return nil, err
	}
	o.Log.Info("building the chain", "blocks", o.Blocks, "transactions_per_block", o.TxsPerBlock, "pools", o.Pools)
	reported := time.Now()
	for i := 0; i < o.Blocks; i++ {
		if err := b.block(); err != nil {
			return nil, err
		}
		if time.Since(reported) >= syncer.DefaultProgressEvery {
			o.Log.Info("building the chain", "progress", fmt.Sprintf("%d/%d blocks", i+1, o.Blocks))
			reported = time.Now()
		}
	}
	// The node's work is not the index's: its answers are ready, as a node
	// reads its blocks from its store.
	ch.PrepareBlockAnswers()
	pools := make([]storage.Pool, len(programs))
	for i, p := range programs {
		if pools[i], _, err = store.EnsurePool(ctx, chain.BTMAsset, p, storage.PoolOptions{FromHeight: 1}); err != nil {
			return nil, err
		}
	}
	runner := syncer.Jobs{Store: store, Locks: locks, Chain: chain.NewBytomd("http://" + ln.Addr().String()),
		Rebuild: syncer.NewRebuilder(store, locks, rdb, prefix, o.Log), Interval: time.Hour, MaxBackoff: time.Second,
		IndexPoll: o.Poll, SweepInterval: time.Hour, Log: o.Log}.ForTerm(0)

	rep := &Report{pools: o.Pools, txsPerBlock: o.TxsPerBlock, poolShare: o.PoolShare, poll: o.Poll}
	tip := ch.Tip().Height
	if o.CPUProfile != nil {
		if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile() // when the backfill fails; stopping twice is harmless
	}
	start := time.Now()
	for {
		if err := runner.Index(ctx); err != nil {
			return nil, err
		}
		done, err := caughtUp(ctx, store, tip)
		if err != nil {
			return nil, err
		}
		if done {
			break
		}
		if time.Since(start) > 30*time.Minute {
			return nil, errTimeout
		}
	}
	rep.blocks, rep.backfillTime = int(tip), time.Since(start)
	if o.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	o.Log.Info("backfill done", "blocks", rep.blocks, "took", rep.backfillTime.Round(time.Millisecond),
		"blocks_per_second", int(rep.blocksPerSecond()))
	if err := b.check(ctx, store, pools); err != nil {
		return nil, err
	}
	rep.poolTxs = b.touching

	// Steady state: the index polls as in production; a block appears every
	// BlockEvery and a client waits for its first pool output.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		_ = runner.Run(rctx)
	}()
	defer func() {
		cancel()
		<-ran
	}()
	for i := 0; i < o.LatencyRuns; i++ {
		if err := b.block(); err != nil {
			return nil, err
		}
		out, pool := b.lastOutput, pools[slices.Index(programs, b.lastProgram)]
		appeared := time.Now()
		for {
			r, err := locks.Reserve(ctx, lockmgr.Request{PoolID: pool.ID, Hashes: []string{out}, TTL: time.Second})
			if err == nil {
				rep.latency = append(rep.latency, time.Since(appeared))
				if _, err := locks.Release(ctx, pool.ID, r.ID); err != nil {
					return nil, err
				}
				break
			}
			if !errors.Is(err, lockmgr.ErrUnknownUTXO) && !errors.Is(err, lockmgr.ErrRebuilding) {
				return nil, err
			}
			if time.Since(appeared) > time.Minute {
				return nil, fmt.Errorf("%w: block %d", errTimeout, ch.Tip().Height)
			}
			time.Sleep(time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(max(0, o.BlockEvery-time.Since(appeared))):
		}
	}
	slices.Sort(rep.latency)
	return rep, nil
}

// caughtUp reports whether every pool's index reached tip.
func caughtUp(ctx context.Context, store *storage.Store, tip uint64) (bool, error) {
	cur, err := store.IndexCursors(ctx)
	if err != nil {
		return false, err
	}
	pools, err := store.ListPools(ctx)
	if err != nil {
		return false, err
	}
	for _, p := range pools {
		if c, ok := cur[p.ID]; !ok || uint64(c.Height) < tip {
			return false, nil
		}
	}
	return true, nil
}

// builder makes the blocks: a pool transaction spends a UTXO of a pool and
// pays most of it back to the pool (a DApp's state moving on); the others do
// the same between programs no pool watches. programs[:pools] are the pools'.
type builder struct {
	ch          *sim.Chain
	programs    []string
	pools       int
	share       float64
	txs         int
	made        int        // transactions made
	touching    int        // of them, touching a pool
	spent       []int      // pool UTXOs spent, per pool
	free        [][]string // unspent pool UTXOs, per pool
	amounts     map[string]uint64
	next        int
	lastOutput  string
	lastProgram string
}

func (b *builder) fund(n int) error {
	b.free = make([][]string, len(b.programs))
	b.spent = make([]int, b.pools)
	b.amounts = map[string]uint64{}
	amounts := make([]uint64, n)
	for i := range amounts {
		amounts[i] = 1_000_000_000 + uint64(i)
	}
	for i, p := range b.programs {
		hs, err := b.ch.AddUTXOs(chain.BTMAsset, p, amounts)
		if err != nil {
			return err
		}
		b.free[i] = hs
		for j, h := range hs {
			b.amounts[h] = amounts[j]
		}
	}
	return nil
}

// block mines one block of b.txs pool transactions.
func (b *builder) block() error {
	for t := 0; t < b.txs; t++ {
		// Pool transactions are spread evenly: the next one is due when the
		// share of those made so far falls below PoolShare.
		b.made++
		var i int
		if float64(b.touching) < b.share*float64(b.made) {
			i = b.next % b.pools
			b.next++
			b.touching++
			b.spent[i]++
		} else {
			i = b.pools + b.made%(len(b.programs)-b.pools)
		}
		in := b.free[i][0]
		b.free[i] = b.free[i][1:]
		a := b.amounts[in]
		delete(b.amounts, in)
		_, outs, err := b.ch.Spend([]string{in}, []sim.Output{{Asset: chain.BTMAsset, Program: b.programs[i], Amount: a - 1}}, false)
		if err != nil {
			return err
		}
		b.free[i] = append(b.free[i], outs[0])
		b.amounts[outs[0]] = a - 1
		if i < b.pools {
			b.lastOutput, b.lastProgram = outs[0], b.programs[i]
		}
	}
	_, err := b.ch.Mine(1)
	return err
}

// p2wshPrograms makes n P2WSH programs from the hashes of name and their
// number.
func p2wshPrograms(name string, n int) []string {
	out := make([]string, n)
	for i := range out {
		s := sha256.Sum256([]byte(fmt.Sprintf("%s %d", name, i)))
		out[i] = "0020" + hex.EncodeToString(s[:])
	}
	return out
}

// check compares what the index stored for each pool with what the chain
// has: its unspent outputs available, the ones spent spent.
func (b *builder) check(ctx context.Context, store *storage.Store, pools []storage.Pool) error {
	counts, err := store.PoolCounts(ctx)
	if err != nil {
		return err
	}
	for i, p := range pools {
		c := counts[p.ID]
		if c.Available != int64(len(b.free[i])) || c.Spent != int64(b.spent[i]) {
			return fmt.Errorf("%w: pool %d has %d available and %d spent UTXOs, the chain %d and %d",
				errWrongIndex, p.ID, c.Available, c.Spent, len(b.free[i]), b.spent[i])
		}
	}
	return nil
}

func deleteKeys(rdb *redis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
