package storage_test

import (
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/bufferd/bufferd/storage"
)

// touchedSet renders Touched as pool -> sorted hashes.
func touchedSet(t storage.Touched) map[int64][]string {
	out := map[int64][]string{}
	for p, hs := range t {
		hs = slices.Clone(hs)
		slices.Sort(hs)
		out[p] = slices.Compact(hs)
	}
	return out
}

func sorted(hs ...string) []string {
	hs = slices.Clone(hs)
	slices.Sort(hs)
	return hs
}

func mustCursors(t *testing.T, s *storage.Store) map[int64]storage.SyncCursor {
	t.Helper()
	cs, err := s.IndexCursors(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func mustIndexed(t *testing.T, s *storage.Store, from, to int64) map[int64]string {
	t.Helper()
	hs, err := s.IndexedHashes(testCtx(t), from, to)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

func TestApplyBlocks(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		q := mustPool(t, s, assetA, programB)
		r := mustPool(t, s, assetB, programA)
		h := func(i int) string { return hashOf(1, i) }
		if err := s.SetGenesis(ctx, blockHash(1, 0)); err != nil {
			t.Fatal(err)
		}
		// r is elsewhere on the chain: its cursor stays.
		if err := s.SaveCursor(ctx, storage.SyncCursor{PoolID: r.ID, Job: storage.JobIndex, Height: 3, BlockHash: blockHash(1, 3)}); err != nil {
			t.Fatal(err)
		}
		// The mempool showed two outputs first; one was dropped since.
		mustChange(t, s, []storage.IndexedOutput{output(p, h(1), 11, txOf(1, 1), 0), output(p, h(2), 12, txOf(1, 2), 0),
			output(p, h(3), 13, txOf(1, 3), 5), output(r, hashOf(3, 0), 30, txOf(3, 0), 0)})
		setState(t, s, p.ID, storage.StateInvalidated, h(2))

		b10 := block(1, 10)
		coinbase := output(q, hashOf(2, 0), 50, txOf(2, 0), 10)
		coinbase.State, coinbase.ValidHeight = storage.StateImmature, 110
		b10.Outputs = []storage.IndexedOutput{output(p, h(10), 100, txOf(1, 10), 10), output(p, h(1), 11, txOf(1, 1), 10),
			output(p, h(2), 12, txOf(1, 2), 10), coinbase,
			output(p, hashOf(3, 0), 999, txOf(3, 9), 10)} // r's output claimed for p: left alone
		b11 := block(1, 11)
		b11.Spends = []storage.IndexedSpend{{PoolID: p.ID, Hash: h(3), TxID: txOf(1, 11), Height: 11}}
		b11.Outputs = []storage.IndexedOutput{output(p, h(11), 110, txOf(1, 11), 11)}
		ins := []storage.TxIO{{Address: "bm1qalice", Program: p.Program, Asset: p.Asset, Amount: 13, UTXO: h(3)}}
		outs := []storage.TxIO{{Address: "bm1qbob", Asset: p.Asset, Amount: 110, UTXO: h(11)},
			{Address: "bm1qalice", Asset: assetB, Amount: 1}}
		b11.Txs = map[int64][]storage.CrawledTx{p.ID: {{TxID: txOf(1, 11), Inputs: ins, Outputs: outs}}}

		touched := touchedSet(mustApply(t, s, []int64{p.ID, q.ID}, b10, b11))
		for pool, want := range map[int64][]string{p.ID: {h(10), h(1), h(2), h(11), h(3)}, q.ID: {hashOf(2, 0)}} {
			for _, hash := range want {
				if !slices.Contains(touched[pool], hash) {
					t.Errorf("touched %v lacks %s of pool %d", touched, short(hash), pool)
				}
			}
		}

		// Outputs: stored, confirmed with their block, or back from invalidated.
		for _, c := range []struct {
			hash        string
			pool        int64
			state       string
			height, vh  int64
			amount      uint64
			createdTx   string
			confirmed   bool
			spentAtNil  bool
			spentTx     string
			spentHeight int64
		}{
			{h(10), p.ID, storage.StateAvailable, 10, 0, 100, txOf(1, 10), true, true, "", 0},
			{h(1), p.ID, storage.StateAvailable, 10, 0, 11, txOf(1, 1), true, true, "", 0},
			{h(2), p.ID, storage.StateAvailable, 10, 0, 12, txOf(1, 2), true, true, "", 0},
			{hashOf(2, 0), q.ID, storage.StateImmature, 10, 110, 50, txOf(2, 0), true, true, "", 0},
			{hashOf(3, 0), r.ID, storage.StateAvailable, 0, 0, 30, txOf(3, 0), false, true, "", 0},
			{h(3), p.ID, storage.StateSpent, 5, 0, 13, txOf(1, 3), true, false, txOf(1, 11), 11},
			{h(11), p.ID, storage.StateAvailable, 11, 0, 110, txOf(1, 11), true, true, "", 0},
		} {
			u := mustUTXO(t, s, c.hash)
			if u.PoolID != c.pool || u.State != c.state || u.Height != c.height || u.ValidHeight != c.vh ||
				uint64(u.Amount) != c.amount || u.CreatedTx != c.createdTx || u.Confirmed != c.confirmed ||
				(u.SpentAt == nil) != c.spentAtNil || u.SpentTx != c.spentTx || u.SpentHeight != c.spentHeight {
				t.Errorf("utxo %s = %+v, want %+v", short(c.hash), u, c)
			}
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: 4, Spent: 1}) {
			t.Errorf("pool counts %+v", c)
		}
		if c := mustCounts(t, s, q.ID); c != (storage.Counts{Immature: 1}) {
			t.Errorf("coinbase pool counts %+v", c)
		}

		// History: the pool's transactions with their addresses.
		txs, err := s.ListTransactions(ctx, p.ID, "", 0, 10)
		if err != nil || len(txs) != 1 {
			t.Fatalf("ListTransactions = %+v, %v", txs, err)
		}
		tx := txs[0]
		if tx.TxID != txOf(1, 11) || tx.Height != 11 || tx.BlockHash != blockHash(1, 11) || !tx.BlockTime.Equal(b11.Header.Time) ||
			tx.StatusFail || tx.PoolID != p.ID {
			t.Errorf("recorded transaction %+v", tx)
		}
		if got, err := storage.DecodeTxIOs(tx.Inputs); err != nil || !slices.Equal(got, ins) {
			t.Errorf("inputs = %+v, %v", got, err)
		}
		if got, err := storage.DecodeTxIOs(tx.Outputs); err != nil || !slices.Equal(got, outs) {
			t.Errorf("outputs = %+v, %v", got, err)
		}
		for addr, want := range map[string]int{"bm1qalice": 1, "bm1qbob": 1, "bm1qnobody": 0} {
			if got, err := s.ListTransactions(ctx, p.ID, addr, 0, 10); err != nil || len(got) != want {
				t.Errorf("ListTransactions(%s) = %d, %v; want %d", addr, len(got), err, want)
			}
		}
		if got, _ := s.ListTransactions(ctx, q.ID, "", 0, 10); len(got) != 0 {
			t.Errorf("pool q has history %+v", got)
		}

		// Cursors of the given pools only; the blocks remembered.
		cs := mustCursors(t, s)
		for _, pool := range []int64{p.ID, q.ID} {
			if c := cs[pool]; c.Height != 11 || c.BlockHash != blockHash(1, 11) || c.LastSuccess == nil || c.Job != storage.JobIndex {
				t.Errorf("cursor of pool %d: %+v", pool, c)
			}
		}
		if c := cs[r.ID]; c.Height != 3 || c.BlockHash != blockHash(1, 3) {
			t.Errorf("cursor of pool r moved: %+v", c)
		}
		if got := mustIndexed(t, s, 0, 100); !maps.Equal(got, map[int64]string{0: blockHash(1, 0), 10: blockHash(1, 10), 11: blockHash(1, 11)}) {
			t.Errorf("indexed blocks %v", got)
		}

		// A transaction recorded before is not recorded twice, and the new one
		// beside it gets its own addresses.
		b12 := block(1, 12)
		b12.Txs = map[int64][]storage.CrawledTx{p.ID: {{TxID: txOf(1, 11), Inputs: ins},
			{TxID: txOf(1, 12), StatusFail: true, Outputs: []storage.TxIO{{Address: "bm1qcarol", Asset: p.Asset, Amount: 1}}}}}
		mustApply(t, s, []int64{p.ID}, b12)
		if got, err := s.ListTransactions(ctx, p.ID, "bm1qcarol", 0, 10); err != nil || len(got) != 1 || got[0].TxID != txOf(1, 12) ||
			!got[0].StatusFail || got[0].Height != 12 {
			t.Errorf("ListTransactions(carol) = %+v, %v", got, err)
		}
		if got, err := s.ListTransactions(ctx, p.ID, "bm1qalice", 0, 10); err != nil || len(got) != 1 || got[0].Height != 11 {
			t.Errorf("ListTransactions(alice) = %+v, %v; want the first record only", got, err)
		}
		if c := mustCursors(t, s)[q.ID]; c.Height != 11 {
			t.Errorf("pool q's cursor moved with a block applied to p only: %+v", c)
		}

		// The index remembers every block it applied (a reorganisation's
		// fork point is found however deep), and the lowest of them.
		last := int64(12 + storage.ReorgWindow + 5)
		mustApply(t, s, []int64{p.ID}, block(1, last))
		if got := mustIndexed(t, s, 0, 1000); !slices.Equal(slices.Sorted(maps.Keys(got)), []int64{0, 10, 11, 12, last}) {
			t.Errorf("after block %d: indexed %v; want 0, 10-12 and it", last, got)
		}
		if low, ok, err := s.LowestIndexed(ctx); err != nil || !ok || low != 10 {
			t.Errorf("LowestIndexed = %d %v %v, want 10", low, ok, err)
		}

		// Bad input.
		for name, blocks := range map[string][]storage.IndexedBlock{
			"a gap":        {block(1, 300), block(1, 302)},
			"no hash":      {{Header: storage.BlockHeader{Height: 300}}},
			"out of order": {block(1, 301), block(1, 300)},
		} {
			if _, err := s.ApplyBlocks(ctx, []int64{p.ID}, blocks); !errors.Is(err, storage.ErrInvalidArgument) {
				t.Errorf("ApplyBlocks(%s): err = %v, want ErrInvalidArgument", name, err)
			}
		}
		for _, c := range []struct {
			pools  []int64
			blocks []storage.IndexedBlock
		}{{nil, []storage.IndexedBlock{block(1, 300)}}, {[]int64{p.ID}, nil}} {
			if got, err := s.ApplyBlocks(ctx, c.pools, c.blocks); err != nil || len(got) != 0 {
				t.Errorf("ApplyBlocks(%v, %d blocks) = %v, %v; want nothing", c.pools, len(c.blocks), got, err)
			}
		}
		if c := mustCursors(t, s)[p.ID]; c.Height != last {
			t.Errorf("refused ApplyBlocks moved the cursor: %+v", c)
		}
	})
}

