package sim_test

import (
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
)

var (
	asset    = strings.Repeat("ab", 32)
	asset2   = strings.Repeat("cd", 32)
	btm      = chain.BTMAsset
	program  = "0014" + strings.Repeat("11", 20)
	other    = "0014" + strings.Repeat("22", 20)
	p2wsh    = "0020" + strings.Repeat("33", 32)
	contract = "5151"
	zeroHash = strings.Repeat("0", 64)
)

func mustAdd(t *testing.T, c *sim.Chain, amounts ...uint64) []string {
	t.Helper()
	return mustAddTo(t, c, asset, program, amounts...)
}

func mustAddTo(t *testing.T, c *sim.Chain, asset, program string, amounts ...uint64) []string {
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

func mustBlock(t *testing.T, c *sim.Chain, height uint64) *chain.Block {
	t.Helper()
	b, err := c.Block(height)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// out is one output of asset to program.
func out(asset, program string, amount uint64) sim.Output {
	return sim.Output{Asset: asset, Program: program, Amount: amount}
}

// hashes returns the hashes of a listing.
func hashes(us []chain.UTXO) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Hash
	}
	return out
}

func txIDs(txs []chain.Tx) []string {
	out := make([]string, len(txs))
	for i, t := range txs {
		out[i] = t.ID
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

// gone checks that transactions vanished: in no block, not in the mempool.
func gone(t *testing.T, c *sim.Chain, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if tx, err := c.Tx(id); !errors.Is(err, chain.ErrTxNotFound) {
			t.Fatalf("tx %s should have vanished: %+v, %v", id, tx, err)
		}
		if slices.Contains(c.Pending(), id) {
			t.Fatalf("tx %s still pending", id)
		}
	}
}

func TestGenesis(t *testing.T) {
	c := sim.New()
	g := c.Tip()
	if g.Height != 0 || !sim.IsHash(g.BlockHash) {
		t.Fatalf("genesis %+v", g)
	}
	b := mustBlock(t, c, 0)
	if b.PreviousHash != zeroHash || len(b.Txs) != 1 || !b.Txs[0].Coinbase() || b.Txs[0].BlockHash != g.BlockHash {
		t.Fatalf("genesis block %+v", b)
	}
	o := b.Txs[0].Outputs[0]
	if o.Asset != btm || o.Amount != sim.GenesisAmount || o.Amount <= 1<<53 || o.Program == sim.MinerProgram ||
		o.Address != sim.Address(o.Program) || o.Address == "" {
		t.Fatalf("genesis output %+v", o)
	}
	if _, _, err := c.Spend([]string{o.UTXO}, []sim.Output{out(btm, program, 1)}, false); !errors.Is(err, sim.ErrImmature) {
		t.Fatalf("spending the genesis output at height 0: %v", err)
	}
	if g2 := sim.New().Tip(); g2 != g {
		t.Fatalf("genesis differs: %v %v", g, g2)
	}
}

func TestEveryBlockStartsWithACoinbase(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 100, 200, 300)
	if tip := c.Tip(); tip.Height != 1 {
		t.Fatalf("tip after funding %+v", tip)
	}
	mustMine(t, c, 2)
	var rewards []string
	for h := uint64(1); h <= 3; h++ {
		b := mustBlock(t, c, h)
		cb := b.Txs[0]
		if !cb.Coinbase() || cb.Height != h || len(cb.Inputs) != 1 || len(cb.Outputs) != 1 {
			t.Fatalf("block %d coinbase %+v", h, cb)
		}
		if in := cb.Inputs[0]; in != (chain.TxIO{Type: "coinbase", Asset: zeroHash}) {
			t.Fatalf("coinbase input %+v", in)
		}
		o := cb.Outputs[0]
		if o.Asset != btm || o.Program != sim.MinerProgram || o.Amount != sim.CoinbaseReward || o.Address != sim.Address(sim.MinerProgram) {
			t.Fatalf("coinbase output %+v", o)
		}
		rewards = append(rewards, o.UTXO)
	}
	sameSet(t, "miner's outputs", hashes(c.UTXOs(btm, sim.MinerProgram, false)), rewards)

	funding := mustBlock(t, c, 1).Txs
	if len(funding) != 2 || funding[1].Coinbase() || len(funding[1].Inputs) != 3 {
		t.Fatalf("funding block %+v", funding)
	}
	for i, in := range funding[1].Inputs {
		want := chain.TxIO{Type: "issue", Asset: asset, Amount: uint64(100 * (i + 1))}
		if in != want || funding[1].Outputs[i].UTXO != hs[i] {
			t.Fatalf("funding input %d: %+v", i, in)
		}
	}
	if len(mustBlock(t, c, 2).Txs) != 1 {
		t.Fatal("an empty block holds more than its coinbase")
	}
}

