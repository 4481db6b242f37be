// Package sim is an in-memory simulated Bytom chain for development and tests.
//
// It keeps blocks, a mempool and the UTXO set, and serves them over HTTP with
// the same routes and JSON shapes as the real blockcenter, block explorer and
// bytomd v1.1 node (see Handler), plus control routes under /sim/ to create
// UTXOs, spend them, mine blocks, reorganise the chain and drop pending
// transactions.
//
// It behaves like a real bytomd v1.1 node where bufferd can tell:
//
//   - Every block starts with a coinbase transaction paying 412.5 BTM to
//     MinerProgram; the genesis block (height 0) pays 1,407,000,412.5 BTM,
//     above 2^53, to a program nobody owns. A coinbase output can be spent
//     once the tip is chain.CoinbaseMaturity blocks above its block (Spend
//     refuses it before).
//   - A transaction mined with status_fail stays in its block, but only its
//     BTM inputs are spent and only its BTM outputs created (chain.Tx.Moves).
//   - BTM can only be locked in P2W programs (as bytomd's BTM733 says).
//   - The mempool accepts transactions spending the same output. Mining takes
//     it in order: a transaction with an input already spent (or immature)
//     vanishes without a status, and so do the transactions spending its
//     outputs.
//
// Funding transactions (AddUTXOs) have one issue input per output, for any
// asset, BTM included (which a real chain cannot issue).
//
// Hashes are deterministic: lowercase hex sha256 over the content (a
// transaction: a per-chain sequence number, its inputs and outputs; a
// coinbase: its height and output; an output: its transaction id and
// position; a block: previous hash, height, branch salt and transaction ids),
// so the same sequence of calls always yields the same hashes. Block
// timestamps come from the wall clock and do not enter hashes.
//
// The simulator does not check that amounts balance or that anybody signed
// anything.
package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bufferd/bufferd/chain"
)

// Limits of one call.
const (
	maxOutputs    = 100_000 // outputs per AddUTXOs or Spend, inputs per Spend
	maxBlocks     = 1_000   // blocks per Mine, depth of a Reorg
	maxProgramLen = 20_000  // hex characters of a control program
)

// The simulator's miner.
const (
	// MinerProgram is the P2WPKH program every coinbase pays; it is the one
	// program of the node's wallet (see /list-unspent-outputs).
	MinerProgram = "0014b1704bff155858a74505bde5a5dd4af2e19f9e83"
	// minerAccountID and minerAccountAlias name the wallet account owning
	// MinerProgram.
	minerAccountID    = "0SIMMINER0001"
	minerAccountAlias = "miner"
	// coinbaseReward is the BTM (in neu) each block's coinbase pays.
	coinbaseReward uint64 = 41_250_000_000
	// genesisAmount is the BTM (in neu) of the genesis block's coinbase.
	genesisAmount uint64 = 140_700_041_250_000_000
)

// genesisProgram locks the genesis coinbase: a P2WPKH program nobody owns.
const genesisProgram = "0014694971666077422d0c6163f4b082f8298b845a43"

// Sentinel errors.
var (
	// errInvalid means an argument is malformed (bad hex, amount 0, ...).
	errInvalid = errors.New("sim: invalid argument")
	// errUnknownOutput means an input names no confirmed or pending output.
	errUnknownOutput = errors.New("sim: unknown output")
	// errImmature means an input is a coinbase output the tip has not yet
	// made spendable.
	errImmature = errors.New("sim: immature coinbase output")
	// errNotStandard means an output locks BTM in a program that is not P2W
	// (bytomd's BTM733 "Not standard transaction").
	errNotStandard = errors.New("sim: not standard transaction")
	// errNotPending means the transaction is in a block, not in the mempool.
	errNotPending = errors.New("sim: transaction is not pending")
)

// Output is one output to create: amount units of asset locked by program.
type Output struct {
	Asset   string `json:"asset"`
	Program string `json:"program"`
	Amount  uint64 `json:"amount"`
}

// utxo is an output; immutable once created.
type utxo struct {
	hash        string
	asset       string
	program     string
	address     string
	amount      uint64
	txID        string
	pos         int
	seq         uint64 // creation order, for stable listings
	validHeight uint64 // coinbase outputs: the first tip that may spend them; else 0
}