func TestRollbackIndex(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		q := mustPool(t, s, assetA, programB)
		r := mustPool(t, s, assetB, programA)
		h := func(i int) string { return hashOf(1, i) }
		var blocks []storage.IndexedBlock
		for i := int64(1); i <= 5; i++ {
			b := block(1, i)
			b.Outputs = []storage.IndexedOutput{output(p, h(int(i)), uint64(i), txOf(1, int(i)), i)}
			blocks = append(blocks, b)
		}
		blocks[2].Spends = []storage.IndexedSpend{{PoolID: p.ID, Hash: h(1), TxID: txOf(1, 33), Height: 3}}
		blocks[2].Txs = map[int64][]storage.CrawledTx{p.ID: {{TxID: txOf(1, 33)}}}
		blocks[3].Txs = map[int64][]storage.CrawledTx{q.ID: {{TxID: txOf(2, 44)}}}
		blocks[4].Spends = []storage.IndexedSpend{{PoolID: p.ID, Hash: h(2), TxID: txOf(1, 55), Height: 5}}
		blocks[4].Txs = map[int64][]storage.CrawledTx{p.ID: {{TxID: txOf(1, 55)}}}
		blocks[4].Outputs = append(blocks[4].Outputs, output(q, hashOf(2, 5), 25, txOf(2, 5), 5))
		mustApply(t, s, []int64{p.ID, q.ID}, blocks...)
		spend(t, s, p.ID, txOf(1, 99), 0, h(3)) // a pending spend (the mempool's)
		if err := s.SaveCursor(ctx, storage.SyncCursor{PoolID: r.ID, Job: storage.JobIndex, Height: 2, BlockHash: blockHash(1, 2)}); err != nil {
			t.Fatal(err)
		}
		// Another job's cursor is not the index's.
		if err := s.SaveCursor(ctx, storage.SyncCursor{PoolID: p.ID, Job: "utxo", Height: 5}); err != nil {
			t.Fatal(err)
		}

		touched, err := s.RollbackIndex(ctx, 3, blockHash(1, 3))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := touchedSet(touched), map[int64][]string{p.ID: sorted(h(4), h(5), h(2)), q.ID: {hashOf(2, 5)}}; !maps.EqualFunc(got, want, slices.Equal) {
			t.Errorf("touched %v, want %v", got, want)
		}
		// Above the fork: outputs pending again, spends pending again (the
		// mempool overlay decides); at or below it: as they were.
		for _, c := range []struct {
			hash        string
			state       string
			confirmed   bool
			height      int64
			spentTx     string
			spentHeight int64
		}{
			{h(1), storage.StateSpent, true, 1, txOf(1, 33), 3},
			{h(2), storage.StateSpent, true, 2, txOf(1, 55), 0},
			{h(3), storage.StateSpent, true, 3, txOf(1, 99), 0},
			{h(4), storage.StateAvailable, false, 0, "", 0},
			{h(5), storage.StateAvailable, false, 0, "", 0},
			{hashOf(2, 5), storage.StateAvailable, false, 0, "", 0},
		} {
			u := mustUTXO(t, s, c.hash)
			if u.State != c.state || u.Confirmed != c.confirmed || u.Height != c.height || u.SpentTx != c.spentTx ||
				u.SpentHeight != c.spentHeight {
				t.Errorf("after rollback %s = %+v, want %+v", short(c.hash), u, c)
			}
		}
		if got, _ := s.ListTransactions(ctx, p.ID, "", 0, 10); len(got) != 1 || got[0].TxID != txOf(1, 33) {
			t.Errorf("history of p after rollback: %+v; want the transaction of block 3 only", got)
		}
		if got, _ := s.ListTransactions(ctx, q.ID, "", 0, 10); len(got) != 0 {
			t.Errorf("history of q after rollback: %+v", got)
		}
		if got := mustIndexed(t, s, 0, 10); !maps.Equal(got, map[int64]string{1: blockHash(1, 1), 2: blockHash(1, 2), 3: blockHash(1, 3)}) {
			t.Errorf("indexed after rollback: %v", got)
		}
		cs := mustCursors(t, s)
		for _, pool := range []int64{p.ID, q.ID} {
			if c := cs[pool]; c.Height != 3 || c.BlockHash != blockHash(1, 3) {
				t.Errorf("cursor of pool %d after rollback: %+v", pool, c)
			}
		}
		if c := cs[r.ID]; c.Height != 2 || c.BlockHash != blockHash(1, 2) {
			t.Errorf("cursor below the fork moved: %+v", c)
		}
		if c, err := s.Cursor(ctx, p.ID, "utxo"); err != nil || c.Height != 5 {
			t.Errorf("another job's cursor: %+v, %v", c, err)
		}

		// What the mempool overlay looks at: the pending outputs and spends.
		rows, err := s.MempoolRows(ctx, []int64{p.ID}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := hashesOfUTXOs(rows); !slices.Equal(got, sorted(h(2), h(3), h(4), h(5))) {
			t.Errorf("MempoolRows after rollback = %v", got)
		}

		// Again at the same fork: nothing above it any more.
		if touched, err := s.RollbackIndex(ctx, 3, blockHash(1, 3)); err != nil || touched.Len() != 0 {
			t.Errorf("second rollback touched %v, %v", touched, err)
		}
		// The other branch applies on top of the fork, confirming the
		// outputs it has too.
		b4 := block(2, 4)
		b4.Header.PreviousHash = blockHash(1, 3)
		b4.Outputs = []storage.IndexedOutput{output(p, h(4), 4, txOf(1, 4), 4)}
		mustApply(t, s, []int64{p.ID, q.ID}, b4)
		if u := mustUTXO(t, s, h(4)); !u.Confirmed || u.Height != 4 {
			t.Errorf("output confirmed again on the new branch: %+v", u)
		}
		if got := mustIndexed(t, s, 4, 5); !maps.Equal(got, map[int64]string{4: blockHash(2, 4)}) {
			t.Errorf("indexed on the new branch: %v", got)
		}
	})
}