func TestFunding(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 100, 200, math.MaxUint64)
	if len(hs) != 3 || hs[0] == hs[1] || !sim.IsHash(hs[0]) {
		t.Fatalf("hashes %v", hs)
	}
	for _, unconf := range []bool{true, false} {
		us := c.UTXOs(asset, program, unconf)
		if !slices.Equal(hashes(us), hs) {
			t.Fatalf("unconfirmed=%v: %v", unconf, hashes(us))
		}
		for i, u := range us {
			want := []uint64{100, 200, math.MaxUint64}[i]
			if !u.Confirmed || u.Amount != want || u.Asset != asset || u.Program != program || u.TxID == "" {
				t.Fatalf("utxo %+v", u)
			}
		}
	}
	if us := c.UTXOs(asset, other, true); len(us) != 0 {
		t.Fatalf("another program sees %v", us)
	}
	o := mustBlock(t, c, 1).Txs[1].Outputs[0]
	if o.Address != sim.Address(program) || !strings.HasPrefix(o.Address, "sm1q") || len(o.Address) != 42 {
		t.Fatalf("address %q", o.Address)
	}
}

func TestAddress(t *testing.T) {
	for prog, n := range map[string]int{program: 42, p2wsh: 62, contract: 0, "51": 0, "0014aa": 0, "00" + program[2:]: 42} {
		a := sim.Address(prog)
		if len(a) != n || (n > 0 && !strings.HasPrefix(a, "sm1q")) {
			t.Errorf("address of %s: %q", prog, a)
		}
	}
	if sim.Address(program) == sim.Address(other) {
		t.Error("two programs, one address")
	}
}

func TestSpendAndMineViews(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 100, 200, 300)
	id, outs := mustSpend(t, c, hs[:1], false, out(asset, program, 90), out(asset, other, 10))

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
	if _, _, err := c.Spend([]string{zeroHash}, []sim.Output{out(asset, program, 1)}, false); !errors.Is(err, sim.ErrUnknownOutput) {
		t.Fatalf("unknown input: %v", err)
	}
	if p := c.Pending(); !slices.Equal(p, []string{id}) {
		t.Fatalf("mempool %v", p)
	}

	tx, err := c.Tx(id)
	if err != nil || tx.Confirmed() || tx.BlockHash != "" || len(tx.Inputs) != 1 || tx.Inputs[0].UTXO != hs[0] ||
		tx.Inputs[0].Type != "spend" || len(tx.Outputs) != 2 || tx.Outputs[0].UTXO != outs[0] {
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
	if ids := txIDs(mustBlock(t, c, 2).Txs); len(ids) != 2 || ids[1] != id {
		t.Fatalf("block 2 holds %v", ids)
	}
	sameSet(t, "confirmed view after mining", hashes(c.UTXOs(asset, program, false)), []string{hs[1], hs[2], outs[0]})
	if f := confirmedFlags(c.UTXOs(asset, program, true)); !f[outs[0]] {
		t.Fatal("mined output still unconfirmed")
	}
	if len(c.Pending()) != 0 {
		t.Fatal("mempool not emptied")
	}
	// The spent output is gone for good.
	if _, _, err := c.Spend(hs[:1], []sim.Output{out(asset, program, 1)}, false); !errors.Is(err, sim.ErrUnknownOutput) {
		t.Fatalf("spent input: %v", err)
	}
}

func TestFailedTransactionOfAnotherAsset(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 100, 200)
	id, outs := mustSpend(t, c, hs[:1], true, out(asset, program, 100))

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
	mustSpend(t, c, hs[:1], false, out(asset, program, 100))
}

