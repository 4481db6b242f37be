package sim_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
)

var (
	asset   = strings.Repeat("ab", 32)
	asset2  = strings.Repeat("cd", 32)
	program = "0014" + strings.Repeat("11", 20)
	other   = "0014" + strings.Repeat("22", 20)
)

func mustAdd(t *testing.T, c *sim.Chain, amounts ...int64) []string {
	t.Helper()
	hs, err := c.AddUTXOs(asset, program, amounts)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

func mustSpend(t *testing.T, c *sim.Chain, hashes []string, fail bool, outs ...sim.Output) (string, []string) {
	t.Helper()
	id, hs, err := c.Spend(hashes, outs, fail)
	if err != nil {
		t.Fatal(err)
	}
	return id, hs
}

func mustMine(t *testing.T, c *sim.Chain, n int) chain.Status {
	t.Helper()
	st, err := c.Mine(n)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// hashes returns the hashes of a listing.
func hashes(us []chain.UTXO) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Hash
	}
	return out
}

func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Fatalf("%s:\n got  %v\n want %v", what, g, w)
	}
}

func confirmedFlags(us []chain.UTXO) map[string]bool {
	m := map[string]bool{}
	for _, u := range us {
		m[u.Hash] = u.Confirmed
	}
	return m
}

func TestGenesisAndFunding(t *testing.T) {
	c := sim.New()
	g := c.Tip()
	if g.Height != 0 || len(g.BlockHash) != 64 {
		t.Fatalf("genesis %+v", g)
	}
	hs := mustAdd(t, c, 100, 200, 300)
	if tip := c.Tip(); tip.Height != 1 || tip.BlockHash == g.BlockHash {
		t.Fatalf("tip after funding %+v", tip)
	}
	if len(hs) != 3 || hs[0] == hs[1] || !sim.IsHash(hs[0]) {
		t.Fatalf("hashes %v", hs)
	}
	for _, unconf := range []bool{true, false} {
		us := c.UTXOs(asset, program, unconf)
		if !slices.Equal(hashes(us), hs) {
			t.Fatalf("unconfirmed=%v: %v", unconf, hashes(us))
		}
		for i, u := range us {
			if !u.Confirmed || u.Amount != int64(100*(i+1)) || u.Asset != asset || u.Program != program || u.TxID == "" {
				t.Fatalf("utxo %+v", u)
			}
		}
	}
	if us := c.UTXOs(asset, other, true); len(us) != 0 {
		t.Fatalf("another program sees %v", us)
	}
	blk, err := c.Block(1)
	if err != nil || len(blk.Txs) != 1 || blk.PreviousHash != g.BlockHash || blk.Txs[0].Height != 1 {
		t.Fatalf("block 1: %+v, %v", blk, err)
	}
	if o := blk.Txs[0].Outputs[0]; o.Address != sim.Address(program) || !strings.HasPrefix(o.Address, "bm1q") || len(o.Address) != 42 {
		t.Fatalf("address %q", o.Address)
	}
}

func TestSpendAndMineViews(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 100, 200, 300)
	id, outs := mustSpend(t, c, hs[:1], false,
		sim.Output{Asset: asset, Program: program, Amount: 90},
		sim.Output{Asset: asset, Program: other, Amount: 10})

	unconf := c.UTXOs(asset, program, true)
	sameSet(t, "unconfirmed view", hashes(unconf), []string{hs[1], hs[2], outs[0]})
	if f := confirmedFlags(unconf); f[outs[0]] || !f[hs[1]] {
		t.Fatalf("confirmed flags %v", f)
	}
	sameSet(t, "confirmed view", hashes(c.UTXOs(asset, program, false)), hs)
	sameSet(t, "other pool, unconfirmed", hashes(c.UTXOs(asset, other, true)), outs[1:])
	if got := c.UTXOs(asset, other, false); len(got) != 0 {
		t.Fatalf("other pool, confirmed: %v", got)
	}

	// Double spends and unknown inputs are refused, and change nothing.
	if _, _, err := c.Spend(hs[:1], []sim.Output{{Asset: asset, Program: program, Amount: 1}}, false); !errors.Is(err, sim.ErrSpent) {
		t.Fatalf("double spend: %v", err)
	}
	if _, _, err := c.Spend([]string{strings.Repeat("0", 64)}, []sim.Output{{Asset: asset, Program: program, Amount: 1}}, false); !errors.Is(err, sim.ErrUnknownOutput) {
		t.Fatalf("unknown input: %v", err)
	}
	if p := c.Pending(); !slices.Equal(p, []string{id}) {
		t.Fatalf("mempool %v", p)
	}

	tx, err := c.Tx(id)
	if err != nil || tx.Confirmed() || len(tx.Inputs) != 1 || tx.Inputs[0].UTXO != hs[0] || len(tx.Outputs) != 2 || tx.Outputs[0].UTXO != outs[0] {
		t.Fatalf("pending tx %+v, %v", tx, err)
	}

	tip := mustMine(t, c, 1)
	if tip.Height != 2 {
		t.Fatalf("tip %+v", tip)
	}
	tx, _ = c.Tx(id)
	if tx.Height != 2 || tx.BlockHash != tip.BlockHash || tx.StatusFail || tx.BlockTime.IsZero() {
		t.Fatalf("mined tx %+v", tx)
	}
	sameSet(t, "confirmed view after mining", hashes(c.UTXOs(asset, program, false)), []string{hs[1], hs[2], outs[0]})
	if f := confirmedFlags(c.UTXOs(asset, program, true)); !f[outs[0]] {
		t.Fatal("mined output still unconfirmed")
	}
	if len(c.Pending()) != 0 {
		t.Fatal("mempool not emptied")
	}
	// The spent output is gone for good.
	if _, _, err := c.Spend(hs[:1], []sim.Output{{Asset: asset, Program: program, Amount: 1}}, false); !errors.Is(err, sim.ErrUnknownOutput) {
		t.Fatalf("spent input: %v", err)
	}
}