func TestMatureUTXOs(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		q := mustPool(t, s, assetA, programB)
		coin := func(pool storage.Pool, hash string, height int64) storage.IndexedOutput {
			o := output(pool, hash, 50, txOf(9, int(height)), height)
			o.State, o.ValidHeight = storage.StateImmature, height+100
			return o
		}
		mustChange(t, s, []storage.IndexedOutput{coin(p, hashOf(1, 0), 10), coin(q, hashOf(2, 0), 20),
			output(p, hashOf(1, 1), 5, txOf(1, 1), 10)})
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: 1, Immature: 1}) {
			t.Errorf("counts before maturity %+v", c)
		}
		if snap, err := s.LockSnapshot(ctx, p.ID); err != nil || len(snap.Available) != 1 {
			t.Errorf("an immature output is offered: %+v, %v", snap.Available, err)
		}
		for _, c := range []struct {
			tip  int64
			want map[int64][]string
		}{
			{109, map[int64][]string{}},
			{110, map[int64][]string{p.ID: {hashOf(1, 0)}}},
			{110, map[int64][]string{}},
			{500, map[int64][]string{q.ID: {hashOf(2, 0)}}},
		} {
			touched, err := s.MatureUTXOs(ctx, c.tip)
			if err != nil {
				t.Fatal(err)
			}
			if got := touchedSet(touched); !maps.EqualFunc(got, c.want, slices.Equal) {
				t.Errorf("MatureUTXOs(%d) = %v, want %v", c.tip, got, c.want)
			}
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: 2}) {
			t.Errorf("counts after maturity %+v", c)
		}
		if st := statesOf(t, s, hashOf(2, 0)); st[hashOf(2, 0)] != storage.StateAvailable {
			t.Errorf("q's coinbase output is %s", st[hashOf(2, 0)])
		}
	})
}