func TestFailedTransactionMovesOnlyBTM(t *testing.T) {
	c := sim.New()
	fee := mustAddTo(t, c, btm, program, 1000)
	gold := mustAdd(t, c, 50)
	id, outs := mustSpend(t, c, []string{fee[0], gold[0]}, true, out(btm, other, 900), out(asset, other, 50))
	mustMine(t, c, 1)

	check := func(when string) {
		t.Helper()
		tx, err := c.Tx(id)
		if err != nil || !tx.StatusFail || !tx.Confirmed() || len(tx.Inputs) != 2 || len(tx.Outputs) != 2 {
			t.Fatalf("%s: failed tx %+v, %v", when, tx, err)
		}
		// The BTM input is spent and the BTM output created...
		if us := c.UTXOs(btm, program, false); len(us) != 0 {
			t.Fatalf("%s: BTM input unspent: %v", when, us)
		}
		sameSet(t, when+": BTM output", hashes(c.UTXOs(btm, other, false)), outs[:1])
		// ...the other asset stays where it was.
		sameSet(t, when+": asset input", hashes(c.UTXOs(asset, program, false)), gold)
		if us := c.UTXOs(asset, other, true); len(us) != 0 {
			t.Fatalf("%s: asset output created: %v", when, us)
		}
	}
	check("mined")
	if _, err := c.Reorg(1, false); err != nil {
		t.Fatal(err)
	}
	check("re-mined")

	// The outputs follow: the BTM one can be spent, the other one never was created.
	mustSpend(t, c, outs[:1], false, out(btm, program, 900))
	if _, _, err := c.Spend(outs[1:], []sim.Output{out(asset, program, 50)}, false); !errors.Is(err, sim.ErrUnknownOutput) {
		t.Fatalf("spending an output a failed tx did not create: %v", err)
	}
}

func TestChildOfFailingParent(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 100)
	fee := mustAddTo(t, c, btm, program, 1000)
	parent, pouts := mustSpend(t, c, []string{hs[0], fee[0]}, true, out(asset, program, 100), out(btm, program, 900))
	child, couts := mustSpend(t, c, pouts[:1], false, out(asset, program, 100))
	btmChild, _ := mustSpend(t, c, pouts[1:], false, out(btm, program, 800))
	sameSet(t, "pending chain", hashes(c.UTXOs(asset, program, true)), couts)

	mustMine(t, c, 1)
	if tx, err := c.Tx(parent); err != nil || !tx.StatusFail {
		t.Fatalf("parent %+v, %v", tx, err)
	}
	// The child spending the asset output vanishes; the one spending the BTM output is mined.
	gone(t, c, child)
	if tx, err := c.Tx(btmChild); err != nil || !tx.Confirmed() || tx.StatusFail {
		t.Fatalf("child of the BTM output %+v, %v", tx, err)
	}
	sameSet(t, "after mining", hashes(c.UTXOs(asset, program, true)), hs)
}

func TestDoubleSpendInMempool(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 100, 5)
	first, fouts := mustSpend(t, c, hs[:1], false, out(asset, program, 100))
	loser, louts := mustSpend(t, c, hs[:1], false, out(asset, other, 100))
	child, couts := mustSpend(t, c, louts, false, out(asset, other, 100))
	grandchild, _ := mustSpend(t, c, couts, false, out(asset, program, 100))
	unrelated, uouts := mustSpend(t, c, hs[1:], false, out(asset, program, 5))

	if p := c.Pending(); !slices.Equal(p, []string{first, loser, child, grandchild, unrelated}) {
		t.Fatalf("mempool %v", p)
	}
	// The doubly spent output is hidden from the unconfirmed view, both spends' outputs are shown.
	sameSet(t, "unconfirmed view", hashes(c.UTXOs(asset, program, true)), []string{fouts[0], uouts[0], grandchildOut(t, c, grandchild)})
	sameSet(t, "confirmed view", hashes(c.UTXOs(asset, program, false)), hs)

	tip := mustMine(t, c, 1)
	if ids := txIDs(mustBlock(t, c, tip.Height).Txs[1:]); !slices.Equal(ids, []string{first, unrelated}) {
		t.Fatalf("block holds %v", ids)
	}
	gone(t, c, loser, child, grandchild)
	if len(c.Pending()) != 0 {
		t.Fatalf("mempool %v", c.Pending())
	}
	sameSet(t, "after mining", hashes(c.UTXOs(asset, program, true)), []string{fouts[0], uouts[0]})
	if us := c.UTXOs(asset, other, true); len(us) != 0 {
		t.Fatalf("outputs of vanished transactions: %v", us)
	}
}

