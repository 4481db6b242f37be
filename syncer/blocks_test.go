package syncer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
	"github.com/bufferd/bufferd/testenv"
)

// node is the chain as a bytomd node serves it: UTXOs, blocks and mempool.
func (f *fixture) node() *chain.Bytomd { return chain.NewBytomd(f.url) }

// crawler crawls f's chain from height 1.
func (f *fixture) crawler(store *storage.Store) *syncer.Crawler {
	n := f.node()
	return &syncer.Crawler{Store: store, Chain: n, Blocks: n, StartHeight: 1}
}

func mustCrawl(t *testing.T, c *syncer.Crawler) syncer.CrawlResult {
	t.Helper()
	res, err := c.Run(context.Background())
	if err != nil {
		t.Fatalf("crawl: %v", err)
	}
	return res
}

func TestCrawlerRecordsTheSpendsOfPoolUTXOs(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	prog, other := program("crawl"), program("other")
	hashes, err := f.chain.AddUTXOs(asset, prog, amounts(3))
	if err != nil {
		t.Fatal(err)
	}
	others, err := f.chain.AddUTXOs(asset, other, amounts(1))
	if err != nil {
		t.Fatal(err)
	}
	p := f.pool(t, prog)
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	if _, err := f.job().SyncPool(ctx, p); err != nil {
		t.Fatal(err)
	}
	spend, _, err := f.chain.Spend(hashes[:1], []sim.Output{{Asset: asset, Program: other, Amount: 700}, {Asset: asset, Program: prog, Amount: 300}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.chain.Spend(others, []sim.Output{{Asset: asset, Program: other, Amount: 1000}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	if _, err := f.job().SyncPool(ctx, p); err != nil {
		t.Fatal(err)
	}
	res := mustCrawl(t, f.crawler(f.store))
	if res.Txs != 1 || res.Reorgs != 0 {
		t.Fatalf("crawl: %+v, want 1 transaction", res)
	}
	txs, err := f.store.ListTransactions(ctx, p.ID, "", 0, 10)
	if err != nil || len(txs) != 1 {
		t.Fatalf("recorded: %v %v", txs, err)
	}
	got := txs[0]
	tip := f.chain.Tip()
	if got.TxID != spend || got.Height != int64(tip.Height) || got.BlockHash != tip.BlockHash || got.StatusFail {
		t.Fatalf("recorded %+v, want %s in block %d %s", got, spend, tip.Height, tip.BlockHash)
	}
	in, _ := storage.DecodeTxIOs(got.Inputs)
	out, _ := storage.DecodeTxIOs(got.Outputs)
	if len(in) != 1 || in[0].UTXO != hashes[0] || in[0].Amount != 1000 || in[0].Asset != asset ||
		len(out) != 2 || out[0].Address != sim.Address(other) || out[0].Amount != 700 || out[1].Address != sim.Address(prog) {
		t.Fatalf("inputs %+v outputs %+v", in, out)
	}
	// The address of any input or output finds it; another does not.
	for addr, want := range map[string]int{sim.Address(other): 1, sim.Address(prog): 1, "bm1qnobody": 0} {
		if txs, err := f.store.ListTransactions(ctx, p.ID, addr, 0, 10); err != nil || len(txs) != want {
			t.Errorf("by address %s: %d transactions, %v; want %d", addr, len(txs), err, want)
		}
	}
	if us, _ := f.store.GetUTXOs(ctx, hashes[:1]); len(us) != 1 || us[0].SpentTx != spend {
		t.Fatalf("spent utxo: %+v", us)
	}
	// A new crawler continues from the pool's cursor.
	if res := mustCrawl(t, f.crawler(f.store)); res.Blocks != 0 {
		t.Fatalf("second crawl applied %d blocks again", res.Blocks)
	}
	if _, err := f.chain.Mine(2); err != nil {
		t.Fatal(err)
	}
	if res := mustCrawl(t, f.crawler(f.store)); res.Blocks != 2 {
		t.Fatalf("crawl after 2 blocks applied %d", res.Blocks)
	}
}

// After a depth-2 reorganisation the crawler rolls the pool back to the fork
// and applies the new branch: the transactions and UTXOs stored equal those
// of a fresh database synced from scratch against the final chain.
func TestCrawlerFollowsADepth2ReorgLikeAFreshSync(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	prog := program("reorg")
	hashes, err := f.chain.AddUTXOs(asset, prog, amounts(6))
	if err != nil {
		t.Fatal(err)
	}
	p := f.pool(t, prog)
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	out := func(amount int64) []sim.Output { return []sim.Output{{Asset: asset, Program: prog, Amount: amount}} }
	// Two blocks, each with a spend of the pool, the second also with a
	// spend of the first's change.
	_, change, err := f.chain.Spend(hashes[:1], out(400), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.chain.Spend(append(change, hashes[1]), out(900), false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.chain.Spend(hashes[2:3], out(100), true); err != nil { // fails
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	utxo := f.jobOn(f.store, f.locks)
	crawler := f.crawler(f.store)
	if _, err := utxo.SyncPool(ctx, p); err != nil {
		t.Fatal(err)
	}
	before := mustCrawl(t, crawler)
	if before.Txs != 3 {
		t.Fatalf("before the reorg: %+v, want 3 transactions", before)
	}

	// The last two blocks are replaced; their transactions go back to the
	// mempool and are mined again in the new branch, after another spend.
	if _, err := f.chain.Reorg(2, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.chain.Spend(hashes[3:4], out(50), false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	if _, err := utxo.SyncPool(ctx, p); err != nil {
		t.Fatal(err)
	}
	after := mustCrawl(t, crawler)
	if after.Reorgs != 1 || after.RolledBack != 3 {
		t.Fatalf("after the reorg: %+v, want 1 reorg undoing 3 transactions", after)
	}

	// A fresh database synced against the final chain.
	fresh := freshStore(t)
	fp, _, err := fresh.EnsurePool(ctx, asset, prog)
	if err != nil {
		t.Fatal(err)
	}
	rdb, prefix := testenv.Redis(t)
	freshLocks := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix})
	if _, err := f.jobOn(fresh, freshLocks).SyncPool(ctx, fp); err != nil {
		t.Fatal(err)
	}
	mustCrawl(t, f.crawler(fresh))

	got, want := historyOf(t, f.store, p.ID), historyOf(t, fresh, fp.ID)
	if got != want {
		t.Fatalf("after the reorg the history differs from a fresh sync:\ngot  %s\nwant %s", got, want)
	}
	if strings.Count(want, "tx ") != 4 {
		t.Fatalf("want 4 transactions in the final history:\n%s", want)
	}
}

// jobOn is the UTXO sync of f's chain, read as a node, into store and locks.
func (f *fixture) jobOn(store *storage.Store, locks *lockmgr.Manager) *syncer.UTXOSync {
	return &syncer.UTXOSync{Store: store, Locks: locks, Chain: f.node(),
		Rebuild: syncer.NewRebuilder(store, locks, f.rdb, f.prefix, nil)}
}

func freshStore(t *testing.T) *storage.Store {
	t.Helper()
	url := testenv.Postgres(t)
	if err := storage.MigrateUp(context.Background(), url); err != nil {
		t.Fatal(err)
	}
	s, err := storage.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// historyOf renders a pool's recorded transactions and its live UTXOs
// (available, reserved, invalidated), without ids and timestamps. Spent rows
// are left out: a database only has those it saw unspent before, which a
// fresh one never did; each must be marked with a recorded transaction.
func historyOf(t *testing.T, s *storage.Store, poolID int64) string {
	t.Helper()
	ctx := context.Background()
	txs, err := s.ListTransactions(ctx, poolID, "", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, tx := range txs {
		lines = append(lines, fmt.Sprintf("tx %s h%d %s fail=%v in=%s out=%s", tx.TxID, tx.Height, tx.BlockHash, tx.StatusFail, tx.Inputs, tx.Outputs))
	}
	us, err := s.PoolUTXOsByState(ctx, poolID, storage.StateAvailable, storage.StateReserved, storage.StateInvalidated)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		lines = append(lines, fmt.Sprintf("utxo %s %d %s spent_tx=%s", u.Hash, u.Amount, u.State, u.SpentTx))
	}
	spent, err := s.PoolUTXOsByState(ctx, poolID, storage.StateSpent)
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]bool{}
	for _, tx := range txs {
		recorded[tx.TxID] = !tx.StatusFail
	}
	for _, u := range spent {
		if !recorded[u.SpentTx] {
			t.Errorf("spent utxo %s is marked with %q, not a recorded transaction of the final chain", u.Hash, u.SpentTx)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