func TestMempoolRows(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		q := mustPool(t, s, assetA, programB)
		h := func(i int) string { return hashOf(1, i) }
		mustChange(t, s, []storage.IndexedOutput{
			output(p, h(0), 1, txOf(1, 0), 7), // confirmed, unspent: the blocks decide
			output(p, h(1), 1, txOf(1, 1), 0), // pending output
			output(p, h(2), 1, txOf(1, 2), 7), // spent by a pending transaction
			output(p, h(3), 1, txOf(1, 3), 7), // spent in block 8
			output(p, h(4), 1, txOf(1, 4), 0), // pending, then dropped
			output(q, hashOf(2, 0), 1, txOf(2, 0), 0),
		})
		spend(t, s, p.ID, txOf(1, 22), 0, h(2))
		spend(t, s, p.ID, txOf(1, 33), 8, h(3))
		setState(t, s, p.ID, storage.StateInvalidated, h(4))
		rows, err := s.MempoolRows(ctx, []int64{p.ID}, []string{h(3), hashOf(9, 9)})
		if err != nil {
			t.Fatal(err)
		}
		if got := hashesOfUTXOs(rows); !slices.Equal(got, sorted(h(1), h(2), h(3), h(4))) {
			t.Errorf("MempoolRows(p, +h3) = %v", got)
		}
		for _, u := range rows {
			if u.Hash == h(2) && (u.SpentTx != txOf(1, 22) || u.State != storage.StateSpent) {
				t.Errorf("row %+v", u)
			}
		}
		rows, err = s.MempoolRows(ctx, []int64{p.ID, q.ID}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := hashesOfUTXOs(rows); !slices.Equal(got, sorted(h(1), h(2), h(4), hashOf(2, 0))) {
			t.Errorf("MempoolRows(p, q) = %v", got)
		}
		if rows, err := s.MempoolRows(ctx, nil, []string{h(0)}); err != nil || len(rows) != 0 {
			t.Errorf("MempoolRows(no pools) = %v, %v", rows, err)
		}
	})
}

