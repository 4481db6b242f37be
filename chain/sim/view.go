package sim

import (
	"encoding/hex"
	"strconv"
	"time"

	"github.com/bufferd/bufferd/chain"
)

// genesisMessage is the arbitrary data of the genesis coinbase input.
const genesisMessage = "bufferd simulated chain: no real value here"

// txView is a consistent copy of a transaction.
type txView struct {
	id        string
	kind      txKind
	fail      bool
	inBlock   bool
	height    uint64
	blockHash string
	blockTime time.Time
	submitted time.Time
	inputs    []*utxo
	outputs   []*utxo
}

func snapshotTx(t *tx) txView {
	v := txView{id: t.id, kind: t.kind, fail: t.fail, submitted: t.submitted, inputs: t.inputs, outputs: t.outputs}
	if t.block != nil {
		v.inBlock, v.height, v.blockHash, v.blockTime = true, t.block.height, t.block.hash, t.block.time
	}
	return v
}

// size is a made-up serialized size in bytes.
func (v txView) size() int { return 120 + 90*len(v.inputViews()) + 70*len(v.outputs) }

// muxID is the made-up id of a transaction's mux entry: its mux_id, and the
// source_id of its outputs in the node's wallet listing.
func muxID(txID string) string { return hashOf("mux", txID) }

// inputView is one input as every route shows it.
type inputView struct {
	kind   string // spend, issue or coinbase
	spent  *utxo  // the output a spend input spends
	asset  string
	amount uint64
	data   string // issue: the issuance program; coinbase: the arbitrary data
}

// inputViews lists the inputs: the outputs a spend transaction spends, one
// issue input per output of a funding transaction, or a coinbase's one input.
func (v txView) inputViews() []inputView {
	switch v.kind {
	case coinbaseTx:
		return []inputView{{kind: "coinbase", asset: zeroHash, data: arbitrary(v.height)}}
	case issueTx:
		ins := make([]inputView, len(v.outputs))
		for i, o := range v.outputs {
			ins[i] = inputView{kind: "issue", asset: o.asset, amount: o.amount, data: issuanceProgram(o.asset)}
		}
		return ins
	}
	ins := make([]inputView, len(v.inputs))
	for i, u := range v.inputs {
		ins[i] = inputView{kind: "spend", spent: u, asset: u.asset, amount: u.amount}
	}
	return ins
}

// arbitrary is a coinbase input's data: a message in the genesis block, then
// a zero byte and the height in decimal, as bytomd writes it.
func arbitrary(height uint64) string {
	if height == 0 {
		return hex.EncodeToString([]byte(genesisMessage))
	}
	return "00" + hex.EncodeToString([]byte(strconv.FormatUint(height, 10)))
}

// issuanceProgram is a made-up issuance program of asset, shaped like the
// ones bytomd's asset builder writes (a key, then OP_TRUE-like checks).
func issuanceProgram(asset string) string { return "ae20" + hashOf("issuer", asset) + "5151ad" }

func (in inputView) toChain() chain.TxIO {
	io := chain.TxIO{Type: in.kind, Asset: in.asset, Amount: in.amount}
	if in.spent != nil {
		io.UTXO, io.Address, io.Program = in.spent.hash, in.spent.address, in.spent.program
	}
	return io
}

func outputToChain(u *utxo) chain.TxIO {
	return chain.TxIO{Type: "control", UTXO: u.hash, Address: u.address, Asset: u.asset, Program: u.program, Amount: u.amount}
}

func (v txView) toChain() *chain.Tx {
	t := &chain.Tx{ID: v.id, StatusFail: v.fail, Height: v.height, BlockHash: v.blockHash, BlockTime: v.blockTime}
	for _, in := range v.inputViews() {
		t.Inputs = append(t.Inputs, in.toChain())
	}
	for _, u := range v.outputs {
		t.Outputs = append(t.Outputs, outputToChain(u))
	}
	return t
}

// blockView is a consistent copy of a block.
type blockView struct {
	hash   string
	prev   string
	height uint64
	time   time.Time
	txs    []txView
}

// findBlockLocked finds a block by hash when hash is not empty, else by
// height; nil when there is none.
func (c *Chain) findBlockLocked(height uint64, hash string) *block {
	if hash != "" {
		return c.byHash[hash]
	}
	if height < uint64(len(c.blocks)) {
		return c.blocks[height]
	}
	return nil
}

// blockLocked finds a block by hash when hash is not empty, else by height.
func (c *Chain) blockLocked(height uint64, hash string) (blockView, bool) {
	b := c.findBlockLocked(height, hash)
	if b == nil {
		return blockView{}, false
	}
	return viewOf(b), true
}

// viewOf copies b.
func viewOf(b *block) blockView {
	v := blockView{hash: b.hash, prev: b.prev, height: b.height, time: b.time, txs: make([]txView, len(b.txs))}
	for i, t := range b.txs {
		v.txs[i] = snapshotTx(t)
	}
	return v
}

// reward is what the block's coinbase pays.
func (v blockView) reward() uint64 { return v.txs[0].outputs[0].amount }

func (v blockView) toChain() *chain.Block {
	b := &chain.Block{Hash: v.hash, PreviousHash: v.prev, Height: v.height, Time: v.time, Txs: make([]chain.Tx, len(v.txs))}
	for i, t := range v.txs {
		b.Txs[i] = *t.toChain()
	}
	return b
}
