package syncer_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
)

// The chain index records, for each pool, every transaction of a block that
// spends one of its UTXOs (GET /v1/transactions), with the addresses and
// amounts of its inputs and outputs; a pending one is not history yet.
func TestIndexRecordsTheHistoryOfPoolUTXOs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	s := newSource(t, f, "bytomd")
	prog, other := program("history"), program("other")
	hashes, err := f.chain.AddUTXOs(asset, prog, amounts(3))
	if err != nil {
		t.Fatal(err)
	}
	others, err := f.chain.AddUTXOs(asset, other, amounts(1))
	if err != nil {
		t.Fatal(err)
	}
	p := s.pool(t, asset, prog)
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	s.pass(t)
	spend, outs, err := f.chain.Spend(hashes[:1], []sim.Output{{Asset: asset, Program: other, Amount: 700},
		{Asset: asset, Program: prog, Amount: 300}}, false)
	if err != nil {
		t.Fatal(err)
	}
	// A transaction that spends no UTXO of the pool is none of its history.
	if _, _, err := f.chain.Spend(others, []sim.Output{{Asset: asset, Program: other, Amount: 1000}}, false); err != nil {
		t.Fatal(err)
	}
	s.pass(t)
	if txs, err := f.store.ListTransactions(ctx, p.ID, "", 0, 10); err != nil || len(txs) != 0 {
		t.Fatalf("a pending transaction is in the history: %+v %v", txs, err)
	}
	if st := utxoState(t, f, hashes[0]); st != storage.StateSpent {
		t.Fatalf("a UTXO a pending transaction spends is %s, want spent", st)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	if res := s.pass(t); res.Blocks != 1 || res.Reorgs != 0 {
		t.Fatalf("pass over one block: %+v", res)
	}
	txs, err := f.store.ListTransactions(ctx, p.ID, "", 0, 10)
	if err != nil || len(txs) != 1 {
		t.Fatalf("recorded: %+v %v", txs, err)
	}
	got := txs[0]
	tip := f.chain.Tip()
	blk, err := f.chain.Block(tip.Height)
	if err != nil {
		t.Fatal(err)
	}
	if got.TxID != spend || got.Height != int64(tip.Height) || got.BlockHash != tip.BlockHash || got.StatusFail ||
		!got.BlockTime.Equal(blk.Time) {
		t.Fatalf("recorded %+v, want %s in block %d %s at %s", got, spend, tip.Height, tip.BlockHash, blk.Time)
	}
	in, err := storage.DecodeTxIOs(got.Inputs)
	if err != nil {
		t.Fatal(err)
	}
	out, err := storage.DecodeTxIOs(got.Outputs)
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 1 || in[0].UTXO != hashes[0] || in[0].Amount != 1000 || in[0].Asset != asset || in[0].Address != sim.Address(prog) ||
		len(out) != 2 || out[0].Address != sim.Address(other) || out[0].Amount != 700 || out[0].UTXO != outs[0] ||
		out[1].Address != sim.Address(prog) || out[1].Amount != 300 || out[1].UTXO != outs[1] {
		t.Fatalf("inputs %+v outputs %+v", in, out)
	}
	// The address of any input or output finds it; another does not.
	for addr, want := range map[string]int{sim.Address(other): 1, sim.Address(prog): 1, "bm1qnobody": 0} {
		if txs, err := f.store.ListTransactions(ctx, p.ID, addr, 0, 10); err != nil || len(txs) != want {
			t.Errorf("by address %s: %d transactions, %v; want %d", addr, len(txs), err, want)
		}
	}
	us, err := f.store.GetUTXOs(ctx, []string{hashes[0], outs[1]})
	if err != nil || len(us) != 2 {
		t.Fatalf("utxos: %+v %v", us, err)
	}
	if u := us[0]; u.State != storage.StateSpent || u.SpentTx != spend || u.SpentHeight != int64(tip.Height) {
		t.Fatalf("spent utxo: %+v", u)
	}
	if u := us[1]; u.State != storage.StateAvailable || !u.Confirmed || u.Height != int64(tip.Height) || u.CreatedTx != spend || u.Amount != 300 {
		t.Fatalf("the change: %+v", u)
	}
	f.checkNoneLost(t, p, nil)

	// A new index (a restart) continues from the pools' cursors.
	s2 := newSource(t, f, "bytomd")
	if res := s2.pass(t); res.Blocks != 0 {
		t.Fatalf("a new index applied %d blocks again", res.Blocks)
	}
	if _, err := f.chain.Mine(2); err != nil {
		t.Fatal(err)
	}
	if res := s2.pass(t); res.Blocks != 2 {
		t.Fatalf("index after 2 blocks applied %d", res.Blocks)
	}

	// status_fail moves BTM: the failed transaction is recorded as failed,
	// and still spends its BTM input and creates its BTM output.
	failed, failedOuts, err := f.chain.Spend(hashes[1:2], []sim.Output{{Asset: asset, Program: prog, Amount: 500}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	s2.pass(t)
	txs, err = f.store.ListTransactions(ctx, p.ID, "", 0, 10)
	if err != nil || len(txs) != 2 || txs[0].TxID != failed || !txs[0].StatusFail || txs[1].TxID != spend {
		t.Fatalf("history after a failed BTM transaction: %+v %v", txs, err)
	}
	if st := utxoState(t, f, hashes[1]); st != storage.StateSpent {
		t.Errorf("the input of a failed BTM transaction is %s, want spent", st)
	}
	if st := utxoState(t, f, failedOuts[0]); st != storage.StateAvailable {
		t.Errorf("the output of a failed BTM transaction is %s, want available", st)
	}
	f.checkNoneLost(t, p, nil)

	// An issued asset: a failed transaction moves none of it. It is in the
	// history, failed; its input stays unspent, its output never exists.
	gh, err := f.chain.AddUTXOs(gold, contract, []uint64{7, 8})
	if err != nil {
		t.Fatal(err)
	}
	g := s2.pool(t, gold, contract)
	gfail, gouts, err := f.chain.Spend(gh[:1], []sim.Output{{Asset: gold, Program: contract, Amount: 6}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	s2.pass(t)
	gtxs, err := f.store.ListTransactions(ctx, g.ID, "", 0, 10)
	if err != nil || len(gtxs) != 1 || gtxs[0].TxID != gfail || !gtxs[0].StatusFail {
		t.Fatalf("history of the issued asset: %+v %v", gtxs, err)
	}
	if st := utxoState(t, f, gh[0]); st != storage.StateAvailable {
		t.Errorf("the input of a failed transaction of an issued asset is %s, want available", st)
	}
	if us, err := f.store.GetUTXOs(ctx, gouts); err != nil || len(us) != 0 {
		t.Errorf("the output of a failed transaction of an issued asset is stored: %+v %v", us, err)
	}
	f.checkNoneLost(t, g, nil)
	f.checkNoneLost(t, p, nil)
}

// After a depth-2 reorganisation the index rolls back to the fork and
// applies the new branch: the history and the UTXOs stored (live and spent)
// equal those of a fresh database indexed on the final chain, and so does
// what Redis offers.
func TestIndexFollowsADepth2ReorgLikeAFreshDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	s := newSource(t, f, "bytomd")
	prog := program("reorg history")
	hashes, err := f.chain.AddUTXOs(asset, prog, amounts(6))
	if err != nil {
		t.Fatal(err)
	}
	gh, err := f.chain.AddUTXOs(gold, contract, amounts(2))
	if err != nil {
		t.Fatal(err)
	}
	p := s.pool(t, asset, prog)
	g := s.pool(t, gold, contract)
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	out := func(amount uint64) []sim.Output { return []sim.Output{{Asset: asset, Program: prog, Amount: amount}} }
	// Two blocks, each with a spend of the pool, the second also with a
	// spend of the first's change and two transactions that fail (one moves
	// its BTM, the other moves no gold).
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
	if _, _, err := f.chain.Spend(hashes[2:3], out(100), true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.chain.Spend(gh[:1], []sim.Output{{Asset: gold, Program: contract, Amount: 5}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	s.pass(t)
	if txs, err := f.store.ListTransactions(ctx, p.ID, "", 0, 10); err != nil || len(txs) != 3 {
		t.Fatalf("before the reorg: %d transactions (%v), want 3", len(txs), err)
	}

	// The last two blocks are replaced; their transactions go back to the
	// mempool and are mined again in the new branch, then another spend.
	if _, err := f.chain.Reorg(2, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.chain.Spend(hashes[3:4], out(50), false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	if res := s.pass(t); res.Reorgs != 1 {
		t.Fatalf("after the reorg: %+v, want 1 reorganisation", res)
	}
	// Every recorded transaction is in a block of the final chain.
	txs, err := f.store.ListTransactions(ctx, p.ID, "", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, tx := range txs {
		if blk, err := f.chain.Block(uint64(tx.Height)); err != nil || blk.Hash != tx.BlockHash {
			t.Errorf("%s recorded in block %d %s, not a block of the final chain", tx.TxID[:8], tx.Height, tx.BlockHash[:8])
		}
	}

	fresh, freshLocks, fps := freshIndex(t, f, [2]string{asset, prog}, [2]string{gold, contract})
	for i, pool := range []storage.Pool{p, g} {
		got, want := historyOf(t, f.store, pool.ID), historyOf(t, fresh, fps[i].ID)
		if got != want {
			t.Errorf("pool %s: after the reorg the history differs from a fresh index:\ngot  %s\nwant %s", pool.Asset[:4], got, want)
		}
		if n := []int{4, 1}[i]; strings.Count(want, "tx ") != n {
			t.Errorf("pool %s: want %d transactions in the final history:\n%s", pool.Asset[:4], n, want)
		}
		items, err := freshLocks.ListAvailable(ctx, fps[i].ID, false, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var offered []string
		for _, it := range items {
			offered = append(offered, it.Hash)
		}
		slices.Sort(offered)
		if free := f.reservable(t, pool.ID); !slices.Equal(free, offered) {
			t.Errorf("pool %s: reservable %v, a fresh index offers %v", pool.Asset[:4], free, offered)
		}
		checkSpentRecorded(t, f.store, pool)
		f.checkNoneLost(t, pool, nil)
	}
}

// checkSpentRecorded checks that each UTXO of the pool spent in a block is
// marked with a transaction the history has at that height, one that moves
// the pool's asset.
func checkSpentRecorded(t *testing.T, s *storage.Store, pool storage.Pool) {
	t.Helper()
	ctx := context.Background()
	txs, err := s.ListTransactions(ctx, pool.ID, "", 0, storage.MaxListLimit)
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]storage.Transaction{}
	for _, tx := range txs {
		recorded[tx.TxID] = tx
	}
	spent, err := s.PoolUTXOsByState(ctx, pool.ID, storage.StateSpent)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range spent {
		if u.SpentHeight == 0 {
			continue // spent in the mempool
		}
		tx, ok := recorded[u.SpentTx]
		if !ok || tx.Height != u.SpentHeight || tx.StatusFail && pool.Asset != asset {
			t.Errorf("spent utxo %s is marked with %q at height %d, not a recorded transaction that moves it (%+v)",
				u.Hash[:8], u.SpentTx, u.SpentHeight, tx)
		}
	}
}

// A reorganisation deeper than the blocks the index remembers
// (storage.ReorgWindow) rolls the index back to the oldest block it keeps and
// applies the new branch from there: what the abandoned blocks of the window
// did is undone. Here the abandoned blocks' transactions vanish (drop), and
// the only one touching the pool is in the window.
func TestIndexFollowsAReorgDeeperThanTheWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	s := newSource(t, f, "bytomd")
	prog := program("deep reorg")
	hashes, err := f.chain.AddUTXOs(asset, prog, []uint64{10, 20, 30}) // height 1: on both branches
	if err != nil {
		t.Fatal(err)
	}
	p := s.pool(t, asset, prog)
	const depth = storage.ReorgWindow + 20
	if _, err := f.chain.Mine(depth + 20); err != nil {
		t.Fatal(err)
	}
	// A spend five blocks below the tip: in the window, above the fork.
	_, change, err := f.chain.Spend(hashes[:1], []sim.Output{{Asset: asset, Program: prog, Amount: 9}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(5); err != nil {
		t.Fatal(err)
	}
	s.catchUp(t)
	old := f.chain.Tip()
	if st := utxoState(t, f, hashes[0]); st != storage.StateSpent {
		t.Fatalf("before the reorg the spent UTXO is %s", st)
	}
	if _, err := f.chain.Reorg(depth, true); err != nil {
		t.Fatal(err)
	}
	// And a spend in the new branch.
	spend, _, err := f.chain.Spend(hashes[1:2], []sim.Output{{Asset: asset, Program: program("payee"), Amount: 20}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	tip := f.chain.Tip()
	res := s.catchUp(t)
	if res.Reorgs != 1 || res.Tip != tip.Height {
		t.Fatalf("pass after a reorganisation of %d blocks: %+v", depth, res)
	}
	// Back to the fork point itself, found past the window by bisection.
	if want := int(tip.Height - (old.Height - depth)); res.Blocks != want {
		t.Errorf("applied %d blocks, want %d (from the fork point)", res.Blocks, want)
	}
	cur, err := f.store.IndexCursors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := cur[p.ID]; c.Height != int64(tip.Height) || c.BlockHash != tip.BlockHash {
		t.Fatalf("cursor %d %s, want the new tip %d %s", c.Height, c.BlockHash, tip.Height, tip.BlockHash)
	}
	known, err := f.store.IndexedHashes(ctx, int64(tip.Height)-storage.ReorgWindow+1, int64(tip.Height))
	if err != nil {
		t.Fatal(err)
	}
	for h, hash := range known {
		if blk, err := f.chain.Block(uint64(h)); err != nil || blk.Hash != hash {
			t.Fatalf("the index remembers block %d as %s, the chain has another", h, hash[:8])
		}
	}
	if st := utxoState(t, f, hashes[0]); st != storage.StateAvailable {
		t.Errorf("a UTXO whose spend the reorganisation abandoned is %s, want available", st)
	}
	if st := utxoState(t, f, change[0]); st != storage.StateInvalidated {
		t.Errorf("the output of the abandoned spend is %s, want invalidated", st)
	}
	if st := utxoState(t, f, hashes[1]); st != storage.StateSpent {
		t.Errorf("a UTXO the new branch spends is %s, want spent", st)
	}
	txs, err := f.store.ListTransactions(ctx, p.ID, "", 0, 10)
	if err != nil || len(txs) != 1 || txs[0].TxID != spend {
		t.Errorf("history after the reorganisation: %+v %v, want only the new branch's spend", txs, err)
	}
	f.checkNoneLost(t, p, nil)
	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hashes[:1]}); err != nil {
		t.Errorf("the UTXO the reorganisation gave back is not reservable: %v", err)
	}
	// A fresh index of the final chain stores the same, but for the
	// invalidated output it never saw.
	fresh, _, fps := freshIndex(t, f, [2]string{asset, prog})
	live := []string{storage.StateAvailable, storage.StateImmature, storage.StateSpent}
	if got, want := historyOf(t, f.store, p.ID, live...), historyOf(t, fresh, fps[0].ID, live...); got != want {
		t.Errorf("after the reorg the index differs from a fresh one:\ngot  %s\nwant %s", got, want)
	}
	// And it goes on.
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	if res := s.pass(t); res.Blocks != 1 || res.Reorgs != 0 {
		t.Fatalf("the next block: %+v", res)
	}
}

// A reorganisation deeper than the window whose abandoned transactions the
// new branch mines again, below the window: the index re-applies them from
// the fork point and ends where a fresh index of the final chain does.
func TestIndexReappliesADeepReorgThatKeepsItsTransactions(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := newSource(t, f, "bytomd")
	prog := program("deep reorg kept")
	hashes, err := f.chain.AddUTXOs(asset, prog, []uint64{10, 20, 30})
	if err != nil {
		t.Fatal(err)
	}
	p := s.pool(t, asset, prog)
	const depth = storage.ReorgWindow + 30
	if _, err := f.chain.Mine(10 + depth - 5); err != nil {
		t.Fatal(err)
	}
	// Spent near the tip, in the window, with its change back into the pool.
	_, change, err := f.chain.Spend(hashes[:1], []sim.Output{{Asset: asset, Program: prog, Amount: 9}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(5); err != nil {
		t.Fatal(err)
	}
	s.catchUp(t)
	// The new branch mines every abandoned transaction again at once, just
	// above the fork point: far below the window.
	if _, err := f.chain.Reorg(depth, false); err != nil {
		t.Fatal(err)
	}
	s.catchUp(t)
	if st := utxoState(t, f, hashes[0]); st != storage.StateSpent {
		t.Errorf("a UTXO spent on both branches is %s, want spent", st)
	}
	if st := utxoState(t, f, change[0]); st != storage.StateAvailable {
		t.Errorf("an output created on both branches is %s, want available", st)
	}
	fresh, _, fps := freshIndex(t, f, [2]string{asset, prog})
	all := []string{storage.StateAvailable, storage.StateImmature, storage.StateSpent, storage.StateInvalidated}
	if got, want := historyOf(t, f.store, p.ID, all...), historyOf(t, fresh, fps[0].ID, all...); got != want {
		t.Errorf("after the reorg the index differs from a fresh one:\ngot  %s\nwant %s", got, want)
	}
	f.checkNoneLost(t, p, nil)
}