func TestChangeUTXOs(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		q := mustPool(t, s, assetA, programB)
		h := func(i int) string { return hashOf(1, i) }
		if err := s.ChangeUTXOs(ctx, nil, nil); err != nil {
			t.Errorf("ChangeUTXOs(nothing): %v", err)
		}
		mustChange(t, s, []storage.IndexedOutput{output(p, h(0), 10, txOf(1, 0), 0), output(p, h(1), 11, txOf(1, 1), 4)})
		if u := mustUTXO(t, s, h(0)); u.Confirmed || u.Height != 0 || u.State != storage.StateAvailable || u.CreatedTx != txOf(1, 0) {
			t.Errorf("pending output %+v", u)
		}
		if u := mustUTXO(t, s, h(1)); !u.Confirmed || u.Height != 4 {
			t.Errorf("output with a height %+v", u)
		}

		spend(t, s, p.ID, txOf(1, 9), 6, h(0))
		u := mustUTXO(t, s, h(0))
		if u.State != storage.StateSpent || u.SpentTx != txOf(1, 9) || u.SpentHeight != 6 || u.SpentAt == nil {
			t.Fatalf("spent %+v", u)
		}
		spentAt := *u.SpentAt
		spend(t, s, p.ID, txOf(1, 10), 0, h(0)) // another spender: the first time seen gone is kept
		if u := mustUTXO(t, s, h(0)); u.SpentTx != txOf(1, 10) || u.SpentHeight != 0 || u.SpentAt == nil || !u.SpentAt.Equal(spentAt) {
			t.Errorf("spent again %+v (spent at %v)", u, spentAt)
		}
		setState(t, s, p.ID, storage.StateAvailable, h(0))
		if u := mustUTXO(t, s, h(0)); u.State != storage.StateAvailable || u.SpentTx != "" || u.SpentHeight != 0 || u.SpentAt != nil {
			t.Errorf("available again %+v", u)
		}
		setState(t, s, p.ID, storage.StateInvalidated, h(0))
		if u := mustUTXO(t, s, h(0)); u.State != storage.StateInvalidated || u.SpentAt == nil {
			t.Errorf("invalidated %+v", u)
		}
		// A change names the pool: a hash of another pool is left alone.
		setState(t, s, q.ID, storage.StateSpent, h(1))
		if u := mustUTXO(t, s, h(1)); u.State != storage.StateAvailable {
			t.Errorf("change under another pool applied: %+v", u)
		}
		for _, st := range []string{storage.StateReserved, "bogus", ""} {
			err := s.ChangeUTXOs(ctx, []storage.IndexedOutput{output(p, h(5), 1, "", 0)},
				[]storage.UTXOChange{{PoolID: p.ID, Hash: h(1), State: st}})
			if !errors.Is(err, storage.ErrInvalidArgument) {
				t.Errorf("ChangeUTXOs(state %q): err = %v, want ErrInvalidArgument", st, err)
			}
		}
		if us, _ := s.GetUTXOs(ctx, []string{h(5)}); len(us) != 0 {
			t.Errorf("a refused ChangeUTXOs stored its output: %+v", us)
		}
	})
}

