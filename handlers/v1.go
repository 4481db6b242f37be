package handlers

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/storage"
)

// apiBad answers an input error with 400, and any other error as internal.
func (s *server) apiBad(c *fiber.Ctx, err error) error {
	var in *inputError
	if errors.As(err, &in) {
		return apiError(c, fiber.StatusBadRequest, "bad_request", in.msg)
	}
	return s.internal(c, err)
}

// poolJSON is a pool as v1 shows it.
type poolJSON struct {
	ID      int64  `json:"id"`
	Asset   string `json:"asset"`
	Program string `json:"program"`
	// Unconfirmed tells whether outputs of pending transactions are offered;
	// FromHeight is where a node-backed index started the pool (0: the
	// default depth below the tip); Synced whether its whole UTXO set is known
	// (a pool is offered once it is).
	Unconfirmed bool  `json:"unconfirmed"`
	FromHeight  int64 `json:"from_height"`
	Synced      bool  `json:"synced"`
}

// poolListItem is an entry of GET /v1/pools.
type poolListItem struct {
	poolJSON
	Counts storage.Counts `json:"counts"`
}

// poolDetail is GET /v1/pools/:id.
type poolDetail struct {
	poolJSON
	Counts storage.Counts        `json:"counts"`
	Sync   map[string]cursorJSON `json:"sync"`
}

// cursorJSON is the position of one sync job for a pool.
type cursorJSON struct {
	Height      int64      `json:"height"`
	BlockHash   string     `json:"block_hash"`
	Epoch       int64      `json:"epoch"`
	LastSuccess *time.Time `json:"last_success"`
	LastError   string     `json:"last_error"`
	UpdatedAt   time.Time  `json:"updated_at"`
	// BlocksBehind is how far the chain's tip is past Height (the chain
	// index of a node-backed syncer; absent for the other jobs).
	BlocksBehind *int64 `json:"blocks_behind,omitempty"`
}

// utxoJSON is an entry of GET /v1/pools/:id/utxos.
type utxoJSON struct {
	Hash      string `json:"hash"`
	Asset     string `json:"asset"`
	Amount    uint64 `json:"amount"`
	State     string `json:"state"`
	Confirmed bool   `json:"confirmed"`
	// Height is the block of its creating transaction (0 while pending or
	// unknown); ValidHeight the tip from which it may be spent (0: at once).
	Height      int64 `json:"height"`
	ValidHeight int64 `json:"valid_height"`
}

type utxoPage struct {
	UTXOs      []utxoJSON `json:"utxos"`
	NextCursor string     `json:"next_cursor"`
}

func toPoolJSON(p storage.Pool) poolJSON {
	return poolJSON{ID: p.ID, Asset: p.Asset, Program: p.Program, Unconfirmed: p.Unconfirmed, FromHeight: p.FromHeight,
		Synced: p.SyncedAt != nil}
}