func TestFailedTransaction(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 100, 200)
	id, outs := mustSpend(t, c, hs[:1], true, sim.Output{Asset: asset, Program: program, Amount: 100})

	// While pending, the view shows its output and hides its input (as blockcenter does).
	sameSet(t, "pending failing tx", hashes(c.UTXOs(asset, program, true)), []string{hs[1], outs[0]})

	mustMine(t, c, 1)
	tx, err := c.Tx(id)
	if err != nil || !tx.StatusFail || !tx.Confirmed() {
		t.Fatalf("failed tx %+v, %v", tx, err)
	}
	sameSet(t, "after mining, unconfirmed", hashes(c.UTXOs(asset, program, true)), hs)
	sameSet(t, "after mining, confirmed", hashes(c.UTXOs(asset, program, false)), hs)
	// Its input can be spent again.
	mustSpend(t, c, hs[:1], false, sim.Output{Asset: asset, Program: program, Amount: 100})
}

func TestChainedSpendOfFailingParentIsDiscarded(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 100)
	parent, pouts := mustSpend(t, c, hs, true, sim.Output{Asset: asset, Program: program, Amount: 100})
	child, couts := mustSpend(t, c, pouts, false, sim.Output{Asset: asset, Program: program, Amount: 100})
	sameSet(t, "pending chain", hashes(c.UTXOs(asset, program, true)), couts)

	mustMine(t, c, 1)
	if tx, err := c.Tx(parent); err != nil || !tx.StatusFail {
		t.Fatalf("parent %+v, %v", tx, err)
	}
	if _, err := c.Tx(child); !errors.Is(err, chain.ErrTxNotFound) {
		t.Fatalf("child should vanish, got %v", err)
	}
	sameSet(t, "after mining", hashes(c.UTXOs(asset, program, true)), hs)
}

func TestDrop(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 100, 5)
	parent, pouts := mustSpend(t, c, hs[:1], false, sim.Output{Asset: asset, Program: program, Amount: 100})
	child, _ := mustSpend(t, c, pouts, false, sim.Output{Asset: asset, Program: program, Amount: 100})
	keep, kouts := mustSpend(t, c, hs[1:], false, sim.Output{Asset: asset, Program: program, Amount: 5})

	if err := c.Drop(parent); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{parent, child} {
		if _, err := c.Tx(id); !errors.Is(err, chain.ErrTxNotFound) {
			t.Fatalf("%s still known: %v", id, err)
		}
	}
	if p := c.Pending(); !slices.Equal(p, []string{keep}) {
		t.Fatalf("mempool %v", p)
	}
	sameSet(t, "after drop", hashes(c.UTXOs(asset, program, true)), []string{hs[0], kouts[0]})
	mustSpend(t, c, hs[:1], false, sim.Output{Asset: asset, Program: program, Amount: 1})

	mustMine(t, c, 1)
	if err := c.Drop(keep); !errors.Is(err, sim.ErrNotPending) {
		t.Fatalf("drop mined: %v", err)
	}
	if err := c.Drop(strings.Repeat("e", 64)); !errors.Is(err, chain.ErrTxNotFound) {
		t.Fatalf("drop unknown: %v", err)
	}
	if err := c.Drop("xyz"); !errors.Is(err, sim.ErrInvalid) {
		t.Fatalf("drop invalid: %v", err)
	}
}