func TestGenesis(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		if g, err := s.Genesis(ctx); err != nil || g != "" {
			t.Fatalf("Genesis before the index ran = %q, %v", g, err)
		}
		if err := s.SetGenesis(ctx, blockHash(1, 0)); err != nil {
			t.Fatal(err)
		}
		if err := s.SetGenesis(ctx, blockHash(2, 0)); err != nil {
			t.Fatal(err)
		}
		if g, err := s.Genesis(ctx); err != nil || g != blockHash(1, 0) {
			t.Errorf("Genesis = %q, %v; want the first one recorded", g, err)
		}
		// A rollback to the genesis keeps it.
		p := mustPool(t, s, assetA, programA)
		mustApply(t, s, []int64{p.ID}, block(1, 1))
		if _, err := s.RollbackIndex(ctx, 0, blockHash(1, 0)); err != nil {
			t.Fatal(err)
		}
		if g, err := s.Genesis(ctx); err != nil || g != blockHash(1, 0) {
			t.Errorf("Genesis after a rollback to it = %q, %v", g, err)
		}
		if c := mustCursors(t, s)[p.ID]; c.Height != 0 || c.BlockHash != blockHash(1, 0) {
			t.Errorf("cursor after a rollback to the genesis: %+v", c)
		}
	})
}

