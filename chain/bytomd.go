package chain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Bytomd reads a bytomd (v1.1) node through its JSON-RPC API. It implements
// Source and BlockSource.
type Bytomd struct {
	t transport
}

var (
	_ Source      = (*Bytomd)(nil)
	_ BlockSource = (*Bytomd)(nil)
)

// NewBytomd returns a client of the node whose API listens at baseURL.
func NewBytomd(baseURL string, opts ...Option) *Bytomd {
	return &Bytomd{t: newTransport("bytomd", baseURL, newConfig(opts))}
}

type btmEnvelope struct {
	Status      string          `json:"status"`
	Data        json.RawMessage `json:"data"`
	Code        string          `json:"code"`
	Msg         string          `json:"msg"`
	ErrorDetail string          `json:"error_detail"`
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
	var env btmEnvelope
	decodeErr := json.Unmarshal(r.body, &env)
	if decodeErr == nil && env.Status == "fail" {
		msg := env.Msg
		if env.ErrorDetail != "" {
			msg += ": " + env.ErrorDetail
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

type btmUTXO struct {
	ID      string  `json:"id"`
	AssetID string  `json:"asset_id"`
	Amount  flexInt `json:"amount"`
	Program string  `json:"program"`
}

// ListUTXOs lists the node's contract UTXOs (smart_contract:true) and keeps
// those of f's asset and program. UTXOs are Confirmed only when f.Unconfirmed
// is false (the node does not report it per UTXO).
func (b *Bytomd) ListUTXOs(ctx context.Context, f Filter) ([]UTXO, error) {
	const path = "/list-unspent-outputs"
	in := map[string]any{"smart_contract": true, "unconfirmed": f.Unconfirmed}
	var list []btmUTXO
	if err := b.call(ctx, path, in, &list); err != nil {
		return nil, err
	}
	var out []UTXO
	seen := make(map[string]bool)
	for _, u := range list {
		if u.AssetID != f.Asset || u.Program != f.Program || seen[u.ID] {
			continue
		}
		if u.ID == "" {
			return nil, b.t.bad(path, "utxo without id")
		}
		seen[u.ID] = true
		out = append(out, UTXO{Hash: u.ID, Asset: u.AssetID, Program: u.Program,
			Amount: int64(u.Amount), Confirmed: !f.Unconfirmed})
	}
	return out, nil
}

// ChainStatus returns the tip: /get-block-count, then the hash of that block.
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

func (b *Bytomd) blockCount(ctx context.Context) (uint64, error) {
	var out struct {
		BlockCount *flexInt `json:"block_count"`
	}
	if err := b.call(ctx, "/get-block-count", nil, &out); err != nil {
		return 0, err
	}
	if out.BlockCount == nil || *out.BlockCount < 0 {
		return 0, b.t.bad("/get-block-count", "no block_count")
	}
	return uint64(*out.BlockCount), nil
}

type btmInput struct {
	Type           string  `json:"type"`
	AssetID        string  `json:"asset_id"`
	Amount         flexInt `json:"amount"`
	ControlProgram string  `json:"control_program"`
	Address        string  `json:"address"`
	SpentOutputID  string  `json:"spent_output_id"`
}

type btmOutput struct {
	Type           string  `json:"type"`
	ID             string  `json:"id"`
	AssetID        string  `json:"asset_id"`
	Amount         flexInt `json:"amount"`
	ControlProgram string  `json:"control_program"`
	Address        string  `json:"address"`
}

type btmTx struct {
	ID         string      `json:"id"`
	StatusFail bool        `json:"status_fail"`
	Inputs     []btmInput  `json:"inputs"`
	Outputs    []btmOutput `json:"outputs"`
}

func (x *btmTx) toTx() Tx {
	tx := Tx{ID: x.ID, StatusFail: x.StatusFail}
	for _, in := range x.Inputs {
		tx.Inputs = append(tx.Inputs, TxIO{Type: in.Type, UTXO: in.SpentOutputID, Address: in.Address,
			Asset: in.AssetID, Program: in.ControlProgram, Amount: int64(in.Amount)})
	}
	for _, o := range x.Outputs {
		tx.Outputs = append(tx.Outputs, TxIO{Type: o.Type, UTXO: o.ID, Address: o.Address,
			Asset: o.AssetID, Program: o.ControlProgram, Amount: int64(o.Amount)})
	}
	return tx
}

// GetBlock returns the block at height or ErrBlockNotFound. The node's error
// codes for a missing block vary, so a failed /get-block is ErrBlockNotFound
// (wrapping the *APIError) when the height is above the node's block count.
func (b *Bytomd) GetBlock(ctx context.Context, height uint64) (*Block, error) {
	const path = "/get-block"
	var x struct {
		Hash         string  `json:"hash"`
		Height       flexInt `json:"height"`
		PreviousHash string  `json:"previous_block_hash"`
		Timestamp    flexInt `json:"timestamp"`
		Transactions []btmTx `json:"transactions"`
	}
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
	if uint64(x.Height) != height {
		return nil, b.t.bad(path, fmt.Sprintf("asked height %d, got %d", height, x.Height))
	}
	blk := &Block{Hash: x.Hash, PreviousHash: x.PreviousHash, Height: height, Time: unixTime(int64(x.Timestamp))}
	blk.Txs = make([]Tx, 0, len(x.Transactions))
	for i := range x.Transactions {
		tx := x.Transactions[i].toTx()
		if tx.ID == "" {
			return nil, b.t.bad(path, "transaction without id")
		}
		tx.Height, tx.BlockHash, tx.BlockTime = height, blk.Hash, blk.Time
		blk.Txs = append(blk.Txs, tx)
	}
	return blk, nil
}

// GetTransaction looks in the mempool first (/get-unconfirmed-transaction),
// then in the last scan-depth blocks (WithScanDepth); otherwise ErrTxNotFound.
func (b *Bytomd) GetTransaction(ctx context.Context, txID string) (*Tx, error) {
	var x btmTx
	err := b.call(ctx, "/get-unconfirmed-transaction", map[string]string{"tx_id": txID}, &x)
	var apiErr *APIError
	switch {
	case err == nil && x.ID == txID:
		tx := x.toTx()
		return &tx, nil
	case err == nil:
		return nil, b.t.bad("/get-unconfirmed-transaction", "answered another transaction")
	case !errors.As(err, &apiErr):
		return nil, err
	}
	// Not in the mempool: scan back from the tip.
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
	return nil, fmt.Errorf("%w: %w", ErrTxNotFound, apiErr)
}