func grandchildOut(t *testing.T, c *sim.Chain, id string) string {
	t.Helper()
	tx, err := c.Tx(id)
	if err != nil {
		t.Fatal(err)
	}
	return tx.Outputs[0].UTXO
}

func TestCoinbaseMaturity(t *testing.T) {
	c := sim.New()
	mustMine(t, c, 1)
	reward := mustBlock(t, c, 1).Txs[0].Outputs[0].UTXO
	spend := func() error {
		_, _, err := c.Spend([]string{reward}, []sim.Output{out(btm, program, sim.CoinbaseReward)}, false)
		return err
	}
	if err := spend(); !errors.Is(err, sim.ErrImmature) {
		t.Fatalf("at height 1: %v", err)
	}
	mustMine(t, c, chain.CoinbaseMaturity-1) // tip 100
	if err := spend(); !errors.Is(err, sim.ErrImmature) {
		t.Fatalf("at height 100: %v", err)
	}
	if !slices.Contains(hashes(c.UTXOs(btm, sim.MinerProgram, false)), reward) {
		t.Fatal("an immature coinbase output is not listed")
	}
	if len(c.Pending()) != 0 {
		t.Fatal("a refused spend is pending")
	}
	mustMine(t, c, 1) // tip 101 = 1 + CoinbaseMaturity
	if err := spend(); err != nil {
		t.Fatalf("at height 101: %v", err)
	}
	mustMine(t, c, 1)
	if us := hashes(c.UTXOs(btm, sim.MinerProgram, false)); slices.Contains(us, reward) {
		t.Fatal("spent coinbase output still listed")
	}
}

func TestNotStandard(t *testing.T) {
	c := sim.New()
	for _, prog := range []string{contract, "0014aabb", "0014" + strings.Repeat("11", 21), "0020" + strings.Repeat("33", 20)} {
		if _, err := c.AddUTXOs(btm, prog, []uint64{1}); !errors.Is(err, sim.ErrNotStandard) {
			t.Errorf("BTM funding to %s: %v", prog, err)
		}
	}
	fee := mustAddTo(t, c, btm, program, 1000)
	if _, _, err := c.Spend(fee, []sim.Output{out(btm, program, 900), out(btm, contract, 100)}, false); !errors.Is(err, sim.ErrNotStandard) {
		t.Fatalf("BTM spend to %s: %v", contract, err)
	}
	if len(c.Pending()) != 0 || c.Tip().Height != 1 {
		t.Fatal("a refused call changed the chain")
	}
	// P2W programs (P2WPKH, P2WSH, a bare OP_TRUE or OP_FAIL) hold BTM; any asset goes anywhere else.
	mustAddTo(t, c, btm, p2wsh, 1)
	mustAddTo(t, c, btm, "51", 1)
	mustAddTo(t, c, asset, contract, 1)
	mustSpend(t, c, fee, false, out(btm, p2wsh, 500), out(btm, "6a", 400), out(asset, contract, 100))
}

func TestDrop(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 100, 5)
	parent, pouts := mustSpend(t, c, hs[:1], false, out(asset, program, 100))
	child, _ := mustSpend(t, c, pouts, false, out(asset, program, 100))
	keep, kouts := mustSpend(t, c, hs[1:], false, out(asset, program, 5))

	if err := c.Drop(parent); err != nil {
		t.Fatal(err)
	}
	gone(t, c, parent, child)
	if p := c.Pending(); !slices.Equal(p, []string{keep}) {
		t.Fatalf("mempool %v", p)
	}
	sameSet(t, "after drop", hashes(c.UTXOs(asset, program, true)), []string{hs[0], kouts[0]})
	mustSpend(t, c, hs[:1], false, out(asset, program, 1))

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