// txKind tells how a transaction's inputs are made.
type txKind uint8

const (
	spendTx    txKind = iota // spends outputs
	issueTx                  // funding: one issue input per output
	coinbaseTx               // a block's first transaction
)

// tx is a transaction; its block changes as it is mined or reorganised.
type tx struct {
	id        string
	kind      txKind
	inputs    []*utxo // the outputs a spend transaction spends
	outputs   []*utxo
	fail      bool
	submitted time.Time
	block     *block // nil while pending
}

// moves reports whether t, once in a block, spends and creates outputs of
// asset (see chain.Tx.Moves).
func (t *tx) moves(asset string) bool { return !t.fail || asset == chain.BTMAsset }

type block struct {
	hash   string
	prev   string
	height uint64
	time   time.Time
	txs    []*tx // the coinbase first
	// answer is the body of /get-block's answer, encoded at the first
	// request: a mined block does not change.
	answer []byte
}

// Chain is a simulated chain. It is safe for concurrent use.
type Chain struct {
	mu      sync.Mutex
	now     func() time.Time
	txSeq   uint64
	outSeq  uint64
	salt    uint64
	blocks  []*block
	byHash  map[string]*block
	mempool []*tx
	txs     map[string]*tx              // every transaction in the mempool or a block
	unspent map[string]*utxo            // the confirmed UTXO set
	pools   map[string]map[string]*utxo // unspent by asset+program
	pending map[string]*utxo            // outputs of mempool transactions
	spentBy map[string]*tx              // output hash -> a mempool transaction spending it
	// lists caches listLocked's answers until the UTXO set or the mempool
	// changes, so paging through a large pool does not sort it per page.
	lists map[string][]utxoView
}

// New returns a chain holding only the genesis block (height 0).
func New() *Chain { return NewNetwork("") }

// NewNetwork returns a chain of another network: the same calls give other
// block hashes from the genesis block on (a node on another chain).
func NewNetwork(network string) *Chain {
	c := &Chain{
		now:     time.Now,
		byHash:  make(map[string]*block),
		txs:     make(map[string]*tx),
		unspent: make(map[string]*utxo),
		pools:   make(map[string]map[string]*utxo),
		pending: make(map[string]*utxo),
		spentBy: make(map[string]*tx),
		lists:   make(map[string][]utxoView),
	}
	if network != "" {
		c.salt = binary.BigEndian.Uint64([]byte(hashOf("network", network))[:8])
	}
	c.seal(&block{prev: zeroHash, height: 0, time: c.clock()}, nil)
	return c
}

// AddUTXOs creates a funding transaction (one issue input per output) with
// one output of asset and program per amount and mines it at once, after the
// coinbase of a new block; the mempool is left as it is. It returns the new
// output hashes.
func (c *Chain) AddUTXOs(asset, program string, amounts []uint64) ([]string, error) {
	if len(amounts) == 0 || len(amounts) > maxOutputs {
		return nil, fmt.Errorf("%w: need 1 to %d amounts", errInvalid, maxOutputs)
	}
	outs := make([]Output, len(amounts))
	for i, a := range amounts {
		outs[i] = Output{Asset: asset, Program: program, Amount: a}
	}
	if err := validOutputs(outs); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.newTx(issueTx, nil, outs, false)
	c.txs[t.id] = t
	c.mine([]*tx{t})
	return outputHashes(t), nil
}

