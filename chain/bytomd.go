package chain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	segjson "github.com/segmentio/encoding/json"
)

// Bytomd reads a bytomd (v1.1) node through its JSON-RPC API: blocks, the
// mempool and the tip, which is all the syncer's chain index needs. It does
// not use the node's wallet: its list-unspent-outputs route is a wallet view
// (never a P2W output with smart_contract:true, only the wallet's own with
// false), so it cannot list a pool's outputs.
type Bytomd struct {
	t transport
}

var _ Indexer = (*Bytomd)(nil)

// NewBytomd returns a client of the node whose API listens at baseURL.
func NewBytomd(baseURL string, opts ...Option) *Bytomd {
	return &Bytomd{t: newTransport("bytomd", baseURL, newConfig(opts))}
}

// btmEnvelope is the node's answer. Handler errors carry error_detail;
// request-decoding errors (HTTP 400) and unknown routes (HTTP 500) carry
// detail and temporary instead.
type btmEnvelope struct {
	Status      string          `json:"status"`
	Data        json.RawMessage `json:"data"`
	Code        string          `json:"code"`
	Msg         string          `json:"msg"`
	ErrorDetail string          `json:"error_detail"`
	Detail      string          `json:"detail"`
}

// call POSTs in to path and decodes data into out. status "fail" is an *APIError.
func (b *Bytomd) call(ctx context.Context, path string, in, out any) error {
	if in == nil {
		in = struct{}{}
	}
	r, err := b.t.do(ctx, http.MethodPost, path, nil, in)
	if err != nil {
		return err
	}
	if r.status == http.StatusOK {
		if decodeSuccess(r.body, out) {
			return nil
		}
		resetDecoded(out) // what the fast decoder filled in before it gave up
	}
	var env btmEnvelope
	decodeErr := json.Unmarshal(r.body, &env)
	if decodeErr == nil && env.Status == "fail" {
		msg := env.Msg
		if d := cmpOr(env.ErrorDetail, env.Detail); d != "" {
			msg += ": " + d
		}
		return &APIError{Source: b.t.source, Path: path, HTTPStatus: r.status, Code: env.Code, Msg: snippet([]byte(msg))}
	}
	if r.status != http.StatusOK {
		return b.t.httpError(path, r)
	}
	if decodeErr != nil {
		return b.t.decodeError(path, r, decodeErr)
	}
	if env.Status != "success" {
		return b.t.bad(path, fmt.Sprintf("status %.40q", env.Status))
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return b.t.decodeError(path, r, err)
	}
	return nil
}