// reorgSetup: funding in block 1, tx a in block 2, tx b in block 3.
func reorgSetup(t *testing.T) (c *sim.Chain, funding []string, a, b string, aOut, bOut []string) {
	c = sim.New()
	funding = mustAdd(t, c, 100, 200)
	a, aOut = mustSpend(t, c, funding[:1], false, sim.Output{Asset: asset, Program: program, Amount: 100})
	mustMine(t, c, 1)
	b, bOut = mustSpend(t, c, funding[1:], false, sim.Output{Asset: asset, Program: program, Amount: 200})
	mustMine(t, c, 1)
	return
}

func checkLinked(t *testing.T, c *sim.Chain) {
	t.Helper()
	tip := c.Tip()
	prev, _ := c.Block(0)
	for h := uint64(1); h <= tip.Height; h++ {
		b, err := c.Block(h)
		if err != nil || b.PreviousHash != prev.Hash || b.Height != h {
			t.Fatalf("block %d: %+v, %v", h, b, err)
		}
		prev = b
	}
	if prev.Hash != tip.BlockHash {
		t.Fatalf("tip %s, last block %s", tip.BlockHash, prev.Hash)
	}
	if _, err := c.Block(tip.Height + 1); !errors.Is(err, chain.ErrBlockNotFound) {
		t.Fatalf("block above tip: %v", err)
	}
}

func TestReorgRemines(t *testing.T) {
	c, _, a, b, aOut, bOut := reorgSetup(t)
	old := c.Tip()
	b1, _ := c.Block(1)
	b2, _ := c.Block(2)
	before := hashes(c.UTXOs(asset, program, false))

	tip, err := c.Reorg(2, false)
	if err != nil {
		t.Fatal(err)
	}
	if tip.Height != old.Height+1 || tip.BlockHash == old.BlockHash {
		t.Fatalf("tip %+v, old %+v", tip, old)
	}
	if nb1, _ := c.Block(1); nb1.Hash != b1.Hash {
		t.Fatal("block below the fork changed")
	}
	nb2, _ := c.Block(2)
	if nb2.Hash == b2.Hash {
		t.Fatal("block 2 kept its hash on the new branch")
	}
	for _, id := range []string{a, b} {
		tx, err := c.Tx(id)
		if err != nil || tx.Height != 2 || tx.BlockHash != nb2.Hash {
			t.Fatalf("tx %s: %+v, %v", id, tx, err)
		}
	}
	sameSet(t, "utxos after reorg", hashes(c.UTXOs(asset, program, false)), before)
	sameSet(t, "utxos are the outputs", before, append(slices.Clone(aOut), bOut...))
	checkLinked(t, c)
}

func TestReorgDrop(t *testing.T) {
	c, funding, a, b, _, _ := reorgSetup(t)
	tip, err := c.Reorg(2, true)
	if err != nil || tip.Height != 4 {
		t.Fatalf("reorg: %+v, %v", tip, err)
	}
	for _, id := range []string{a, b} {
		if _, err := c.Tx(id); !errors.Is(err, chain.ErrTxNotFound) {
			t.Fatalf("dropped tx %s: %v", id, err)
		}
	}
	sameSet(t, "utxos after dropping reorg", hashes(c.UTXOs(asset, program, false)), funding)
	checkLinked(t, c)

	// Dropping the funding block makes its UTXOs vanish.
	tip, err = c.Reorg(4, true)
	if err != nil || tip.Height != 5 {
		t.Fatalf("deep reorg: %+v, %v", tip, err)
	}
	if us := c.UTXOs(asset, program, true); len(us) != 0 {
		t.Fatalf("utxos of a dropped funding tx: %v", us)
	}
	checkLinked(t, c)
}

func TestReorgKeepsPendingAndBounds(t *testing.T) {
	c, _, _, _, aOut, _ := reorgSetup(t)
	p, _ := mustSpend(t, c, aOut, false, sim.Output{Asset: asset, Program: program, Amount: 100})
	if _, err := c.Reorg(1, false); err != nil {
		t.Fatal(err)
	}
	if tx, err := c.Tx(p); err != nil || tx.Height != 3 {
		t.Fatalf("pending tx after reorg: %+v, %v", tx, err)
	}
	for _, d := range []int{0, -1, 5, sim.MaxBlocks + 1} {
		before := c.Tip()
		if _, err := c.Reorg(d, false); !errors.Is(err, sim.ErrInvalid) {
			t.Fatalf("depth %d: %v", d, err)
		}
		if c.Tip() != before {
			t.Fatalf("depth %d changed the tip", d)
		}
	}
	if _, err := c.Mine(0); !errors.Is(err, sim.ErrInvalid) {
		t.Fatalf("mine 0: %v", err)
	}
}

