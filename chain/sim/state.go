package sim

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/bufferd/bufferd/chain"
)

// Internals of Chain; every function here runs with c.mu held.

func (c *Chain) tipLocked() chain.Status {
	b := c.blocks[len(c.blocks)-1]
	return chain.Status{Height: b.height, BlockHash: b.hash}
}

// clock is the time of a new block or transaction, in whole seconds.
func (c *Chain) clock() time.Time { return c.now().UTC().Truncate(time.Second) }

// spendable returns the outputs named by hashes: confirmed UTXOs (mature ones
// when coinbase) or outputs of pending transactions.
func (c *Chain) spendable(hashes []string) ([]*utxo, error) {
	tip := c.tipLocked().Height
	inputs := make([]*utxo, len(hashes))
	for i, h := range hashes {
		u := c.unspent[h]
		if u == nil {
			u = c.pending[h]
		}
		if u == nil {
			return nil, fmt.Errorf("%w: %s", errUnknownOutput, h)
		}
		if u.validHeight > tip {
			return nil, fmt.Errorf("%w: %s can be spent from height %d, the tip is %d", errImmature, h, u.validHeight, tip)
		}
		inputs[i] = u
	}
	return inputs, nil
}

// newTx builds a spend or issue transaction with the next sequence number;
// not yet indexed.
func (c *Chain) newTx(kind txKind, inputs []*utxo, outs []Output, fail bool) *tx {
	c.txSeq++
	t := &tx{id: txHash(c.txSeq, inputs, outs, fail), kind: kind, inputs: inputs, fail: fail, submitted: c.clock()}
	c.addOutputs(t, outs, 0)
	return t
}

// newCoinbase builds the coinbase transaction of the block at height.
func (c *Chain) newCoinbase(height uint64, at time.Time) *tx {
	out := Output{Asset: chain.BTMAsset, Program: MinerProgram, Amount: coinbaseReward}
	if height == 0 {
		out.Program, out.Amount = genesisProgram, genesisAmount
	}
	t := &tx{id: coinbaseHash(height, out), kind: coinbaseTx, submitted: at}
	c.addOutputs(t, []Output{out}, height+chain.CoinbaseMaturity)
	return t
}

// addOutputs creates t's outputs, spendable from validHeight.
func (c *Chain) addOutputs(t *tx, outs []Output, validHeight uint64) {
	t.outputs = make([]*utxo, len(outs))
	for i, o := range outs {
		c.outSeq++
		t.outputs[i] = &utxo{hash: outputHash(t.id, i), asset: o.Asset, program: o.Program,
			address: Address(o.Program), amount: o.Amount, txID: t.id, pos: i, seq: c.outSeq,
			validHeight: validHeight}
	}
}

// mineN mines n blocks, the first with the whole mempool.
func (c *Chain) mineN(n int) {
	txs := c.mempool
	c.mempool = nil
	c.reindexMempool()
	c.mine(txs)
	for i := 1; i < n; i++ {
		c.mine(nil)
	}
}

// mine appends one block on the tip with txs.
func (c *Chain) mine(txs []*tx) {
	prev := c.blocks[len(c.blocks)-1]
	ts := c.clock()
	if ts.Before(prev.time) {
		ts = prev.time
	}
	c.seal(&block{prev: prev.hash, height: prev.height + 1, time: ts}, txs)
}

// seal fills b with its coinbase and then each transaction of txs that can
// be mined, in order, applying them; the others vanish. b becomes the tip.
func (c *Chain) seal(b *block, txs []*tx) {
	cb := c.newCoinbase(b.height, b.time)
	c.txs[cb.id] = cb
	c.apply(cb)
	b.txs = []*tx{cb}
	for _, t := range txs {
		if !c.minable(t, b.height) {
			delete(c.txs, t.id)
			continue
		}
		c.apply(t)
		b.txs = append(b.txs, t)
	}
	ids := make([]string, len(b.txs))
	for i, t := range b.txs {
		ids[i] = t.id
		t.block = b
	}
	b.hash = blockHash(b.prev, b.height, c.salt, ids)
	c.blocks = append(c.blocks, b)
	c.byHash[b.hash] = b
}

// minable reports whether every input of t is unspent and mature at height.
func (c *Chain) minable(t *tx, height uint64) bool {
	for _, u := range t.inputs {
		if c.unspent[u.hash] == nil || u.validHeight > height {
			return false
		}
	}
	return true
}