// decodeSuccess decodes the data of a success envelope into out in one pass,
// with a decoder several times faster than encoding/json's (blocks are the
// bulk of what the index reads). It reports false for anything else, which
// call then decodes again with encoding/json to say what went wrong.
func decodeSuccess(body []byte, out any) bool {
	env := struct {
		Status string `json:"status"`
		Data   any    `json:"data"`
	}{Data: out}
	return segjson.Unmarshal(body, &env) == nil && env.Status == "success"
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ChainStatus returns the tip: /get-block-count (the height of the best
// block), then the hash of that block.
func (b *Bytomd) ChainStatus(ctx context.Context) (Status, error) {
	h, err := b.blockCount(ctx)
	if err != nil {
		return Status{}, err
	}
	blk, err := b.GetBlock(ctx, h)
	if err != nil {
		return Status{}, err
	}
	return Status{Height: blk.Height, BlockHash: blk.Hash}, nil
}

// blockCount returns the height of the node's best block (/get-block-count;
// despite its name, the genesis block 0 is not counted).
func (b *Bytomd) blockCount(ctx context.Context) (uint64, error) {
	var out struct {
		BlockCount *flexUint `json:"block_count"`
	}
	if err := b.call(ctx, "/get-block-count", nil, &out); err != nil {
		return 0, err
	}
	if out.BlockCount == nil {
		return 0, b.t.bad("/get-block-count", "no block_count")
	}
	return uint64(*out.BlockCount), nil
}

// btmInput is an input: spend (spent_output_id, control_program, and an
// address only for P2W programs), coinbase (arbitrary) or issue
// (issuance_program); the last two spend nothing.
type btmInput struct {
	Type           string   `json:"type"`
	AssetID        string   `json:"asset_id"`
	Amount         flexUint `json:"amount"`
	ControlProgram string   `json:"control_program"`
	Address        string   `json:"address"`
	SpentOutputID  string   `json:"spent_output_id"`
}

// btmOutput is an output; a non-P2W program's output has no address key.
type btmOutput struct {
	Type           string   `json:"type"`
	ID             string   `json:"id"`
	AssetID        string   `json:"asset_id"`
	Amount         flexUint `json:"amount"`
	ControlProgram string   `json:"control_program"`
	Address        string   `json:"address"`
}

type btmTx struct {
	ID         string      `json:"id"`
	StatusFail bool        `json:"status_fail"`
	Inputs     []btmInput  `json:"inputs"`
	Outputs    []btmOutput `json:"outputs"`
}

// btmBlock is what /get-block answers of a block.
type btmBlock struct {
	Hash         string   `json:"hash"`
	Height       *flexInt `json:"height"`
	PreviousHash string   `json:"previous_block_hash"`
	Timestamp    flexInt  `json:"timestamp"`
	Transactions []btmTx  `json:"transactions"`
}

func (x *btmTx) toTx() Tx {
	tx := Tx{ID: x.ID, StatusFail: x.StatusFail,
		Inputs: make([]TxIO, 0, len(x.Inputs)), Outputs: make([]TxIO, 0, len(x.Outputs))}
	for _, in := range x.Inputs {
		tx.Inputs = append(tx.Inputs, TxIO{Type: in.Type, UTXO: in.SpentOutputID, Address: in.Address,
			Asset: in.AssetID, Program: in.ControlProgram, Amount: uint64(in.Amount)})
	}
	for _, o := range x.Outputs {
		tx.Outputs = append(tx.Outputs, TxIO{Type: o.Type, UTXO: o.ID, Address: o.Address,
			Asset: o.AssetID, Program: o.ControlProgram, Amount: uint64(o.Amount)})
	}
	return tx
}

// check reports what makes a decoded transaction unusable.
func (x *btmTx) check() string {
	if x.ID == "" {
		return "transaction without id"
	}
	for _, in := range x.Inputs {
		if in.Type == "spend" && in.SpentOutputID == "" {
			return "spend input without spent_output_id in transaction " + x.ID
		}
	}
	for _, o := range x.Outputs {
		if o.Type == "control" && o.ID == "" {
			return "output without id in transaction " + x.ID
		}
	}
	return ""
}

// GetBlock returns the block at height (0 is the genesis block) or
// ErrBlockNotFound. A height beyond the tip is a handler error (HTTP 200,
// BTM000) like others, so a failed /get-block is ErrBlockNotFound (wrapping
// the *APIError) when the height is above the node's best block.
func (b *Bytomd) GetBlock(ctx context.Context, height uint64) (*Block, error) {
	const path = "/get-block"
	var x btmBlock
	err := b.call(ctx, path, map[string]uint64{"block_height": height}, &x)
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		if n, cerr := b.blockCount(ctx); cerr == nil && height > n {
			return nil, fmt.Errorf("%w: %w", ErrBlockNotFound, apiErr)
		}
	}
	if err != nil {
		return nil, err
	}
	if x.Hash == "" {
		return nil, b.t.bad(path, "block without hash")
	}
	if x.Height == nil || uint64(*x.Height) != height {
		return nil, b.t.bad(path, fmt.Sprintf("asked height %d, got another", height))
	}
	blk := &Block{Hash: x.Hash, PreviousHash: x.PreviousHash, Height: height, Time: unixTime(int64(x.Timestamp))}
	blk.Txs = make([]Tx, 0, len(x.Transactions))
	for i := range x.Transactions {
		if msg := x.Transactions[i].check(); msg != "" {
			return nil, b.t.bad(path, msg)
		}
		tx := x.Transactions[i].toTx()
		tx.Height, tx.BlockHash, tx.BlockTime = height, blk.Hash, blk.Time
		blk.Txs = append(blk.Txs, tx)
	}
	return blk, nil
}

// MempoolTx returns a transaction of the mempool
// (/get-unconfirmed-transaction), or ErrTxNotFound (wrapping the *APIError)
// when the node answers that it is not there: it was mined or dropped.
func (b *Bytomd) MempoolTx(ctx context.Context, txID string) (*Tx, error) {
	const path = "/get-unconfirmed-transaction"
	var x btmTx
	err := b.call(ctx, path, map[string]string{"tx_id": txID}, &x)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.HTTPStatus == http.StatusOK {
		return nil, fmt.Errorf("%w: %w", ErrTxNotFound, apiErr)
	}
	if err != nil {
		return nil, err
	}
	if msg := x.check(); msg != "" {
		return nil, b.t.bad(path, msg)
	}
	if x.ID != txID {
		return nil, b.t.bad(path, "answered another transaction")
	}
	tx := x.toTx()
	return &tx, nil
}

// GetTransaction looks in the mempool first, then in the last scan-depth
// blocks (WithScanDepth); otherwise ErrTxNotFound. (The node's own
// /get-transaction is a wallet route: it knows only the wallet's
// transactions.)
func (b *Bytomd) GetTransaction(ctx context.Context, txID string) (*Tx, error) {
	tx, err := b.MempoolTx(ctx, txID)
	if !errors.Is(err, ErrTxNotFound) {
		return tx, err
	}
	tip, err := b.blockCount(ctx)
	if err != nil {
		return nil, err
	}
	for i := 0; i < b.t.cfg.scanDepth && uint64(i) <= tip; i++ {
		blk, err := b.GetBlock(ctx, tip-uint64(i))
		if errors.Is(err, ErrBlockNotFound) { // a reorg shortened the chain meanwhile
			continue
		}
		if err != nil {
			return nil, err
		}
		for j := range blk.Txs {
			if blk.Txs[j].ID == txID {
				return &blk.Txs[j], nil
			}
		}
	}
	return nil, fmt.Errorf("%w: %s is neither in the mempool nor in the last %d blocks", ErrTxNotFound, txID, b.t.cfg.scanDepth)
}
