package chain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	segjson "github.com/segmentio/encoding/json"
)

// blockcenterPrefix is the path prefix used when a blockcenter base URL has none.
const blockcenterPrefix = "/api/v1/btm"

// Blockcenter reads a blockcenter v1 wallet server. It implements Source.
type Blockcenter struct {
	t transport
}

var (
	_ Source = (*Blockcenter)(nil)
	_ Lister = (*Blockcenter)(nil)
)

// NewBlockcenter returns a client of the blockcenter at baseURL. A base URL
// without a path gets blockcenterPrefix.
func NewBlockcenter(baseURL string, opts ...Option) *Blockcenter {
	if u, err := url.Parse(baseURL); err == nil && (u.Path == "" || u.Path == "/") {
		u.Path = blockcenterPrefix
		baseURL = u.String()
	}
	return &Blockcenter{t: newTransport("blockcenter", baseURL, newConfig(opts))}
}

// bcEnvelope is blockcenter's response envelope.
type bcEnvelope struct {
	Code   *int            `json:"code"`
	Msg    string          `json:"msg"`
	Result json.RawMessage `json:"result"`
}

type bcResult[T any] struct {
	Data  T    `json:"data"`
	Start *int `json:"start"`
	Limit *int `json:"limit"`
	Links *struct {
		Next string `json:"next"`
	} `json:"_links"`
}

// call sends one request and decodes result into out. A code other than 200 is
// an *APIError.
func (b *Blockcenter) call(ctx context.Context, method, path string, q url.Values, in, out any) error {
	r, err := b.t.do(ctx, method, path, q, in)
	if err != nil {
		return err
	}
	if r.status == http.StatusOK {
		if decodeBCResult(r.body, out) {
			return nil
		}
		resetDecoded(out) // what the fast decoder filled in before it gave up
	}
	var env bcEnvelope
	decodeErr := json.Unmarshal(r.body, &env)
	if r.status != http.StatusOK {
		apiErr := b.t.httpError(path, r)
		if decodeErr == nil && env.Code != nil {
			apiErr.Code, apiErr.Msg = strconv.Itoa(*env.Code), snippet([]byte(env.Msg))
		}
		return apiErr
	}
	if decodeErr != nil {
		return b.t.decodeError(path, r, decodeErr)
	}
	if env.Code == nil {
		return b.t.bad(path, "no code in envelope")
	}
	if *env.Code != 200 {
		return &APIError{Source: b.t.source, Path: path, HTTPStatus: r.status,
			Code: strconv.Itoa(*env.Code), Msg: snippet([]byte(env.Msg))}
	}
	if len(env.Result) == 0 || string(env.Result) == "null" {
		return b.t.bad(path, "no result in envelope")
	}
	if err := json.Unmarshal(env.Result, out); err != nil {
		return b.t.decodeError(path, r, err)
	}
	return nil
}

// decodeBCResult decodes the result of a success envelope (code 200, a
// result that is not null) into out with the faster decoder bytomd's blocks
// use (a pool's listing is the bulk of what the UTXO sync reads). It
// reports false for anything else, which call then decodes again with
// encoding/json to say what went wrong.
func decodeBCResult(body []byte, out any) bool {
	result := bcPresent{out: out}
	env := struct {
		Code   *int       `json:"code"`
		Result *bcPresent `json:"result"`
	}{Result: &result}
	return segjson.Unmarshal(body, &env) == nil && env.Code != nil && *env.Code == 200 && result.seen
}

// bcPresent decodes a value into out and notes that it was there and not null.
type bcPresent struct {
	out  any
	seen bool
}

func (p *bcPresent) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	p.seen = true
	return segjson.Unmarshal(b, p.out)
}

type bcUTXO struct {
	Hash   string   `json:"hash"`
	Asset  string   `json:"asset"`
	Amount flexUint `json:"amount"`
	Script string   `json:"script"`
}

type bcListRequest struct {
	Filter struct {
		Asset       string `json:"asset"`
		Script      string `json:"script"`
		Unconfirmed bool   `json:"unconfirmed"`
	} `json:"filter"`
	Sort struct {
		By    string `json:"by"`
		Order string `json:"order"`
	} `json:"sort"`
}

