package chain

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// Explorer reads a blockmeta-style block explorer: GetTransaction, GetBlock
// (BlockSource) and ChainStatus. It lists no UTXOs, so it is not a Source.
//
// Routes and shapes (all GET, plain JSON without an envelope):
//
//	/transaction/<txid> -> tx
//	/block/<height>     -> {"hash","height","previous_block_hash","timestamp","transactions":[tx...]}
//	/status             -> {"height","hash"}  (the tip)
//
//	tx     = {"id","height","block_hash","timestamp","status_fail","size","detail":[io...]}
//	io     = {"direction":"input"|"output","type","utxo_id","address","asset_id","amount","control_program"}
//
// height 0 means unconfirmed; timestamp is unix seconds. A 404 (or a 200 whose
// body has no id but an "error" or "msg") means not found.
type Explorer struct {
	t transport
}

var _ BlockSource = (*Explorer)(nil)

// NewExplorer returns a client of the explorer at baseURL.
func NewExplorer(baseURL string, opts ...Option) *Explorer {
	return &Explorer{t: newTransport("explorer", baseURL, newConfig(opts))}
}

type exIO struct {
	Direction      string   `json:"direction"`
	Type           string   `json:"type"`
	UTXOID         string   `json:"utxo_id"`
	Address        string   `json:"address"`
	AssetID        string   `json:"asset_id"`
	Amount         flexUint `json:"amount"`
	ControlProgram string   `json:"control_program"`
}

type exTx struct {
	ID         string  `json:"id"`
	Height     flexInt `json:"height"`
	BlockHash  string  `json:"block_hash"`
	Timestamp  flexInt `json:"timestamp"`
	StatusFail bool    `json:"status_fail"`
	Detail     []exIO  `json:"detail"`

	// error bodies
	Error json.RawMessage `json:"error"`
	Msg   string          `json:"msg"`
}

func (x *exTx) toTx() Tx {
	tx := Tx{ID: x.ID, StatusFail: x.StatusFail}
	if x.Height > 0 {
		tx.Height, tx.BlockHash, tx.BlockTime = uint64(x.Height), x.BlockHash, unixTime(int64(x.Timestamp))
	}
	for _, d := range x.Detail {
		io := TxIO{Type: d.Type, UTXO: d.UTXOID, Address: d.Address, Asset: d.AssetID,
			Program: d.ControlProgram, Amount: uint64(d.Amount)}
		if d.Direction == "input" {
			tx.Inputs = append(tx.Inputs, io)
		} else {
			tx.Outputs = append(tx.Outputs, io)
		}
	}
	return tx
}

// get fetches path into out. A 404 is an *APIError, wrapped in notFound when
// that is not nil.
func (e *Explorer) get(ctx context.Context, path string, notFound error, out any) error {
	r, err := e.t.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	if r.status == http.StatusNotFound && notFound != nil {
		return fmt.Errorf("%w: %w", notFound, e.t.httpError(path, r))
	}
	if r.status != http.StatusOK {
		return e.t.httpError(path, r)
	}
	if err := json.Unmarshal(r.body, out); err != nil {
		return e.t.decodeError(path, r, err)
	}
	return nil
}

// errorBody is the APIError of a 200 response carrying an error instead of data.
func (e *Explorer) errorBody(path, msg string, raw json.RawMessage) *APIError {
	if msg == "" {
		msg = string(raw)
	}
	return &APIError{Source: e.t.source, Path: path, HTTPStatus: http.StatusOK, Msg: snippet([]byte(msg))}
}

// GetTransaction returns a transaction or ErrTxNotFound.
func (e *Explorer) GetTransaction(ctx context.Context, txID string) (*Tx, error) {
	path := "/transaction/" + url.PathEscape(txID)
	var x exTx
	if err := e.get(ctx, path, ErrTxNotFound, &x); err != nil {
		return nil, err
	}
	if x.ID == "" {
		if len(x.Error) > 0 || x.Msg != "" {
			return nil, fmt.Errorf("%w: %w", ErrTxNotFound, e.errorBody(path, x.Msg, x.Error))
		}
		return nil, e.t.bad(path, "transaction without id")
	}
	tx := x.toTx()
	return &tx, nil
}

// GetBlock returns the block at height or ErrBlockNotFound.
func (e *Explorer) GetBlock(ctx context.Context, height uint64) (*Block, error) {
	path := "/block/" + strconv.FormatUint(height, 10)
	var x struct {
		Hash         string  `json:"hash"`
		Height       flexInt `json:"height"`
		PreviousHash string  `json:"previous_block_hash"`
		Timestamp    flexInt `json:"timestamp"`
		Transactions []exTx  `json:"transactions"`

		Error json.RawMessage `json:"error"`
		Msg   string          `json:"msg"`
	}
	if err := e.get(ctx, path, ErrBlockNotFound, &x); err != nil {
		return nil, err
	}
	if x.Hash == "" {
		if len(x.Error) > 0 || x.Msg != "" {
			return nil, fmt.Errorf("%w: %w", ErrBlockNotFound, e.errorBody(path, x.Msg, x.Error))
		}
		return nil, e.t.bad(path, "block without hash")
	}
	if uint64(x.Height) != height {
		return nil, e.t.bad(path, fmt.Sprintf("asked height %d, got %d", height, x.Height))
	}
	b := &Block{Hash: x.Hash, PreviousHash: x.PreviousHash, Height: height, Time: unixTime(int64(x.Timestamp))}
	b.Txs = make([]Tx, 0, len(x.Transactions))
	for i := range x.Transactions {
		tx := x.Transactions[i].toTx()
		if tx.ID == "" {
			return nil, e.t.bad(path, "transaction without id")
		}
		tx.Height, tx.BlockHash, tx.BlockTime = height, b.Hash, b.Time
		b.Txs = append(b.Txs, tx)
	}
	return b, nil
}

// ChainStatus returns the tip from GET /status ({"height","hash"}).
func (e *Explorer) ChainStatus(ctx context.Context) (Status, error) {
	const path = "/status"
	var x struct {
		Height flexInt `json:"height"`
		Hash   string  `json:"hash"`
	}
	if err := e.get(ctx, path, nil, &x); err != nil {
		return Status{}, err
	}
	if x.Hash == "" {
		return Status{}, e.t.bad(path, "no hash")
	}
	return Status{Height: uint64(x.Height), BlockHash: x.Hash}, nil
}