// script runs the same calls on a chain and returns every hash it saw.
func script(t *testing.T, c *sim.Chain, amount int64) []string {
	var seen []string
	hs := mustAdd(t, c, 1, 2, amount)
	seen = append(seen, hs...)
	id, outs := mustSpend(t, c, hs[:2], false, sim.Output{Asset: asset2, Program: other, Amount: 3})
	seen = append(seen, id)
	seen = append(seen, outs...)
	id, _ = mustSpend(t, c, hs[2:], true, sim.Output{Asset: asset, Program: program, Amount: amount})
	seen = append(seen, id, mustMine(t, c, 3).BlockHash)
	st, err := c.Reorg(2, false)
	if err != nil {
		t.Fatal(err)
	}
	seen = append(seen, st.BlockHash)
	for h := uint64(0); h <= st.Height; h++ {
		b, _ := c.Block(h)
		seen = append(seen, b.Hash)
	}
	return seen
}

func TestDeterministicHashes(t *testing.T) {
	a, b, d := script(t, sim.New(), 3), script(t, sim.New(), 3), script(t, sim.New(), 4)
	if !slices.Equal(a, b) {
		t.Fatalf("same calls, different hashes:\n%v\n%v", a, b)
	}
	if a[0] == d[0] || a[2] == d[2] {
		t.Fatal("different amounts gave the same hashes")
	}
	for _, h := range a {
		if !sim.IsHash(h) {
			t.Fatalf("not a hash: %q", h)
		}
	}
	if g1, g2 := sim.New().Tip(), sim.New().Tip(); g1 != g2 {
		t.Fatalf("genesis differs: %v %v", g1, g2)
	}
}

func TestValidation(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 10)
	tip := c.Tip()
	bad := []struct {
		name    string
		asset   string
		program string
		amounts []int64
	}{
		{"short asset", asset[:62], program, []int64{1}},
		{"upper-case asset", strings.ToUpper(asset), program, []int64{1}},
		{"odd program", asset, "001", []int64{1}},
		{"non-hex program", asset, "zz", []int64{1}},
		{"empty program", asset, "", []int64{1}},
		{"zero amount", asset, program, []int64{1, 0}},
		{"negative amount", asset, program, []int64{-5}},
		{"no amounts", asset, program, nil},
	}
	for _, b := range bad {
		if _, err := c.AddUTXOs(b.asset, b.program, b.amounts); !errors.Is(err, sim.ErrInvalid) {
			t.Errorf("%s: %v", b.name, err)
		}
	}
	out := []sim.Output{{Asset: asset, Program: program, Amount: 1}}
	spends := map[string]func() error{
		"duplicate input": func() error { _, _, err := c.Spend([]string{hs[0], hs[0]}, out, false); return err },
		"no input":        func() error { _, _, err := c.Spend(nil, out, false); return err },
		"no output":       func() error { _, _, err := c.Spend(hs, nil, false); return err },
		"bad input":       func() error { _, _, err := c.Spend([]string{"00"}, out, false); return err },
		"bad output": func() error {
			_, _, err := c.Spend(hs, []sim.Output{{Asset: asset, Program: program, Amount: 0}}, false)
			return err
		},
	}
	for name, f := range spends {
		if err := f(); !errors.Is(err, sim.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if c.Tip() != tip || len(c.Pending()) != 0 || !slices.Equal(hashes(c.UTXOs(asset, program, true)), hs) {
		t.Fatal("invalid calls changed the chain")
	}
}

func TestReorgOfEmptyBlocksMakesNewHashes(t *testing.T) {
	c := sim.New()
	mustAdd(t, c, 1)
	mustMine(t, c, 2)
	b2, _ := c.Block(2)
	b3, _ := c.Block(3)
	if _, err := c.Reorg(2, false); err != nil {
		t.Fatal(err)
	}
	n2, _ := c.Block(2)
	n3, _ := c.Block(3)
	if n2.Hash == b2.Hash || n3.Hash == b3.Hash || n2.PreviousHash != b2.PreviousHash {
		t.Fatalf("new branch reuses hashes: %s %s", n2.Hash, n3.Hash)
	}
	checkLinked(t, c)
}

func TestConcurrentSpendsOfOneOutput(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 100)
	out := []sim.Output{{Asset: asset, Program: program, Amount: 100}}
	var wg sync.WaitGroup
	var won atomic.Int32
	for i := 0; i < 32; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, _, err := c.Spend(hs, out, false); err == nil {
				won.Add(1)
			} else if !errors.Is(err, sim.ErrSpent) {
				t.Error(err)
			}
		}()
		go func() { // readers run meanwhile
			defer wg.Done()
			_ = c.UTXOs(asset, program, true)
			_ = c.Tip()
		}()
	}
	wg.Wait()
	if won.Load() != 1 || len(c.Pending()) != 1 {
		t.Fatalf("%d spends won, mempool %v", won.Load(), c.Pending())
	}
}