// createPool is POST /v1/pools (admin): 201 with the new pool, 200 with the
// existing one.
func (s *server) createPool(c *fiber.Ctx) error {
	if !s.isAdmin(c) {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="bufferd"`)
		return apiError(c, fiber.StatusUnauthorized, "unauthorized", "a valid admin token is required")
	}
	req, err := decodeCreatePool(c.BodyRaw())
	if err != nil {
		return s.apiBad(c, err)
	}
	ctx, cancel := reqContext(c)
	defer cancel()

	pool, created, err := s.store.EnsurePool(ctx, req.Asset, req.Program, req.Options)
	if err != nil {
		return s.unavailable(c, "unavailable", fmt.Errorf("ensure pool: %w", err))
	}
	status := fiber.StatusOK
	if created {
		status = fiber.StatusCreated
		s.log.Info("pool registered", "request_id", requestID(c), "pool", pool.ID, "asset", pool.Asset)
	}
	return c.Status(status).JSON(toPoolJSON(pool))
}

// listPools is GET /v1/pools.
func (s *server) listPools(c *fiber.Ctx) error {
	ctx, cancel := reqContext(c)
	defer cancel()

	pools, err := s.store.ListPools(ctx)
	if err != nil {
		return s.unavailable(c, "unavailable", fmt.Errorf("list pools: %w", err))
	}
	counts, err := s.store.PoolCounts(ctx)
	if err != nil {
		return s.unavailable(c, "unavailable", fmt.Errorf("pool counts: %w", err))
	}
	out := make([]poolListItem, 0, len(pools))
	for _, p := range pools {
		out = append(out, poolListItem{poolJSON: toPoolJSON(p), Counts: counts[p.ID]})
	}
	return c.JSON(fiber.Map{"pools": out})
}

// lookupPool parses :id and loads the pool; on failure it has already answered
// and returns ok=false.
func (s *server) lookupPool(c *fiber.Ctx) (storage.Pool, bool, error) {
	id, err := parsePoolID(c.Params("id"))
	if err != nil {
		return storage.Pool{}, false, s.apiBad(c, err)
	}
	ctx, cancel := reqContext(c)
	defer cancel()
	pool, err := s.cachedPool(ctx, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return storage.Pool{}, false, apiError(c, fiber.StatusNotFound, "pool_not_found", "pool not found")
	case err != nil:
		return storage.Pool{}, false, s.unavailable(c, "unavailable", fmt.Errorf("get pool %d: %w", id, err))
	}
	return pool, true, nil
}

// getPool is GET /v1/pools/:id: the pool, its UTXO counts and its sync positions.
func (s *server) getPool(c *fiber.Ctx) error {
	if err := checkParams(c, "getPool"); err != nil {
		return s.apiBad(c, err)
	}
	pool, ok, err := s.lookupPool(c)
	if !ok {
		return err
	}
	ctx, cancel := reqContext(c)
	defer cancel()

	counts, err := s.store.PoolCounts(ctx)
	if err != nil {
		return s.unavailable(c, "unavailable", fmt.Errorf("pool counts: %w", err))
	}
	cursors, err := s.store.Cursors(ctx)
	if err != nil {
		return s.unavailable(c, "unavailable", fmt.Errorf("cursors: %w", err))
	}
	out := poolDetail{poolJSON: toPoolJSON(pool), Counts: counts[pool.ID], Sync: syncOf(cursors)[pool.ID]}
	if out.Sync == nil {
		out.Sync = map[string]cursorJSON{}
	}
	return c.JSON(out)
}

// listPoolUTXOs is GET /v1/pools/:id/utxos?state=&limit=&cursor=, keyset-paginated
// by id; next_cursor is empty on the last page.
func (s *server) listPoolUTXOs(c *fiber.Ctx) error {
	if err := checkParams(c, "listPoolUTXOs"); err != nil {
		return s.apiBad(c, err)
	}
	state := c.Query("state") // one of the document's states, or empty
	limit, after, err := pageQuery(c)
	if err != nil {
		return s.apiBad(c, err)
	}
	pool, ok, err := s.lookupPool(c)
	if !ok {
		return err
	}
	ctx, cancel := reqContext(c)
	defer cancel()

	// One extra row tells whether another page follows.
	rows, err := s.store.ListUTXOs(ctx, pool.ID, state, after, limit+1)
	if err != nil {
		return s.unavailable(c, "unavailable", fmt.Errorf("list utxos: %w", err))
	}
	page := utxoPage{UTXOs: make([]utxoJSON, 0, min(len(rows), limit))}
	if len(rows) > limit {
		rows = rows[:limit]
		page.NextCursor = strconv.FormatInt(rows[limit-1].ID, 10)
	}
	for _, u := range rows {
		page.UTXOs = append(page.UTXOs, utxoJSON{Hash: u.Hash, Asset: u.Asset, Amount: uint64(u.Amount), State: u.State,
			Confirmed: u.Confirmed, Height: u.Height, ValidHeight: u.ValidHeight})
	}
	return c.JSON(page)
}
