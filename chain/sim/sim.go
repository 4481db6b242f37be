// Package sim is an in-memory simulated Bytom chain for development and tests.
//
// It keeps blocks, a mempool and the UTXO set, and serves them over HTTP with
// the same routes and JSON shapes as the real blockcenter, block explorer and
// bytomd node (see Handler), plus control routes under /sim/ to create UTXOs,
// spend them, mine blocks, reorganise the chain and drop pending transactions.
//
// The genesis block is at height 0 and holds no transaction, so every
// transaction in a block has a height of at least 1 (chain.Tx.Confirmed).
// Hashes are deterministic: lowercase hex sha256 over the content (a
// transaction: a per-chain sequence number, its inputs and outputs; an output:
// its transaction id and position; a block: previous hash, height, branch salt
// and transaction ids), so the same sequence of calls always yields the same
// hashes. Block timestamps come from the wall clock and do not enter hashes.
//
// The simulator checks that inputs exist and are spent once; it does not check
// that amounts balance or that anybody signed anything.
package sim

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/bufferd/bufferd/chain"
)

// Limits of one call.
const (
	MaxOutputs    = 100_000 // outputs per AddUTXOs or Spend, inputs per Spend
	MaxBlocks     = 1_000   // blocks per Mine, depth of a Reorg
	MaxProgramLen = 20_000  // hex characters of a control program
)

// Sentinel errors.
var (
	// ErrInvalid means an argument is malformed (bad hex, amount <= 0, ...).
	ErrInvalid = errors.New("sim: invalid argument")
	// ErrUnknownOutput means an input names no confirmed or pending output.
	ErrUnknownOutput = errors.New("sim: unknown output")
	// ErrSpent means an input is already spent by a pending transaction.
	ErrSpent = errors.New("sim: output already spent")
	// ErrNotPending means the transaction is in a block, not in the mempool.
	ErrNotPending = errors.New("sim: transaction is not pending")
)

// Output is one output to create: amount units of asset locked by program.
type Output struct {
	Asset   string `json:"asset"`
	Program string `json:"program"`
	Amount  int64  `json:"amount"`
}

// utxo is an output; immutable once created.
type utxo struct {
	hash    string
	asset   string
	program string
	address string
	amount  int64
	txID    string
	pos     int
	seq     uint64 // creation order, for stable listings
}

// tx is a transaction; height and block change as it is mined or reorganised.
type tx struct {
	id        string
	inputs    []*utxo
	outputs   []*utxo
	fail      bool
	submitted time.Time
	block     *block // nil while pending
}

type block struct {
	hash   string
	prev   string
	height uint64
	time   time.Time
	txs    []*tx
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
	spentBy map[string]*tx              // output hash -> mempool transaction spending it
	// lists caches listLocked's answers until the UTXO set or the mempool
	// changes, so paging through a large pool does not sort it per page.
	lists map[string][]utxoView
}

// New returns a chain holding only the genesis block (height 0).
func New() *Chain {
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
	g := &block{hash: blockHash("", 0, 0, nil), height: 0, time: c.now().UTC().Truncate(time.Second)}
	c.blocks = []*block{g}
	c.byHash[g.hash] = g
	return c
}