// Spend adds a pending transaction spending the outputs named by hashes
// (confirmed UTXOs or outputs of pending transactions, also ones another
// pending transaction spends) into outputs. With fail set it is mined with
// status_fail: only its BTM inputs are spent and its BTM outputs created. It
// returns the transaction id and the output hashes.
func (c *Chain) Spend(hashes []string, outputs []Output, fail bool) (string, []string, error) {
	if err := validInputs(hashes); err != nil {
		return "", nil, err
	}
	if len(outputs) == 0 || len(outputs) > maxOutputs {
		return "", nil, fmt.Errorf("%w: need 1 to %d outputs", errInvalid, maxOutputs)
	}
	if err := validOutputs(outputs); err != nil {
		return "", nil, err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	inputs, err := c.spendable(hashes)
	if err != nil {
		return "", nil, err
	}
	t := c.newTx(spendTx, inputs, outputs, fail)
	c.txs[t.id] = t
	c.mempool = append(c.mempool, t)
	c.indexPending(t)
	return t.id, outputHashes(t), nil
}

// Mine mines n blocks (1 to 1000); the first takes the whole mempool. It
// returns the new tip.
func (c *Chain) Mine(n int) (chain.Status, error) {
	if n < 1 || n > maxBlocks {
		return chain.Status{}, fmt.Errorf("%w: blocks must be 1 to %d", errInvalid, maxBlocks)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mineN(n)
	return c.tipLocked(), nil
}

// Reorg removes the last depth blocks (1 to 1000, never the genesis).
// Their coinbase transactions vanish; the others go back to the front of the
// mempool, or vanish too with drop. Then depth+1 blocks are mined on a new
// branch (new block hashes); the first takes the mempool. It returns the new
// tip.
func (c *Chain) Reorg(depth int, drop bool) (chain.Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if depth < 1 || depth > maxBlocks || depth > len(c.blocks)-1 {
		return chain.Status{}, fmt.Errorf("%w: depth must be 1 to %d", errInvalid, min(maxBlocks, len(c.blocks)-1))
	}
	back := c.unwind(depth)
	if drop {
		for _, t := range back {
			delete(c.txs, t.id)
		}
	} else {
		c.mempool = append(back, c.mempool...)
	}
	c.reindexMempool()
	c.salt++
	c.mineN(depth + 1)
	return c.tipLocked(), nil
}

// Drop removes a pending transaction from the mempool, with every pending
// transaction spending its outputs.
func (c *Chain) Drop(txID string) error {
	if !isHash(txID) {
		return fmt.Errorf("%w: tx id %.80q is not 64 lowercase hex", errInvalid, txID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.txs[txID]
	if t == nil {
		return fmt.Errorf("%w: %s", chain.ErrTxNotFound, txID)
	}
	if t.block != nil {
		return fmt.Errorf("%w: %s", errNotPending, txID)
	}
	gone := map[string]bool{txID: true}
	kept := c.mempool[:0:0]
	for _, m := range c.mempool {
		if gone[m.id] || spendsAny(m, gone) {
			gone[m.id] = true
			delete(c.txs, m.id)
			continue
		}
		kept = append(kept, m)
	}
	c.mempool = kept
	c.reindexMempool()
	return nil
}

// Tip returns the height and hash of the last block.
func (c *Chain) Tip() chain.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tipLocked()
}

// UTXOs lists the UTXOs of asset and program in creation order, like
// blockcenter: with unconfirmed, the confirmed UTXOs no pending transaction
// spends plus the outputs of pending transactions that no pending transaction
// spends (also of those that will fail); without, only confirmed UTXOs (also
// those a pending transaction spends). Immature coinbase outputs are listed.
func (c *Chain) UTXOs(asset, program string, unconfirmed bool) []chain.UTXO {
	c.mu.Lock()
	defer c.mu.Unlock()
	list := c.listLocked(asset, program, unconfirmed)
	out := make([]chain.UTXO, len(list))
	for i, v := range list {
		out[i] = chain.UTXO{Hash: v.hash, Asset: v.asset, Program: v.program, Amount: v.amount,
			Confirmed: v.confirmed, TxID: v.txID}
	}
	return out
}

// Tx returns a transaction in the mempool or in a block, or chain.ErrTxNotFound
// (also for a transaction that vanished).
func (c *Chain) Tx(id string) (*chain.Tx, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.txs[id]
	if t == nil {
		return nil, fmt.Errorf("%w: %s", chain.ErrTxNotFound, id)
	}
	return snapshotTx(t).toChain(), nil
}

// Block returns the block at height, or chain.ErrBlockNotFound.
func (c *Chain) Block(height uint64) (*chain.Block, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.blockLocked(height, "")
	if !ok {
		return nil, fmt.Errorf("%w: height %d", chain.ErrBlockNotFound, height)
	}
	return v.toChain(), nil
}

// mempoolIDs returns the ids of the mempool transactions in order.
func (c *Chain) mempoolIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, len(c.mempool))
	for i, t := range c.mempool {
		ids[i] = t.id
	}
	return ids
}
