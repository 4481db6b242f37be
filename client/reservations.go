package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"math/bits"
	"net/http"
	"net/url"
	"time"
)

// States of a reservation: held or submitted while live, then released,
// expired, spent or invalidated. The server's packages use these names.
const (
	StateHeld        = "held"
	StateSubmitted   = "submitted"
	StateReleased    = "released"
	StateExpired     = "expired"
	StateSpent       = "spent"
	StateInvalidated = "invalidated"
)

// DefaultTTL is the server's TTL of a reservation whose request names none.
const DefaultTTL = 10 * time.Minute

// ReserveRequest asks for UTXOs of one pool: the pool by Pool (its id) or by
// Asset and Program, and exactly one of Hashes (exactly these, all or
// nothing), Count (any Count UTXOs, smallest first) and Amount (the smallest
// UTXO worth at least Amount, or with Combine the fewest UTXOs whose sum
// covers it; any value up to 2^64-1).
type ReserveRequest struct {
	Pool    int64
	Asset   string
	Program string

	Hashes  []string
	Count   int
	Amount  uint64
	Combine bool

	// TTL is how long the reservation lives unless extended, rounded up to
	// whole seconds (1 s to 1 h); 0 means the server's default, DefaultTTL.
	TTL time.Duration
	// Owner is recorded on the reservation; empty means the Client's WithOwner.
	Owner string
	// Wait, when positive, waits up to Wait (rounded up to seconds, at most
	// 30 s) for matching UTXOs to become free instead of failing at once.
	Wait time.Duration
	// IdempotencyKey makes retries of the same request return the same
	// reservation; empty means a key generated for this call. The server
	// binds a key to its request for 24 h: sending it again with another
	// request fails with ErrIdempotencyKeyReused.
	IdempotencyKey string
}

// reserveBody is the JSON of POST /v1/reservations.
type reserveBody struct {
	Pool        int64    `json:"pool,omitempty"`
	Asset       string   `json:"asset,omitempty"`
	Program     string   `json:"program,omitempty"`
	Hashes      []string `json:"hashes,omitempty"`
	Count       int      `json:"count,omitempty"`
	Amount      uint64   `json:"amount,omitempty"`
	Combine     bool     `json:"combine,omitempty"`
	TTLSeconds  int64    `json:"ttl_seconds,omitempty"`
	Owner       string   `json:"owner,omitempty"`
	WaitSeconds int64    `json:"wait_seconds,omitempty"`
}

// UTXO is a reserved UTXO.
type UTXO struct {
	Hash   string `json:"hash"`
	Asset  string `json:"asset"`
	Amount uint64 `json:"amount"`
}

// Reservation is a reservation as the API shows it.
type Reservation struct {
	// ID is the only handle on the reservation: whoever has it can extend,
	// submit or release it.
	ID string `json:"id"`
	// Fence grows strictly with each reservation of the pool.
	Fence int64  `json:"fence"`
	Pool  int64  `json:"pool"`
	Owner string `json:"owner"`
	// State is one of the State* constants.
	State string `json:"state"`
	UTXOs []UTXO `json:"utxos"`
	// ExpiresAt is when the hold ends, on the server's clock.
	ExpiresAt time.Time `json:"expires_at"`
	// TxID is the spending transaction once submitted.
	TxID string `json:"tx_id,omitempty"`
	// CreatedAt and UpdatedAt are zero in the answer of Reserve.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Replayed is true when Reserve returned the reservation an earlier
	// request with the same idempotency key made, in its current state (it
	// may have ended since: released, expired...).
	Replayed bool `json:"-"`
}

// Total is the sum of the amounts of the reserved UTXOs. Each amount is a
// uint64, so the sum of several may not fit: Total saturates at
// math.MaxUint64 instead of wrapping around (a total of math.MaxUint64 means
// "at least that much").
func (r *Reservation) Total() uint64 {
	var sum uint64
	for _, u := range r.UTXOs {
		s, carry := bits.Add64(sum, u.Amount, 0)
		if carry != 0 {
			return math.MaxUint64
		}
		sum = s
	}
	return sum
}

// Counts are a pool's UTXOs by state. Reserved ones (available UTXOs a live
// reservation holds) are not counted as Available; Immature are coinbase
// outputs not yet spendable.
type Counts struct {
	Available   int64 `json:"available"`
	Reserved    int64 `json:"reserved"`
	Immature    int64 `json:"immature"`
	Spent       int64 `json:"spent"`
	Invalidated int64 `json:"invalidated"`
}

// Pool is a contract pool: the UTXOs of one asset locked by one program.
type Pool struct {
	ID      int64  `json:"id"`
	Asset   string `json:"asset"`
	Program string `json:"program"`
	// Unconfirmed tells whether outputs of pending transactions are offered.
	Unconfirmed bool `json:"unconfirmed"`
	// FromHeight is the block a node-backed index started the pool from (0:
	// the index's default depth below the tip).
	FromHeight int64 `json:"from_height"`
	// Synced tells whether the server has the pool's whole UTXO set; until
	// then reserves fail with ErrUnavailable.
	Synced bool   `json:"synced"`
	Counts Counts `json:"counts"`
}