// AddUTXOs creates a funding transaction (without inputs) with one output of
// asset and program per amount and mines it at once, alone in a new block; the
// mempool is left as it is. It returns the new output hashes.
func (c *Chain) AddUTXOs(asset, program string, amounts []int64) ([]string, error) {
	if len(amounts) == 0 || len(amounts) > MaxOutputs {
		return nil, fmt.Errorf("%w: need 1 to %d amounts", ErrInvalid, MaxOutputs)
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
	t := c.newTx(nil, outs, false)
	c.txs[t.id] = t
	c.mine([]*tx{t})
	return outputHashes(t), nil
}

// Spend adds a pending transaction spending the outputs named by hashes
// (confirmed UTXOs or outputs of pending transactions) into outputs. With fail
// set it is mined with status_fail: its outputs never become UTXOs and its
// inputs stay unspent. It returns the transaction id and the output hashes.
func (c *Chain) Spend(hashes []string, outputs []Output, fail bool) (string, []string, error) {
	if len(hashes) == 0 || len(hashes) > MaxOutputs {
		return "", nil, fmt.Errorf("%w: need 1 to %d inputs", ErrInvalid, MaxOutputs)
	}
	if len(outputs) == 0 || len(outputs) > MaxOutputs {
		return "", nil, fmt.Errorf("%w: need 1 to %d outputs", ErrInvalid, MaxOutputs)
	}
	seen := make(map[string]bool, len(hashes))
	for _, h := range hashes {
		if !IsHash(h) {
			return "", nil, fmt.Errorf("%w: input %.80q is not 64 lowercase hex", ErrInvalid, h)
		}
		if seen[h] {
			return "", nil, fmt.Errorf("%w: input %s listed twice", ErrInvalid, h)
		}
		seen[h] = true
	}
	if err := validOutputs(outputs); err != nil {
		return "", nil, err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	inputs := make([]*utxo, len(hashes))
	for i, h := range hashes {
		u := c.unspent[h]
		if u == nil {
			u = c.pending[h]
		}
		if u == nil {
			return "", nil, fmt.Errorf("%w: %s", ErrUnknownOutput, h)
		}
		if by := c.spentBy[h]; by != nil {
			return "", nil, fmt.Errorf("%w: %s by pending transaction %s", ErrSpent, h, by.id)
		}
		inputs[i] = u
	}
	t := c.newTx(inputs, outputs, fail)
	c.txs[t.id] = t
	c.mempool = append(c.mempool, t)
	c.indexPending(t)
	return t.id, outputHashes(t), nil
}

// Mine mines n blocks (1 to MaxBlocks); the first takes the whole mempool. It
// returns the new tip.
func (c *Chain) Mine(n int) (chain.Status, error) {
	if n < 1 || n > MaxBlocks {
		return chain.Status{}, fmt.Errorf("%w: blocks must be 1 to %d", ErrInvalid, MaxBlocks)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mineN(n)
	return c.tipLocked(), nil
}

// Reorg removes the last depth blocks (1 to MaxBlocks, never the genesis).
// Their transactions go back to the front of the mempool, or vanish with drop.
// Then depth+1 blocks are mined on a new branch (new block hashes); the first
// takes the mempool. It returns the new tip.
func (c *Chain) Reorg(depth int, drop bool) (chain.Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if depth < 1 || depth > MaxBlocks || depth > len(c.blocks)-1 {
		return chain.Status{}, fmt.Errorf("%w: depth must be 1 to %d", ErrInvalid, min(MaxBlocks, len(c.blocks)-1))
	}
	removed := c.blocks[len(c.blocks)-depth:]
	c.blocks = c.blocks[:len(c.blocks)-depth]
	for i := len(removed) - 1; i >= 0; i-- {
		b := removed[i]
		delete(c.byHash, b.hash)
		for j := len(b.txs) - 1; j >= 0; j-- {
			t := b.txs[j]
			if !t.fail {
				for _, o := range t.outputs {
					c.removeUnspent(o)
				}
				for _, in := range t.inputs {
					c.addUnspent(in)
				}
			}
			t.block = nil
		}
	}
	var back []*tx
	for _, b := range removed {
		back = append(back, b.txs...)
	}
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
// transaction spending its outputs; their inputs are free again.
func (c *Chain) Drop(txID string) error {
	if !IsHash(txID) {
		return fmt.Errorf("%w: tx id %.80q is not 64 lowercase hex", ErrInvalid, txID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.txs[txID]
	if t == nil {
		return fmt.Errorf("%w: %s", chain.ErrTxNotFound, txID)
	}
	if t.block != nil {
		return fmt.Errorf("%w: %s", ErrNotPending, txID)
	}
	gone := map[string]bool{txID: true}
	kept := c.mempool[:0:0]
	for _, m := range c.mempool {
		if !gone[m.id] {
			for _, in := range m.inputs {
				if gone[in.txID] {
					gone[m.id] = true
					break
				}
			}
		}
		if gone[m.id] {
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
// spends plus the unspent outputs of pending transactions (also of those that
// will fail); without, only confirmed UTXOs (also those a pending transaction
// spends).
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

// Tx returns a transaction in the mempool or in a block, or chain.ErrTxNotFound.
func (c *Chain) Tx(id string) (*chain.Tx, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.txs[id]
	if t == nil {
		return nil, fmt.Errorf("%w: %s", chain.ErrTxNotFound, id)
	}
	v := snapshotTx(t)
	return v.toChain(), nil
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

// Pending returns the ids of the mempool transactions in order.
func (c *Chain) Pending() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, len(c.mempool))
	for i, t := range c.mempool {
		ids[i] = t.id
	}
	return ids
}

// ---- internals (c.mu held) ----

func (c *Chain) tipLocked() chain.Status {
	b := c.blocks[len(c.blocks)-1]
	return chain.Status{Height: b.height, BlockHash: b.hash}
}

// newTx builds a transaction with the next sequence number; not yet indexed.
func (c *Chain) newTx(inputs []*utxo, outs []Output, fail bool) *tx {
	c.txSeq++
	t := &tx{inputs: inputs, fail: fail, submitted: c.now().UTC().Truncate(time.Second)}
	t.id = txHash(c.txSeq, inputs, outs, fail)
	t.outputs = make([]*utxo, len(outs))
	for i, o := range outs {
		c.outSeq++
		t.outputs[i] = &utxo{hash: outputHash(t.id, i), asset: o.Asset, program: o.Program,
			address: Address(o.Program), amount: o.Amount, txID: t.id, pos: i, seq: c.outSeq}
	}
	return t
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

// mine appends one block with txs, applying them in order. A transaction whose
// inputs are no longer unspent (its parent failed or vanished) is discarded.
func (c *Chain) mine(txs []*tx) {
	prev := c.blocks[len(c.blocks)-1]
	height := prev.height + 1
	var in []*tx
	for _, t := range txs {
		ok := true
		for _, u := range t.inputs {
			if c.unspent[u.hash] == nil {
				ok = false
				break
			}
		}
		if !ok {
			delete(c.txs, t.id)
			continue
		}
		if !t.fail {
			for _, u := range t.inputs {
				c.removeUnspent(u)
			}
			for _, o := range t.outputs {
				c.addUnspent(o)
			}
		}
		in = append(in, t)
	}
	ids := make([]string, len(in))
	for i, t := range in {
		ids[i] = t.id
	}
	ts := c.now().UTC().Truncate(time.Second)
	if ts.Before(prev.time) {
		ts = prev.time
	}
	b := &block{hash: blockHash(prev.hash, height, c.salt, ids), prev: prev.hash, height: height, time: ts, txs: in}
	for _, t := range in {
		t.block = b
	}
	c.blocks = append(c.blocks, b)
	c.byHash[b.hash] = b
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
		c.spentBy[in.hash] = t
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

// utxoView is a UTXO as a view lists it.
type utxoView struct {
	*utxo
	confirmed bool
}

// listLocked lists the UTXOs of a pool (or of every pool when asset and
// program are both empty) in creation order. The answer is shared: callers
// must not change it.
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
	all := asset == "" && program == ""
	var out []utxoView
	confirmed := c.unspent
	if !all {
		confirmed = c.pools[poolKey(asset, program)]
	}
	for h, u := range confirmed {
		if unconfirmed && c.spentBy[h] != nil {
			continue
		}
		out = append(out, utxoView{u, true})
	}
	if unconfirmed {
		for h, u := range c.pending {
			if c.spentBy[h] != nil || (!all && (u.asset != asset || u.program != program)) {
				continue
			}
			out = append(out, utxoView{u, false})
		}
	}
	slices.SortFunc(out, func(a, b utxoView) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// txView is a consistent copy of a transaction.
type txView struct {
	id        string
	fail      bool
	height    uint64
	blockHash string
	blockTime time.Time
	submitted time.Time
	inputs    []*utxo
	outputs   []*utxo
}

func snapshotTx(t *tx) txView {
	v := txView{id: t.id, fail: t.fail, submitted: t.submitted, inputs: t.inputs, outputs: t.outputs}
	if t.block != nil {
		v.height, v.blockHash, v.blockTime = t.block.height, t.block.hash, t.block.time
	}
	return v
}

// size is a made-up serialized size in bytes.
func (v txView) size() int { return 120 + 90*len(v.inputs) + 70*len(v.outputs) }

func (v txView) toChain() *chain.Tx {
	t := &chain.Tx{ID: v.id, StatusFail: v.fail, Height: v.height, BlockHash: v.blockHash, BlockTime: v.blockTime}
	for _, u := range v.inputs {
		t.Inputs = append(t.Inputs, chain.TxIO{Type: "spend", UTXO: u.hash, Address: u.address,
			Asset: u.asset, Program: u.program, Amount: u.amount})
	}
	for _, u := range v.outputs {
		t.Outputs = append(t.Outputs, chain.TxIO{Type: "control", UTXO: u.hash, Address: u.address,
			Asset: u.asset, Program: u.program, Amount: u.amount})
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

// blockLocked finds a block by hash when hash is not empty, else by height.
func (c *Chain) blockLocked(height uint64, hash string) (blockView, bool) {
	var b *block
	if hash != "" {
		b = c.byHash[hash]
	} else if height < uint64(len(c.blocks)) {
		b = c.blocks[height]
	}
	if b == nil {
		return blockView{}, false
	}
	v := blockView{hash: b.hash, prev: b.prev, height: b.height, time: b.time, txs: make([]txView, len(b.txs))}
	for i, t := range b.txs {
		v.txs[i] = snapshotTx(t)
	}
	return v, true
}

func (v blockView) toChain() *chain.Block {
	b := &chain.Block{Hash: v.hash, PreviousHash: v.prev, Height: v.height, Time: v.time, Txs: make([]chain.Tx, len(v.txs))}
	for i, t := range v.txs {
		b.Txs[i] = *t.toChain()
	}
	return b
}

// ---- hashing and validation ----

// hashOf is sha256 over length-prefixed parts, as lowercase hex.
func hashOf(parts ...string) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, p := range parts {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func txHash(seq uint64, inputs []*utxo, outs []Output, fail bool) string {
	parts := []string{"tx", strconv.FormatUint(seq, 10), strconv.FormatBool(fail), strconv.Itoa(len(inputs))}
	for _, in := range inputs {
		parts = append(parts, in.hash)
	}
	for _, o := range outs {
		parts = append(parts, o.Asset, o.Program, strconv.FormatInt(o.Amount, 10))
	}
	return hashOf(parts...)
}

func outputHash(txID string, pos int) string { return hashOf("output", txID, strconv.Itoa(pos)) }

func blockHash(prev string, height, salt uint64, txIDs []string) string {
	parts := append([]string{"block", prev, strconv.FormatUint(height, 10), strconv.FormatUint(salt, 10)}, txIDs...)
	return hashOf(parts...)
}

func outputHashes(t *tx) []string {
	hs := make([]string, len(t.outputs))
	for i, o := range t.outputs {
		hs[i] = o.hash
	}
	return hs
}

// Address derives the simulator's fake address of a control program:
// "bm1q" followed by the first 38 hex characters of sha256(program).
func Address(program string) string {
	s := sha256.Sum256([]byte(program))
	return "bm1q" + hex.EncodeToString(s[:])[:38]
}

// IsHash reports whether s is 64 lowercase hex characters (an asset id, output
// hash or transaction id).
func IsHash(s string) bool { return len(s) == 64 && isHex(s) }

// IsProgram reports whether s is a non-empty, even-length lowercase hex control
// program of at most MaxProgramLen characters.
func IsProgram(s string) bool {
	return len(s) > 0 && len(s)%2 == 0 && len(s) <= MaxProgramLen && isHex(s)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if (ch < '0' || ch > '9') && (ch < 'a' || ch > 'f') {
			return false
		}
	}
	return true
}

func validOutputs(outs []Output) error {
	for i, o := range outs {
		switch {
		case !IsHash(o.Asset):
			return fmt.Errorf("%w: output %d: asset %.80q is not 64 lowercase hex", ErrInvalid, i, o.Asset)
		case !IsProgram(o.Program):
			return fmt.Errorf("%w: output %d: program must be even-length lowercase hex (max %d)", ErrInvalid, i, MaxProgramLen)
		case o.Amount <= 0:
			return fmt.Errorf("%w: output %d: amount must be > 0", ErrInvalid, i)
		}
	}
	return nil
}
