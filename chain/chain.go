// Package chain reads the state of a UTXO-model chain (Bytom first) from one of
// its public APIs: a blockcenter wallet server or a bytomd node (New picks one
// by BUFFERD_CHAIN_KIND).
//
// The syncer depends only on the Source interface, so the same code runs against
// the simulated chain in chain/sim and against the real services.
package chain

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// defaultTimeout bounds every call a client makes when the caller's context has
// no earlier deadline.
const defaultTimeout = 10 * time.Second

// Sentinel errors returned by every client.
var (
	// ErrTxNotFound means the source does not know the transaction.
	ErrTxNotFound = errors.New("chain: transaction not found")
	// ErrBlockNotFound means the source has no block at that height or hash.
	ErrBlockNotFound = errors.New("chain: block not found")
)

// APIError is a response whose envelope reports a failure (blockcenter code other
// than 200, bytomd status "fail") or whose HTTP status is not 200.
type APIError struct {
	Source     string // "blockcenter" or "bytomd"
	Path       string // the route called
	HTTPStatus int
	Code       string // the envelope's code, e.g. "300" or "BTM107"
	Msg        string // the envelope's message, with its detail after ": " when it has one
}

func (e *APIError) Error() string {
	return fmt.Sprintf("chain: %s %s: http %d code %s: %s", e.Source, e.Path, e.HTTPStatus, e.Code, e.Msg)
}

// Filter selects the UTXOs of one contract pool.
type Filter struct {
	Asset       string // 64 hex asset id
	Program     string // hex control program
	Unconfirmed bool   // also list outputs of transactions not yet in a block
}

// BTMAsset is the asset id of BTM, the chain's native asset: the one asset a
// transaction that fails (status_fail) still moves (see Tx.Moves).
const BTMAsset = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"

// CoinbaseMaturity is how many blocks after its own a coinbase output becomes
// spendable: one created at height h may be spent once the tip is h+100
// (bytomd's consensus.CoinbasePendingBlockNumber; its wallet reports h+100 as
// the output's valid_height).
const CoinbaseMaturity = 100

// UTXO is an unspent output as a source reports it. Amounts are uint64, the
// chain's own type: real values exceed 2^53, so they never pass through a float.
type UTXO struct {
	Hash      string
	Asset     string
	Program   string
	Amount    uint64
	Confirmed bool   // false when known only from a pending transaction (not all sources tell)
	TxID      string // the transaction that created it, when the source tells
}

// TxIO is one input or output of a transaction.
type TxIO struct {
	Type    string // input: spend, coinbase or issue; output: control or retire
	UTXO    string // input: the spent output id (spend only); output: the new output id
	Address string // "" when the program has no address (non-P2W programs)
	Asset   string
	Program string
	Amount  uint64
}

// Tx is a transaction, confirmed (Height > 0) or pending (Height == 0).
type Tx struct {
	ID         string
	StatusFail bool
	Height     uint64
	BlockHash  string
	BlockTime  time.Time
	Inputs     []TxIO
	Outputs    []TxIO
}

// Confirmed reports whether the transaction is in a block.
func (t *Tx) Confirmed() bool { return t.Height > 0 }

// Coinbase reports whether t is a block's coinbase transaction (its input
// creates the block reward).
func (t *Tx) Coinbase() bool { return len(t.Inputs) > 0 && t.Inputs[0].Type == "coinbase" }

// Moves reports whether t, once in a block, spends its inputs and creates its
// outputs of asset: a transaction that failed (status_fail) is kept in its
// block, but only its BTM parts take effect (bytomd applies the fee and
// nothing else), so it moves BTM and no other asset.
func (t *Tx) Moves(asset string) bool { return !t.StatusFail || asset == BTMAsset }

// Block is one block with its transactions.
type Block struct {
	Hash         string
	PreviousHash string
	Height       uint64
	Time         time.Time
	Txs          []Tx
}

// Status is the tip of the chain.
type Status struct {
	Height    uint64
	BlockHash string
}

// Source is what the syncer reads from every chain source. Every method
// honours ctx and a timeout.
type Source interface {
	// GetTransaction returns one transaction or ErrTxNotFound.
	GetTransaction(ctx context.Context, txID string) (*Tx, error)
	// ChainStatus returns the current tip.
	ChainStatus(ctx context.Context) (Status, error)
}

// Lister is implemented by sources that list a pool's unspent outputs
// (blockcenter): the syncer then reconciles each pool with the whole list.
type Lister interface {
	// ListUTXOs returns every UTXO matching f, following all pages.
	ListUTXOs(ctx context.Context, f Filter) ([]UTXO, error)
}

// Indexer is a source the syncer indexes itself, block by block, with the
// mempool on top (bytomd): it needs no wallet and sees every program.
type Indexer interface {
	Source
	// GetBlock returns the block at height (0 is the genesis block) or
	// ErrBlockNotFound.
	GetBlock(ctx context.Context, height uint64) (*Block, error)
	// Mempool returns the ids of the transactions in the mempool.
	Mempool(ctx context.Context) ([]string, error)
	// MempoolTx returns a transaction of the mempool, or ErrTxNotFound once
	// it left it (mined or dropped).
	MempoolTx(ctx context.Context, txID string) (*Tx, error)
}