// reorgChain is a chain with funding in block 1, tx a in block 2, tx b in
// block 3, and the outputs of a and b.
type reorgChain struct {
	c          *sim.Chain
	funding    []string
	a, b       string
	aOut, bOut []string
}

func reorgSetup(t *testing.T) reorgChain {
	r := reorgChain{c: sim.New()}
	r.funding = mustAdd(t, r.c, 100, 200)
	r.a, r.aOut = mustSpend(t, r.c, r.funding[:1], false, out(asset, program, 100))
	mustMine(t, r.c, 1)
	r.b, r.bOut = mustSpend(t, r.c, r.funding[1:], false, out(asset, program, 200))
	mustMine(t, r.c, 1)
	return r
}

func checkLinked(t *testing.T, c *sim.Chain) {
	t.Helper()
	tip := c.Tip()
	prev := mustBlock(t, c, 0)
	for h := uint64(1); h <= tip.Height; h++ {
		b, err := c.Block(h)
		if err != nil || b.PreviousHash != prev.Hash || b.Height != h || len(b.Txs) == 0 || !b.Txs[0].Coinbase() {
			t.Fatalf("block %d: %+v, %v", h, b, err)
		}
		for _, tx := range b.Txs {
			if got, err := c.Tx(tx.ID); err != nil || got.BlockHash != b.Hash {
				t.Fatalf("tx %s of block %d: %+v, %v", tx.ID, h, got, err)
			}
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
	r := reorgSetup(t)
	c, a, b, aOut, bOut := r.c, r.a, r.b, r.aOut, r.bOut
	old := c.Tip()
	b1 := mustBlock(t, c, 1)
	b2 := mustBlock(t, c, 2)
	before := hashes(c.UTXOs(asset, program, false))

	tip, err := c.Reorg(2, false)
	if err != nil {
		t.Fatal(err)
	}
	if tip.Height != old.Height+1 || tip.BlockHash == old.BlockHash {
		t.Fatalf("tip %+v, old %+v", tip, old)
	}
	if nb1 := mustBlock(t, c, 1); nb1.Hash != b1.Hash {
		t.Fatal("block below the fork changed")
	}
	nb2 := mustBlock(t, c, 2)
	if nb2.Hash == b2.Hash {
		t.Fatal("block 2 kept its hash on the new branch")
	}
	// A coinbase is the same transaction at the same height on either branch.
	if nb2.Txs[0].ID != b2.Txs[0].ID || !slices.Equal(txIDs(nb2.Txs[1:]), []string{a, b}) {
		t.Fatalf("block 2 on the new branch holds %v", txIDs(nb2.Txs))
	}
	for _, id := range []string{a, b} {
		tx, err := c.Tx(id)
		if err != nil || tx.Height != 2 || tx.BlockHash != nb2.Hash {
			t.Fatalf("tx %s: %+v, %v", id, tx, err)
		}
	}
	sameSet(t, "utxos after reorg", hashes(c.UTXOs(asset, program, false)), before)
	sameSet(t, "utxos are the outputs", before, append(slices.Clone(aOut), bOut...))
	if n := len(c.UTXOs(btm, sim.MinerProgram, false)); n != 4 {
		t.Fatalf("%d coinbase outputs for blocks 1 to 4", n)
	}
	checkLinked(t, c)
}

func TestReorgDrop(t *testing.T) {
	r := reorgSetup(t)
	c, funding, a, b := r.c, r.funding, r.a, r.b
	tip, err := c.Reorg(2, true)
	if err != nil || tip.Height != 4 {
		t.Fatalf("reorg: %+v, %v", tip, err)
	}
	gone(t, c, a, b)
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
	r := reorgSetup(t)
	c, aOut := r.c, r.aOut
	p, _ := mustSpend(t, c, aOut, false, out(asset, program, 100))
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

func TestReorgUndoesASpentCoinbase(t *testing.T) {
	c := sim.New()
	mustMine(t, c, 1+chain.CoinbaseMaturity)
	reward := mustBlock(t, c, 1).Txs[0].Outputs[0].UTXO
	spend, _ := mustSpend(t, c, []string{reward}, false, out(btm, program, 1))
	mustMine(t, c, 1)
	// The spend goes back to the mempool and is mined again; block 1's coinbase is untouched.
	if _, err := c.Reorg(1, false); err != nil {
		t.Fatal(err)
	}
	if tx, err := c.Tx(spend); err != nil || tx.Height != 102 {
		t.Fatalf("spend after reorg %+v, %v", tx, err)
	}
	// Removing block 1 removes its coinbase: the spend vanishes on the new branch.
	if _, err := c.Reorg(int(c.Tip().Height), false); err != nil {
		t.Fatal(err)
	}
	gone(t, c, spend)
	checkLinked(t, c)
}

// script runs the same calls on a chain and returns every hash it saw.
func script(t *testing.T, c *sim.Chain, amount uint64) []string {
	var seen []string
	hs := mustAdd(t, c, 1, 2, amount)
	seen = append(seen, hs...)
	id, outs := mustSpend(t, c, hs[:2], false, out(asset2, other, 3))
	seen = append(seen, id)
	seen = append(seen, outs...)
	id, _ = mustSpend(t, c, hs[2:], true, out(asset, program, amount))
	seen = append(seen, id, mustMine(t, c, 3).BlockHash)
	st, err := c.Reorg(2, false)
	if err != nil {
		t.Fatal(err)
	}
	seen = append(seen, st.BlockHash)
	for h := uint64(0); h <= st.Height; h++ {
		b := mustBlock(t, c, h)
		seen = append(seen, b.Hash)
		seen = append(seen, txIDs(b.Txs)...)
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
}

func TestValidation(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 10)
	tip := c.Tip()
	bad := []struct {
		name    string
		asset   string
		program string
		amounts []uint64
	}{
		{"short asset", asset[:62], program, []uint64{1}},
		{"upper-case asset", strings.ToUpper(asset), program, []uint64{1}},
		{"odd program", asset, "001", []uint64{1}},
		{"non-hex program", asset, "zz", []uint64{1}},
		{"empty program", asset, "", []uint64{1}},
		{"zero amount", asset, program, []uint64{1, 0}},
		{"no amounts", asset, program, nil},
	}
	for _, b := range bad {
		if _, err := c.AddUTXOs(b.asset, b.program, b.amounts); !errors.Is(err, sim.ErrInvalid) {
			t.Errorf("%s: %v", b.name, err)
		}
	}
	outs := []sim.Output{out(asset, program, 1)}
	spends := map[string]func() error{
		"duplicate input": func() error { _, _, err := c.Spend([]string{hs[0], hs[0]}, outs, false); return err },
		"no input":        func() error { _, _, err := c.Spend(nil, outs, false); return err },
		"no output":       func() error { _, _, err := c.Spend(hs, nil, false); return err },
		"bad input":       func() error { _, _, err := c.Spend([]string{"00"}, outs, false); return err },
		"bad output": func() error {
			_, _, err := c.Spend(hs, []sim.Output{out(asset, program, 0)}, false)
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
	b2 := mustBlock(t, c, 2)
	b3 := mustBlock(t, c, 3)
	if _, err := c.Reorg(2, false); err != nil {
		t.Fatal(err)
	}
	n2 := mustBlock(t, c, 2)
	n3 := mustBlock(t, c, 3)
	if n2.Hash == b2.Hash || n3.Hash == b3.Hash || n2.PreviousHash != b2.PreviousHash {
		t.Fatalf("new branch reuses hashes: %s %s", n2.Hash, n3.Hash)
	}
	checkLinked(t, c)
}

func TestConcurrentSpendsOfOneOutput(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 100)
	outs := []sim.Output{out(asset, program, 100)}
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, _, err := c.Spend(hs, outs, false); err != nil {
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
	pending := c.Pending()
	if len(pending) != 32 {
		t.Fatalf("mempool holds %d spends of one output, want 32", len(pending))
	}
	mustMine(t, c, 1)
	if ids := txIDs(mustBlock(t, c, 2).Txs[1:]); !slices.Equal(ids, pending[:1]) {
		t.Fatalf("block holds %v, want the first spend %s", ids, pending[0])
	}
	gone(t, c, pending[1:]...)
}