// seconds rounds d up to whole seconds.
func seconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// newIdempotencyKey returns 128 random bits as 32 hex characters.
func newIdempotencyKey() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("client: idempotency key: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// errNoID is returned for an empty reservation id.
var errNoID = fmt.Errorf("%w: empty reservation id", ErrNotFound)

// resPath is the path of reservation id.
func resPath(id string) string { return "/v1/reservations/" + url.PathEscape(id) }

// Reserve reserves UTXOs (POST /v1/reservations). It fails with
// ErrNoUTXOAvailable when nothing free matches, ErrUTXOLocked when a
// requested hash is held, ErrNotFound for an unknown pool or UTXO,
// ErrIdempotencyKeyReused when req.IdempotencyKey was used with another
// request, and ErrUnavailable (or ErrIdempotencyKeyInUse) when the pool
// (or the first request with the key) stays busy through the retries.
// With a key used before for the same request it returns that request's
// reservation, Replayed, in its current state.
func (c *Client) Reserve(ctx context.Context, req ReserveRequest) (*Reservation, error) {
	if req.TTL < 0 || req.Wait < 0 {
		return nil, fmt.Errorf("%w: negative ttl or wait", ErrBadRequest)
	}
	key := req.IdempotencyKey
	if key == "" {
		var err error
		if key, err = newIdempotencyKey(); err != nil {
			return nil, err
		}
	}
	owner := req.Owner
	if owner == "" {
		owner = c.owner
	}
	var res Reservation
	cl := &call{
		method: http.MethodPost,
		path:   "/v1/reservations",
		body: reserveBody{
			Pool: req.Pool, Asset: req.Asset, Program: req.Program,
			Hashes: req.Hashes, Count: req.Count, Amount: req.Amount, Combine: req.Combine,
			TTLSeconds: seconds(req.TTL), Owner: owner, WaitSeconds: seconds(req.Wait),
		},
		header: http.Header{"Idempotency-Key": {key}},
		out:    &res,
	}
	if err := c.do(ctx, cl); err != nil {
		return nil, err
	}
	res.Replayed = cl.respHdr.Get("Idempotent-Replayed") == "true"
	return &res, nil
}

// Get returns reservation id in its current state (GET /v1/reservations/{id});
// ErrNotFound for an unknown id.
func (c *Client) Get(ctx context.Context, id string) (*Reservation, error) {
	if id == "" {
		return nil, errNoID
	}
	var res Reservation
	if err := c.do(ctx, &call{method: http.MethodGet, path: resPath(id), out: &res}); err != nil {
		return nil, err
	}
	return &res, nil
}

// Extend makes a held reservation end ttl (rounded up to seconds) from now
// (POST /v1/reservations/{id}/extend). It fails with ErrEnded once the
// reservation ended, and with a 409 *APIError (reservation_submitted,
// lifetime_exceeded) when it can no longer be extended.
func (c *Client) Extend(ctx context.Context, id string, ttl time.Duration) (*Reservation, error) {
	if id == "" {
		return nil, errNoID
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("%w: ttl must be positive", ErrBadRequest)
	}
	var res Reservation
	cl := &call{
		method: http.MethodPost,
		path:   resPath(id) + "/extend",
		body: struct {
			TTLSeconds int64 `json:"ttl_seconds"`
		}{seconds(ttl)},
		out: &res,
	}
	if err := c.do(ctx, cl); err != nil {
		return nil, err
	}
	return &res, nil
}

// Submit records txID as the transaction spending the reservation's UTXOs
// (POST /v1/reservations/{id}/submit): the server keeps holding them until
// the chain settles the transaction. Submitting the same txID again is
// harmless; another txID fails with a 409 *APIError (tx_mismatch).
func (c *Client) Submit(ctx context.Context, id, txID string) (*Reservation, error) {
	if id == "" {
		return nil, errNoID
	}
	var res Reservation
	cl := &call{
		method: http.MethodPost,
		path:   resPath(id) + "/submit",
		body: struct {
			TxID string `json:"tx_id"`
		}{txID},
		out: &res,
	}
	if err := c.do(ctx, cl); err != nil {
		return nil, err
	}
	return &res, nil
}

// Release ends a held reservation at once and frees its UTXOs (DELETE
// /v1/reservations/{id}), and returns it in its final state (released).
// Releasing is idempotent: a reservation already released (by an earlier
// call, or an attempt of this one whose answer was lost) is returned as it
// is. It fails with ErrSubmitted for a submitted reservation (its
// transaction may be mined: the server keeps its UTXOs until the chain
// settles it) and with ErrEnded for one that ended otherwise (expired,
// spent, invalidated).
func (c *Client) Release(ctx context.Context, id string) (*Reservation, error) {
	if id == "" {
		return nil, errNoID
	}
	var res Reservation
	if err := c.do(ctx, &call{method: http.MethodDelete, path: resPath(id), out: &res}); err != nil {
		return nil, err
	}
	return &res, nil
}

// Pools lists the registered pools with their UTXO counts (GET /v1/pools).
func (c *Client) Pools(ctx context.Context) ([]Pool, error) {
	var out struct {
		Pools []Pool `json:"pools"`
	}
	if err := c.do(ctx, &call{method: http.MethodGet, path: "/v1/pools", out: &out}); err != nil {
		return nil, err
	}
	return out.Pools, nil
}