// ListUTXOs returns every UTXO of the filter, following all pages. It advances
// by the number of items received and trusts the limit the server echoes, so a
// server capping the page size is still read to the end. A repeated page or
// more than 10,000 pages is an error. UTXOs are Confirmed only when
// f.Unconfirmed is false (blockcenter does not report it per UTXO).
func (b *Blockcenter) ListUTXOs(ctx context.Context, f Filter) ([]UTXO, error) {
	const path = "/q/list-utxos"
	var req bcListRequest
	req.Filter.Asset, req.Filter.Script, req.Filter.Unconfirmed = f.Asset, f.Program, f.Unconfirmed

	var (
		out      []UTXO
		seen     = make(map[string]bool)
		start    = 0
		limit    = b.t.cfg.pageSize
		previous []bcUTXO
	)
	for page := 0; ; page++ {
		if page >= maxPages {
			return nil, fmt.Errorf("%w: blockcenter %s: more than %d pages", errPaging, path, maxPages)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		q := url.Values{"start": {strconv.Itoa(start)}, "limit": {strconv.Itoa(limit)}}
		var res bcResult[[]bcUTXO]
		if err := b.call(ctx, http.MethodPost, path, q, req, &res); err != nil {
			return nil, err
		}
		items := res.Data
		if page > 0 && len(items) > 0 && samePage(items, previous) {
			return nil, fmt.Errorf("%w: blockcenter %s: page at start=%d repeats the previous one", errPaging, path, start)
		}
		for _, it := range items {
			if it.Hash == "" {
				return nil, b.t.bad(path, "utxo without hash")
			}
			if seen[it.Hash] { // the set shifted between pages
				continue
			}
			seen[it.Hash] = true
			prog := it.Script
			if prog == "" {
				prog = f.Program
			}
			asset := it.Asset
			if asset == "" {
				asset = f.Asset
			}
			out = append(out, UTXO{Hash: it.Hash, Asset: asset, Program: prog,
				Amount: uint64(it.Amount), Confirmed: !f.Unconfirmed})
		}
		pageLimit := limit
		if res.Limit != nil && *res.Limit > 0 && *res.Limit < limit {
			pageLimit = *res.Limit
		}
		if len(items) == 0 || len(items) < pageLimit {
			return out, nil
		}
		previous = items
		start += len(items)
	}
}

// samePage reports whether two pages list the same hashes in the same order.
func samePage(a, b []bcUTXO) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Hash != b[i].Hash {
			return false
		}
	}
	return true
}

type bcTxIO struct {
	UTXOID  string   `json:"utxo_id"`
	Script  string   `json:"script"`
	Address string   `json:"address"`
	Asset   string   `json:"asset"`
	Amount  flexUint `json:"amount"`
	Type    string   `json:"type"`
}

type bcTx struct {
	Hash           string   `json:"hash"`
	StatusFail     bool     `json:"status_fail"`
	BlockHeight    flexInt  `json:"block_height"`
	BlockHash      string   `json:"block_hash"`
	BlockTimestamp flexInt  `json:"block_timestamp"`
	Inputs         []bcTxIO `json:"inputs"`
	Outputs        []bcTxIO `json:"outputs"`
}

// GetTransaction returns a transaction; an unknown one (code 300) is
// ErrTxNotFound, also matching *APIError with errors.As.
func (b *Blockcenter) GetTransaction(ctx context.Context, txID string) (*Tx, error) {
	const path = "/merchant/get-transaction"
	var res bcResult[*bcTx]
	err := b.call(ctx, http.MethodPost, path, nil, map[string]string{"tx_id": txID}, &res)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.HTTPStatus == http.StatusOK && apiErr.Code == "300" {
		return nil, fmt.Errorf("%w: %w", ErrTxNotFound, apiErr)
	}
	if err != nil {
		return nil, err
	}
	d := res.Data
	if d == nil || d.Hash == "" {
		return nil, b.t.bad(path, "transaction without hash")
	}
	tx := &Tx{ID: d.Hash, StatusFail: d.StatusFail, BlockHash: d.BlockHash}
	if d.BlockHeight > 0 {
		tx.Height = uint64(d.BlockHeight)
		tx.BlockTime = unixTime(int64(d.BlockTimestamp))
	}
	conv := func(ios []bcTxIO) []TxIO {
		out := make([]TxIO, 0, len(ios))
		for _, io := range ios {
			out = append(out, TxIO{Type: io.Type, UTXO: io.UTXOID, Address: io.Address,
				Asset: io.Asset, Program: io.Script, Amount: uint64(io.Amount)})
		}
		return out
	}
	tx.Inputs, tx.Outputs = conv(d.Inputs), conv(d.Outputs)
	return tx, nil
}

// ChainStatus returns the tip as blockcenter sees it.
func (b *Blockcenter) ChainStatus(ctx context.Context) (Status, error) {
	const path = "/q/chain-status"
	var res bcResult[*struct {
		BlockHeight flexInt `json:"block_height"`
		BlockHash   string  `json:"block_hash"`
	}]
	if err := b.call(ctx, http.MethodGet, path, nil, nil, &res); err != nil {
		return Status{}, err
	}
	if res.Data == nil || res.Data.BlockHash == "" {
		return Status{}, b.t.bad(path, "no block_hash")
	}
	return Status{Height: uint64(res.Data.BlockHeight), BlockHash: res.Data.BlockHash}, nil
}
