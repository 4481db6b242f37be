package handlers

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/storage"
)

// Bad input of GET /v1/reservations.
var (
	errBadResState = badInput(`state must be "live", "held", "submitted", "released", "expired", "spent", "invalidated" or empty`)
	errBadOwnerQ   = badInput("owner must be at most 64 printable characters")
)

// reservationPage is GET /v1/reservations.
type reservationPage struct {
	Reservations []reservationJSON `json:"reservations"`
	NextCursor   string            `json:"next_cursor"`
}

// listReservations is GET /v1/reservations?pool=&state=&owner=&limit=&cursor=
// (admin): the journal's reservations, newest first within each pool, pools
// in descending id order. It reads the journal in PostgreSQL, which a change
// made in Redis reaches just after its answer: a reservation released a
// moment ago may still show as held. A held or submitted reservation past
// its expiry shows (and filters) as expired.
func (s *server) listReservations(c *fiber.Ctx) error {
	if !s.isAdmin(c) {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="bufferd"`)
		return apiError(c, fiber.StatusUnauthorized, "unauthorized", "a valid admin token is required")
	}
	f, err := reservationFilter(c)
	if err != nil {
		return s.apiBad(c, err)
	}
	limit, err := parseLimit(c.Query("limit"), true)
	if err != nil {
		return s.apiBad(c, err)
	}
	after, err := parseResCursor(c.Query("cursor"))
	if err != nil {
		return s.apiBad(c, err)
	}
	ctx, cancel := reqContext(c)
	defer cancel()
	if f.PoolID != 0 {
		if _, err := s.cachedPool(ctx, f.PoolID); errors.Is(err, storage.ErrNotFound) {
			return apiError(c, fiber.StatusNotFound, "pool_not_found", "pool not found")
		} else if err != nil {
			return s.unavailable(c, "unavailable", fmt.Errorf("get pool %d: %w", f.PoolID, err))
		}
	}
	// One extra row tells whether another page follows.
	rows, err := s.store.ListReservations(ctx, f, after, limit+1)
	if err != nil {
		return s.unavailable(c, "unavailable", fmt.Errorf("list reservations: %w", err))
	}
	page := reservationPage{Reservations: make([]reservationJSON, 0, min(len(rows), limit))}
	if len(rows) > limit {
		rows = rows[:limit]
		page.NextCursor = formatResCursor(storage.ReservationKey{PoolID: rows[limit-1].PoolID, Fence: rows[limit-1].Fence})
	}
	out, err := s.renderRows(ctx, rows)
	if err != nil {
		return s.unavailable(c, "unavailable", err)
	}
	page.Reservations = append(page.Reservations, out...)
	return c.JSON(page)
}

// renderRows renders journal rows as fromRow does, reading their UTXOs' amounts
// in one query.
func (s *server) renderRows(ctx context.Context, rows []storage.Reservation) ([]reservationJSON, error) {
	var hashes []string
	for _, r := range rows {
		hashes = append(hashes, storage.SplitHashes(r.Hashes)...)
	}
	utxos, err := s.store.GetUTXOs(ctx, hashes)
	if err != nil {
		return nil, fmt.Errorf("get utxos: %w", err)
	}
	amounts := make(map[string]uint64, len(utxos))
	for _, u := range utxos {
		amounts[u.Hash] = uint64(u.Amount)
	}
	now := time.Now()
	out := make([]reservationJSON, 0, len(rows))
	for _, row := range rows {
		pool, err := s.cachedPool(ctx, row.PoolID)
		if err != nil {
			return nil, fmt.Errorf("get pool %d: %w", row.PoolID, err)
		}
		r := reservationJSON{ID: row.ID, Fence: row.Fence, Pool: row.PoolID, Owner: row.Owner, State: row.State,
			ExpiresAt: apiTime(row.ExpiresAt), TxID: row.TxID}
		if (row.State == storage.ResHeld || row.State == storage.ResSubmitted) && !row.ExpiresAt.After(now) {
			r.State = storage.ResExpired
		}
		for _, h := range storage.SplitHashes(row.Hashes) {
			r.UTXOs = append(r.UTXOs, resUTXO{Hash: h, Asset: pool.Asset, Amount: amounts[h]})
		}
		out = append(out, r.withTimes(row.CreatedAt, row.UpdatedAt))
	}
	return out, nil
}

// reservationFilter reads pool, state and owner.
func reservationFilter(c *fiber.Ctx) (storage.ReservationFilter, error) {
	var f storage.ReservationFilter
	if p := c.Query("pool"); p != "" {
		id, err := parsePoolID(p)
		if err != nil {
			return f, err
		}
		f.PoolID = id
	}
	switch f.State = c.Query("state"); f.State {
	case "", storage.ResLive, storage.ResHeld, storage.ResSubmitted, storage.ResReleased, storage.ResExpired,
		storage.ResSpent, storage.ResInvalidated:
	default:
		return f, errBadResState
	}
	f.Owner = c.Query("owner")
	if len(f.Owner) > maxOwnerLen || !isPrintable(f.Owner) {
		return f, errBadOwnerQ
	}
	return f, nil
}

// The cursor of GET /v1/reservations is opaque to clients: the pool and
// fence of the last row, "<pool>.<fence>" in unpadded base64url.
func formatResCursor(k storage.ReservationKey) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(k.PoolID, 10) + "." + strconv.FormatInt(k.Fence, 10)))
}

func parseResCursor(s string) (storage.ReservationKey, error) {
	if s == "" {
		return storage.ReservationKey{}, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) > 40 {
		return storage.ReservationKey{}, errBadCursor
	}
	pool, fence, ok := strings.Cut(string(raw), ".")
	p, err1 := parseCursor(pool)
	f, err2 := parseCursor(fence)
	k := storage.ReservationKey{PoolID: p, Fence: f}
	if !ok || err1 != nil || err2 != nil || p == 0 || f == 0 || formatResCursor(k) != s {
		return storage.ReservationKey{}, errBadCursor
	}
	return k, nil
}
