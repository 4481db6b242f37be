package client

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CreatePoolRequest registers a contract pool (POST /v1/pools, admin token).
type CreatePoolRequest struct {
	// Asset is the asset id (64 hex characters).
	Asset string `json:"asset"`
	// Program is the control program locking the pool's UTXOs (hex).
	Program string `json:"program"`
	// FromHeight is the block a node-backed index starts the pool from; 0
	// means the index's default depth below the tip.
	FromHeight int64 `json:"from_height,omitempty"`
	// Unconfirmed, when set, says whether outputs of pending transactions are
	// offered; nil means the server's default.
	Unconfirmed *bool `json:"unconfirmed,omitempty"`
}

// CreatePool registers a pool and returns it; created is false when the pool
// was already registered (then it is returned as it is). It needs the admin
// token (WithAdminToken); without it the error matches ErrUnauthorized.
func (c *Client) CreatePool(ctx context.Context, req CreatePoolRequest) (pool *Pool, created bool, err error) {
	var out Pool
	cl := &call{method: http.MethodPost, path: "/v1/pools", body: req, out: &out, admin: true}
	if err := c.do(ctx, cl); err != nil {
		return nil, false, err
	}
	return &out, cl.status == http.StatusCreated, nil
}

// Cursor is a sync job's position for a pool, or the chain index's.
type Cursor struct {
	Height      int64      `json:"height"`
	BlockHash   string     `json:"block_hash"`
	Epoch       int64      `json:"epoch"`
	LastSuccess *time.Time `json:"last_success"`
	LastError   string     `json:"last_error"`
	UpdatedAt   time.Time  `json:"updated_at"`
	// BlocksBehind is how far the chain's tip is past Height (the chain
	// index's job only; nil for the others).
	BlocksBehind *int64 `json:"blocks_behind,omitempty"`
}

// PoolDetail is a pool with its sync positions by job name (GET /v1/pools/{id}).
type PoolDetail struct {
	Pool
	Sync map[string]Cursor `json:"sync"`
}