// apply spends t's inputs and creates its outputs, of the assets it moves.
func (c *Chain) apply(t *tx) {
	for _, u := range t.inputs {
		if t.moves(u.asset) {
			c.removeUnspent(u)
		}
	}
	for _, o := range t.outputs {
		if t.moves(o.asset) {
			c.addUnspent(o)
		}
	}
}

// unapply undoes apply.
func (c *Chain) unapply(t *tx) {
	for _, o := range t.outputs {
		if t.moves(o.asset) {
			c.removeUnspent(o)
		}
	}
	for _, u := range t.inputs {
		if t.moves(u.asset) {
			c.addUnspent(u)
		}
	}
}

// unwind removes the last depth blocks, undoing their transactions, and
// returns those that are not coinbases, in block order; the coinbases vanish.
func (c *Chain) unwind(depth int) []*tx {
	removed := c.blocks[len(c.blocks)-depth:]
	c.blocks = c.blocks[:len(c.blocks)-depth]
	for i := len(removed) - 1; i >= 0; i-- {
		b := removed[i]
		delete(c.byHash, b.hash)
		for j := len(b.txs) - 1; j >= 0; j-- {
			c.unapply(b.txs[j])
			b.txs[j].block = nil
		}
	}
	var back []*tx
	for _, b := range removed {
		for _, t := range b.txs {
			if t.kind == coinbaseTx {
				delete(c.txs, t.id)
				continue
			}
			back = append(back, t)
		}
	}
	return back
}

// spendsAny reports whether t spends an output of one of the transactions in ids.
func spendsAny(t *tx, ids map[string]bool) bool {
	for _, in := range t.inputs {
		if ids[in.txID] {
			return true
		}
	}
	return false
}

func poolKey(asset, program string) string { return asset + "/" + program }

func (c *Chain) addUnspent(u *utxo) {
	clear(c.lists)
	c.unspent[u.hash] = u
	k := poolKey(u.asset, u.program)
	p := c.pools[k]
	if p == nil {
		p = make(map[string]*utxo)
		c.pools[k] = p
	}
	p[u.hash] = u
}

func (c *Chain) removeUnspent(u *utxo) {
	clear(c.lists)
	delete(c.unspent, u.hash)
	k := poolKey(u.asset, u.program)
	if p := c.pools[k]; p != nil {
		delete(p, u.hash)
		if len(p) == 0 {
			delete(c.pools, k)
		}
	}
}

// indexPending records a mempool transaction's outputs and spent inputs.
func (c *Chain) indexPending(t *tx) {
	clear(c.lists)
	for _, o := range t.outputs {
		c.pending[o.hash] = o
	}
	for _, in := range t.inputs {
		if c.spentBy[in.hash] == nil {
			c.spentBy[in.hash] = t
		}
	}
}

// reindexMempool rebuilds pending and spentBy from the mempool.
func (c *Chain) reindexMempool() {
	clear(c.lists)
	clear(c.pending)
	clear(c.spentBy)
	for _, t := range c.mempool {
		c.indexPending(t)
	}
}

// utxoView is a UTXO as a listing shows it.
type utxoView struct {
	*utxo
	confirmed bool
}

// listLocked lists the UTXOs of a pool in creation order (see UTXOs). The
// answer is shared: callers must not change it.
func (c *Chain) listLocked(asset, program string, unconfirmed bool) []utxoView {
	key := poolKey(asset, program) + "/" + strconv.FormatBool(unconfirmed)
	if out, ok := c.lists[key]; ok {
		return out
	}
	out := c.listSorted(asset, program, unconfirmed)
	c.lists[key] = out
	return out
}

func (c *Chain) listSorted(asset, program string, unconfirmed bool) []utxoView {
	var out []utxoView
	for h, u := range c.pools[poolKey(asset, program)] {
		if unconfirmed && c.spentBy[h] != nil {
			continue
		}
		out = append(out, utxoView{u, true})
	}
	if unconfirmed {
		for h, u := range c.pending {
			if c.spentBy[h] != nil || u.asset != asset || u.program != program {
				continue
			}
			out = append(out, utxoView{u, false})
		}
	}
	slices.SortFunc(out, func(a, b utxoView) int { return cmp.Compare(a.seq, b.seq) })
	return out
}