func TestMarkSyncedAndAvailableUTXOs(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		q := mustPool(t, s, assetA, programB)
		if p.SyncedAt != nil {
			t.Fatalf("a new pool is synced: %+v", p)
		}
		if err := s.MarkSynced(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetPool(ctx, p.ID)
		if err != nil || got.SyncedAt == nil {
			t.Fatalf("after MarkSynced: %+v, %v", got, err)
		}
		first := *got.SyncedAt
		time.Sleep(2 * time.Millisecond) // the clock must move for a rewrite of synced_at to show
		if err := s.MarkSynced(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
		if again, _ := s.GetPool(ctx, p.ID); again.SyncedAt == nil || !again.SyncedAt.Equal(first) {
			t.Errorf("MarkSynced again moved synced_at: %v, was %v", again.SyncedAt, first)
		}
		if other, _ := s.GetPool(ctx, q.ID); other.SyncedAt != nil {
			t.Errorf("MarkSynced(p) synced q: %+v", other)
		}

		h := func(i int) string { return hashOf(1, i) }
		imm := output(p, h(3), 3, txOf(1, 3), 9)
		imm.State, imm.ValidHeight = storage.StateImmature, 109
		mustChange(t, s, []storage.IndexedOutput{output(p, h(0), 10, txOf(1, 0), 9), output(p, h(1), 11, txOf(1, 1), 0),
			output(p, h(2), 12, txOf(1, 2), 9), imm, output(p, h(4), 14, txOf(1, 4), 0), output(q, hashOf(2, 0), 20, txOf(2, 0), 0)})
		spend(t, s, p.ID, txOf(1, 9), 0, h(2))
		setState(t, s, p.ID, storage.StateInvalidated, h(4))
		mustRecord(t, s, p.ID, 1, storage.ResHeld, time.Now().Add(time.Hour), h(1)) // held: still offered by the chain
		avail, err := s.AvailableUTXOs(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]uint64{h(0): 10, h(1): 11}; !maps.Equal(avail, want) {
			t.Errorf("AvailableUTXOs = %v, want %v", avail, want)
		}
	})
}