// GetPool returns pool id with its UTXO counts and sync positions; an unknown
// pool matches ErrNotFound.
func (c *Client) GetPool(ctx context.Context, id int64) (*PoolDetail, error) {
	var out PoolDetail
	if err := c.do(ctx, &call{method: http.MethodGet, path: "/v1/pools/" + strconv.FormatInt(id, 10), out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// UTXO states of a pool's UTXOs, for ListUTXOsRequest.State.
const (
	UTXOAvailable   = "available"
	UTXOReserved    = "reserved"
	UTXOImmature    = "immature"
	UTXOSpent       = "spent"
	UTXOInvalidated = "invalidated"
)

// PoolUTXO is a UTXO of a pool as GET /v1/pools/{id}/utxos lists it.
type PoolUTXO struct {
	Hash   string `json:"hash"`
	Asset  string `json:"asset"`
	Amount uint64 `json:"amount"`
	// State is one of the UTXO* constants.
	State     string `json:"state"`
	Confirmed bool   `json:"confirmed"`
	// Height is the block of the creating transaction (0 while pending);
	// ValidHeight the tip from which it may be spent (0: at once).
	Height      int64 `json:"height"`
	ValidHeight int64 `json:"valid_height"`
}

// ListUTXOsRequest selects a page of a pool's UTXOs.
type ListUTXOsRequest struct {
	Pool int64
	// State keeps the UTXOs of one state (a UTXO* constant); empty means all.
	State string
	// Limit is the page size (1 to 1000); 0 means the server's default (100).
	Limit int
	// Cursor is the NextCursor of the previous page; empty for the first.
	Cursor string
}

// UTXOPage is a page of a pool's UTXOs; NextCursor is empty on the last page.
type UTXOPage struct {
	UTXOs      []PoolUTXO `json:"utxos"`
	NextCursor string     `json:"next_cursor"`
}

// ListUTXOs returns a page of a pool's UTXOs in a stable order.
func (c *Client) ListUTXOs(ctx context.Context, req ListUTXOsRequest) (*UTXOPage, error) {
	q := pageQuery(req.Limit, req.Cursor)
	if req.State != "" {
		q.Set("state", req.State)
	}
	var out UTXOPage
	path := "/v1/pools/" + strconv.FormatInt(req.Pool, 10) + "/utxos?" + q.Encode()
	if err := c.do(ctx, &call{method: http.MethodGet, path: path, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllUTXOs yields every UTXO ListUTXOs would page through, fetching pages as
// the loop goes; it stops at the first error, which it yields.
func (c *Client) AllUTXOs(ctx context.Context, req ListUTXOsRequest) iter.Seq2[PoolUTXO, error] {
	return pages(func(cursor string) ([]PoolUTXO, string, error) {
		req.Cursor = cursor
		p, err := c.ListUTXOs(ctx, req)
		if err != nil {
			return nil, "", err
		}
		return p.UTXOs, p.NextCursor, nil
	})
}

// TxIO is an input or output of a recorded transaction.
type TxIO struct {
	Address string `json:"address"`
	Asset   string `json:"asset"`
	Amount  uint64 `json:"amount"`
}

// Transaction is a transaction spending a pool's UTXOs, as the chain index
// recorded it.
type Transaction struct {
	TxID      string    `json:"tx_id"`
	Pool      int64     `json:"pool"`
	Height    int64     `json:"height"`
	BlockHash string    `json:"block_hash"`
	BlockTime time.Time `json:"block_time"`
	// StatusFail is true for a transaction the chain included as failed: it
	// spent only its fee.
	StatusFail bool   `json:"status_fail"`
	Inputs     []TxIO `json:"inputs"`
	Outputs    []TxIO `json:"outputs"`
}

// ListTransactionsRequest selects a page of a pool's recorded transactions.
type ListTransactionsRequest struct {
	Pool int64
	// Address keeps the transactions with an input or output of it.
	Address string
	// Limit is the page size (1 to 1000); 0 means the server's default (100).
	Limit int
	// Cursor is the NextCursor of the previous page; empty for the first.
	Cursor string
}

// TransactionPage is a page of transactions, newest first; NextCursor is
// empty on the last page.
type TransactionPage struct {
	Transactions []Transaction `json:"transactions"`
	NextCursor   string        `json:"next_cursor"`
}

// ListTransactions returns a page of the transactions the chain index
// recorded for a pool, newest first (GET /v1/transactions).
func (c *Client) ListTransactions(ctx context.Context, req ListTransactionsRequest) (*TransactionPage, error) {
	q := pageQuery(req.Limit, req.Cursor)
	q.Set("pool", strconv.FormatInt(req.Pool, 10))
	if req.Address != "" {
		q.Set("address", req.Address)
	}
	var out TransactionPage
	if err := c.do(ctx, &call{method: http.MethodGet, path: "/v1/transactions?" + q.Encode(), out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllTransactions yields every transaction ListTransactions would page
// through, newest first; it stops at the first error, which it yields.
func (c *Client) AllTransactions(ctx context.Context, req ListTransactionsRequest) iter.Seq2[Transaction, error] {
	return pages(func(cursor string) ([]Transaction, string, error) {
		req.Cursor = cursor
		p, err := c.ListTransactions(ctx, req)
		if err != nil {
			return nil, "", err
		}
		return p.Transactions, p.NextCursor, nil
	})
}

// Leader is the current term of the replicated sync jobs.
type Leader struct {
	ID    string    `json:"id"`
	Epoch int64     `json:"epoch"`
	Since time.Time `json:"since"`
}

// ChainStatus is the chain source as the syncer last saw it.
type ChainStatus struct {
	TipHeight   int64      `json:"tip_height"`
	TipHash     string     `json:"tip_hash"`
	LastSuccess *time.Time `json:"last_success"`
	// LastError is the error of the last pass, empty when it succeeded.
	LastError string    `json:"last_error"`
	UpdatedAt time.Time `json:"updated_at"`
}

// PoolStatus is a pool's sync positions by job name.
type PoolStatus struct {
	ID   int64             `json:"id"`
	Sync map[string]Cursor `json:"sync"`
}

// Status is the service's sync state (GET /v1/status). Leader is nil when
// no syncer was ever elected; Chain is nil before the syncer first ran.
type Status struct {
	Leader *Leader      `json:"leader"`
	Chain  *ChainStatus `json:"chain"`
	Pools  []PoolStatus `json:"pools"`
}

// Status returns the sync leader, the chain source's tip and each pool's
// sync positions.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var out Status
	if err := c.do(ctx, &call{method: http.MethodGet, path: "/v1/status", out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// pageQuery is the query of a paged list.
func pageQuery(limit int, cursor string) url.Values {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	return q
}

// pages yields the items of every page fetch returns, starting with the
// empty cursor and following each page's next cursor until it is empty.
func pages[T any](fetch func(cursor string) ([]T, string, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		cursor := ""
		for {
			items, next, err := fetch(cursor)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if next == "" {
				return
			}
			cursor = next
		}
	}
}

// StateLive selects, in ListReservationsRequest.State, the reservations
// that are held or submitted.
const StateLive = "live"

// ListReservationsRequest selects a page of reservations (admin token).
type ListReservationsRequest struct {
	// Pool keeps one pool's reservations; 0 means every pool.
	Pool int64
	// State keeps one state (a State* constant, or StateLive for held and
	// submitted); empty means all.
	State string
	// Owner keeps one owner's reservations.
	Owner string
	// Limit is the page size (1 to 1000); 0 means the server's default (100).
	Limit int
	// Cursor is the NextCursor of the previous page; empty for the first.
	Cursor string
}

// ReservationPage is a page of reservations, newest first within a pool;
// NextCursor is empty on the last page.
type ReservationPage struct {
	Reservations []Reservation `json:"reservations"`
	NextCursor   string        `json:"next_cursor"`
}

// ListReservations returns a page of the reservations the server's journal
// holds (GET /v1/reservations, admin token: see WithAdminToken). The journal
// follows Redis: a reservation released a moment ago may still list as held.
func (c *Client) ListReservations(ctx context.Context, req ListReservationsRequest) (*ReservationPage, error) {
	q := pageQuery(req.Limit, req.Cursor)
	if req.Pool != 0 {
		q.Set("pool", strconv.FormatInt(req.Pool, 10))
	}
	if req.State != "" {
		q.Set("state", req.State)
	}
	if req.Owner != "" {
		q.Set("owner", req.Owner)
	}
	var out ReservationPage
	if err := c.do(ctx, &call{method: http.MethodGet, path: "/v1/reservations?" + q.Encode(), out: &out, admin: true}); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllReservations yields every reservation ListReservations would page
// through; it stops at the first error, which it yields.
func (c *Client) AllReservations(ctx context.Context, req ListReservationsRequest) iter.Seq2[Reservation, error] {
	return pages(func(cursor string) ([]Reservation, string, error) {
		req.Cursor = cursor
		p, err := c.ListReservations(ctx, req)
		if err != nil {
			return nil, "", err
		}
		return p.Reservations, p.NextCursor, nil
	})
}

// Readiness is the answer of GET /readyz: "ok" or "unavailable", and each
// check ("redis", "postgres", "ready": no rebuild running) "ok" or "fail".
type Readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// Ready asks the API once, without retrying, whether it can serve
// reservations (GET /readyz). It returns the readiness report with a nil
// error when ready, and with an error matching ErrUnavailable naming the
// failed checks when not.
func (c *Client) Ready(ctx context.Context) (*Readiness, error) {
	var out Readiness
	err := c.do(ctx, &call{method: http.MethodGet, path: "/readyz", out: &out, failOut: &out, once: true})
	if err != nil {
		var failed []string
		for name, v := range out.Checks {
			if v != "ok" {
				failed = append(failed, name)
			}
		}
		if len(failed) > 0 {
			slices.Sort(failed)
			return &out, fmt.Errorf("%w (failed checks: %s)", err, strings.Join(failed, ", "))
		}
		return &out, err
	}
	return &out, nil
}
