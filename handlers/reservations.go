package handlers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// Headers of the reservation routes.
const (
	headerIdempotencyKey = "Idempotency-Key"
	headerReplayed       = "Idempotent-Replayed"
)

// retryAfterSeconds is the Retry-After of a 503 answer.
const retryAfterSeconds = 1

// timeLayout is how v1 shows times: RFC 3339, UTC, milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// apiTime is a time shown in v1 answers.
type apiTime time.Time

// MarshalJSON writes t as RFC 3339 UTC with milliseconds.
func (t apiTime) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(timeLayout)+2)
	b = append(b, '"')
	b = time.Time(t).UTC().AppendFormat(b, timeLayout)
	return append(b, '"'), nil
}

// resUTXO is a reserved UTXO as v1 shows it.
type resUTXO struct {
	Hash   string `json:"hash"`
	Asset  string `json:"asset"`
	Amount uint64 `json:"amount"`
}

// reservationJSON is a reservation as v1 shows it: the reserve answer, plus
// tx_id, created_at and updated_at for the other routes.
type reservationJSON struct {
	ID        string    `json:"id"`
	Fence     int64     `json:"fence"`
	Pool      int64     `json:"pool"`
	Owner     string    `json:"owner"`
	State     string    `json:"state"`
	UTXOs     []resUTXO `json:"utxos"`
	ExpiresAt apiTime   `json:"expires_at"`
	TxID      string    `json:"tx_id,omitempty"`
	CreatedAt *apiTime  `json:"created_at,omitempty"`
	UpdatedAt *apiTime  `json:"updated_at,omitempty"`
}

// fromLock renders a reservation lockmgr returned, its UTXOs in asset.
func fromLock(r *lockmgr.Reservation, asset string) reservationJSON {
	out := reservationJSON{
		ID:        r.ID,
		Fence:     r.Fence,
		Pool:      r.PoolID,
		Owner:     r.Owner,
		State:     r.State,
		UTXOs:     make([]resUTXO, len(r.Items)),
		ExpiresAt: apiTime(r.ExpiresAt),
		TxID:      r.TxID,
	}
	if out.State == "" {
		out.State = lockmgr.StateHeld
	}
	for i, it := range r.Items {
		out.UTXOs[i] = resUTXO{Hash: it.Hash, Asset: asset, Amount: it.Amount}
	}
	return out
}

// withTimes adds created_at and updated_at to a rendered reservation.
func (r reservationJSON) withTimes(created, updated time.Time) reservationJSON {
	c, u := apiTime(created), apiTime(updated)
	r.CreatedAt, r.UpdatedAt = &c, &u
	return r
}

// unavailable answers 503 with Retry-After after logging the cause.
func (s *server) unavailable(c *fiber.Ctx, code string, err error) error {
	s.log.Error("request failed", "request_id", requestID(c), "method", c.Method(), "path", c.Path(), "err", err)
	c.Set(fiber.HeaderRetryAfter, strconv.Itoa(retryAfterSeconds))
	return apiError(c, fiber.StatusServiceUnavailable, code, "service temporarily unavailable, retry shortly")
}

// lockError maps a lockmgr error to its v1 answer; anything unexpected
// (Redis, journal, timeouts) is a logged 503.
func (s *server) lockError(c *fiber.Ctx, err error) error {
	countLockError(err)
	switch {
	case errors.Is(err, lockmgr.ErrNoUTXOAvailable):
		return apiError(c, fiber.StatusConflict, "no_utxo_available", "no free utxo matches the request")
	case errors.Is(err, lockmgr.ErrLocked):
		return apiError(c, fiber.StatusConflict, "utxo_locked", "a requested utxo is held by another reservation")
	case errors.Is(err, lockmgr.ErrUnknownUTXO):
		return apiError(c, fiber.StatusNotFound, "utxo_not_found", "a requested utxo is not an unspent utxo of the pool")
	case errors.Is(err, lockmgr.ErrBadRequest):
		return apiError(c, fiber.StatusBadRequest, "bad_request", "invalid reservation request")
	case errors.Is(err, lockmgr.ErrNotFound):
		return apiError(c, fiber.StatusGone, "reservation_ended", "the reservation has ended")
	case errors.Is(err, lockmgr.ErrLifetime):
		return apiError(c, fiber.StatusConflict, "lifetime_exceeded", "the reservation cannot live that long")
	case errors.Is(err, lockmgr.ErrNotHeld):
		return apiError(c, fiber.StatusConflict, "reservation_submitted",
			"the reservation was submitted: its UTXOs stay withheld until the chain settles its transaction")
	case errors.Is(err, lockmgr.ErrTxMismatch):
		return apiError(c, fiber.StatusConflict, "tx_mismatch", "the reservation was submitted with another transaction")
	case errors.Is(err, lockmgr.ErrKeyReused):
		return apiError(c, fiber.StatusUnprocessableEntity, "idempotency_key_reused",
			"this Idempotency-Key was used with another request; use a new key for a new request")
	case errors.Is(err, lockmgr.ErrKeyInFlight):
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(retryAfterSeconds))
		return apiError(c, fiber.StatusConflict, "idempotency_key_in_use",
			"a request with this Idempotency-Key is still being processed; retry shortly")
	case errors.Is(err, lockmgr.ErrRebuilding):
		s.log.Warn("pool is being rebuilt", "request_id", requestID(c), "path", c.Path(), "err", err)
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(retryAfterSeconds))
		return apiError(c, fiber.StatusServiceUnavailable, "rebuilding", "the pool is being rebuilt, retry shortly")
	}
	return s.unavailable(c, "unavailable", err)
}

// reservationNotFound is the answer for an id that is malformed or unknown:
// the same either way, so it tells nothing.
func reservationNotFound(c *fiber.Ctx) error {
	return apiError(c, fiber.StatusNotFound, "reservation_not_found", "reservation not found")
}

// reserve is POST /v1/reservations.
func (s *server) reserve(c *fiber.Ctx) error {
	req, err := decodeReserve(c.BodyRaw())
	if err != nil {
		return s.apiBad(c, err)
	}
	idemKey := c.Get(headerIdempotencyKey)
	if err := checkIdempotencyKey(idemKey); err != nil {
		return s.apiBad(c, err)
	}
	// The wait comes on top of the usual bound of a request.
	ctx, cancel := context.WithTimeout(c.UserContext(), requestTimeout+req.Wait)
	defer cancel()

	var pool storage.Pool
	if req.PoolID != 0 {
		pool, err = s.cachedPool(ctx, req.PoolID)
	} else {
		pool, err = s.cachedPoolOf(ctx, req.Asset, req.Program)
	}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return apiError(c, fiber.StatusNotFound, "pool_not_found", "pool not found")
	case err != nil:
		return s.unavailable(c, "unavailable", fmt.Errorf("find pool: %w", err))
	}

	lr := req.request(pool.ID, idemKey)
	var res *lockmgr.Reservation
	if req.Wait > 0 {
		res, err = s.locks.ReserveWait(ctx, lr, req.Wait)
	} else {
		res, err = s.locks.Reserve(ctx, lr)
	}
	if err != nil {
		return s.lockError(c, err)
	}
	status := fiber.StatusCreated
	if res.Replayed {
		status = fiber.StatusOK
		c.Set(headerReplayed, "true")
	} else {
		metrics.Outcome(metrics.OutcomeGranted)
	}
	s.log.Debug("reservation granted", "request_id", requestID(c), "pool", pool.ID, "reservation", res.ID,
		"fence", res.Fence, "utxos", len(res.Items), "replayed", res.Replayed)
	return c.Status(status).JSON(fromLock(res, pool.Asset))
}

// journalRow loads the journal row of the reservation named by :id and its
// pool. On failure it has already answered and returns ok=false.
func (s *server) journalRow(ctx context.Context, c *fiber.Ctx) (storage.Reservation, storage.Pool, bool, error) {
	id := c.Params("id")
	if !validReservationID(id) {
		return storage.Reservation{}, storage.Pool{}, false, reservationNotFound(c)
	}
	row, err := s.store.GetReservation(ctx, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return storage.Reservation{}, storage.Pool{}, false, reservationNotFound(c)
	case err != nil:
		return storage.Reservation{}, storage.Pool{}, false, s.unavailable(c, "unavailable", fmt.Errorf("get reservation: %w", err))
	}
	pool, err := s.cachedPool(ctx, row.PoolID)
	if err != nil {
		return storage.Reservation{}, storage.Pool{}, false, s.unavailable(c, "unavailable", fmt.Errorf("get pool %d: %w", row.PoolID, err))
	}
	return row, pool, true, nil
}

// fromRow renders a journal row; a held or submitted row past its expiry is
// shown as expired.
func (s *server) fromRow(ctx context.Context, row storage.Reservation, pool storage.Pool) (reservationJSON, error) {
	hashes := storage.SplitHashes(row.Hashes)
	rows, err := s.store.GetUTXOs(ctx, hashes)
	if err != nil {
		return reservationJSON{}, fmt.Errorf("get utxos: %w", err)
	}
	amounts := make(map[string]uint64, len(rows))
	for _, u := range rows {
		amounts[u.Hash] = uint64(u.Amount)
	}
	out := reservationJSON{
		ID:        row.ID,
		Fence:     row.Fence,
		Pool:      row.PoolID,
		Owner:     row.Owner,
		State:     row.State,
		UTXOs:     make([]resUTXO, len(hashes)),
		ExpiresAt: apiTime(row.ExpiresAt),
		TxID:      row.TxID,
	}
	if (row.State == storage.ResHeld || row.State == storage.ResSubmitted) && !row.ExpiresAt.After(time.Now()) {
		out.State = storage.ResExpired
	}
	for i, h := range hashes {
		out.UTXOs[i] = resUTXO{Hash: h, Asset: pool.Asset, Amount: amounts[h]}
	}
	return out.withTimes(row.CreatedAt, row.UpdatedAt), nil
}

// getReservation is GET /v1/reservations/:id. A change of a live
// reservation (extend, submit, release) takes effect in Redis and reaches
// the journal just after, while the chain's endings reach the journal first
// and Redis just after; so the answer is Redis's view of a reservation it
// has live or released moments ago, unless the journal has it ended
// otherwise, and the journal's (a held or submitted row past its expiry
// shows as expired) when Redis does not have it. Reading only the journal
// would answer held after a concurrent extend already saw it submitted.
func (s *server) getReservation(c *fiber.Ctx) error {
	ctx, cancel := reqContext(c)
	defer cancel()
	id := c.Params("id")
	var (
		row  storage.Reservation
		pool storage.Pool
	)
	poolID, named := lockmgr.PoolOfID(id)
	if !named {
		// An id of the older format: the journal names the pool.
		var ok bool
		var err error
		if row, pool, ok, err = s.journalRow(ctx, c); !ok {
			return err
		}
		poolID = pool.ID
	}
	live, err := s.locks.Peek(ctx, poolID, id)
	if err != nil {
		live = nil
	}
	if live != nil && live.State == lockmgr.StateReleased {
		// Released moments ago; its journal write may be on its way.
		if p, err := s.cachedPool(ctx, poolID); err == nil {
			return c.JSON(fromLock(live, p.Asset).withTimes(live.CreatedAt, live.UpdatedAt))
		}
	}
	if named {
		var ok bool
		if row, pool, ok, err = s.journalRow(ctx, c); !ok {
			return err
		}
	}
	if live != nil && lockmgr.Live(row.State) {
		return c.JSON(fromLock(live, pool.Asset).withTimes(live.CreatedAt, laterOf(live.UpdatedAt, row.UpdatedAt)))
	}
	out, err := s.fromRow(ctx, row, pool)
	if err != nil {
		return s.unavailable(c, "unavailable", err)
	}
	return c.JSON(out)
}

// laterOf returns the later of two times.
func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// changed answers 200 with a reservation a route just changed, as the
// journal recorded it.
func (s *server) changed(c *fiber.Ctx, res *lockmgr.Reservation, pool storage.Pool) error {
	return c.JSON(fromLock(res, pool.Asset).withTimes(res.CreatedAt, res.UpdatedAt))
}

// extendReservation is POST /v1/reservations/:id/extend {"ttl_seconds"}.
func (s *server) extendReservation(c *fiber.Ctx) error {
	ctx, cancel := reqContext(c)
	defer cancel()
	ttl, err := decodeExtend(c.BodyRaw())
	if err != nil {
		return s.apiBad(c, err)
	}
	row, pool, ok, err := s.journalRow(ctx, c)
	if !ok {
		return err
	}
	res, err := s.locks.Extend(ctx, pool.ID, row.ID, ttl)
	if err != nil {
		return s.lockError(c, err)
	}
	metrics.Outcome(metrics.OutcomeExtended)
	return s.changed(c, res, pool)
}

// submitReservation is POST /v1/reservations/:id/submit {"tx_id"}.
func (s *server) submitReservation(c *fiber.Ctx) error {
	ctx, cancel := reqContext(c)
	defer cancel()
	txID, err := decodeSubmit(c.BodyRaw())
	if err != nil {
		return s.apiBad(c, err)
	}
	row, pool, ok, err := s.journalRow(ctx, c)
	if !ok {
		return err
	}
	res, err := s.locks.Submit(ctx, pool.ID, row.ID, txID)
	if err != nil {
		return s.lockError(c, err)
	}
	if row.State != storage.ResSubmitted { // submitting again is a no-op
		metrics.Outcome(metrics.OutcomeSubmitted)
	}
	return s.changed(c, res, pool)
}

// releaseReservation is DELETE /v1/reservations/:id: 200 with the
// reservation released, its UTXOs free at once. Releasing is idempotent: a
// reservation already released answers 200 with its final state again. A
// submitted one answers 409 reservation_submitted (its transaction may be
// mined; the chain settles it), one that ended otherwise 410. A live
// reservation is released straight from Redis, under the pool its id names;
// anything else is looked up in the journal.
func (s *server) releaseReservation(c *fiber.Ctx) error {
	ctx, cancel := reqContext(c)
	defer cancel()
	id := c.Params("id")
	pool, ok := lockmgr.PoolOfID(id)
	if !ok {
		// An id of the older format: the journal names the pool.
		row, p, ok, err := s.journalRow(ctx, c)
		if !ok {
			return err
		}
		id, pool = row.ID, p.ID
	}
	res, err := s.locks.Release(ctx, pool, id)
	switch {
	case err == nil:
		if res.State == lockmgr.StateReleased && !res.UpdatedAt.IsZero() {
			// Released now, or moments ago (a retry): Redis has it all.
			p, perr := s.cachedPool(ctx, pool)
			if perr != nil {
				return s.unavailable(c, "unavailable", fmt.Errorf("get pool %d: %w", pool, perr))
			}
			if !res.Replayed {
				metrics.Outcome(metrics.OutcomeReleased)
			}
			return c.JSON(fromLock(res, p.Asset).withTimes(res.CreatedAt, res.UpdatedAt))
		}
		metrics.Outcome(metrics.OutcomeReleased)
	case errors.Is(err, lockmgr.ErrEnded), errors.Is(err, lockmgr.ErrNotFound) && s.journalHas(ctx, id):
		// Ended before this call: answered by its final state.
	default:
		if errors.Is(err, lockmgr.ErrNotFound) {
			return reservationNotFound(c)
		}
		return s.lockError(c, err)
	}
	row, p, ok, err := s.journalRow(ctx, c)
	if !ok {
		return err
	}
	out, err := s.fromRow(ctx, row, p)
	if err != nil {
		return s.unavailable(c, "unavailable", err)
	}
	if out.State != lockmgr.StateReleased {
		return apiError(c, fiber.StatusGone, "reservation_ended", "the reservation has ended: it is "+out.State)
	}
	return c.JSON(out)
}

// journalHas reports whether the journal knows reservation id.
func (s *server) journalHas(ctx context.Context, id string) bool {
	_, err := s.store.GetReservation(ctx, id)
	return err == nil
}

// statusPool is an entry of GET /v1/status.
type statusPool struct {
	ID   int64                 `json:"id"`
	Sync map[string]cursorJSON `json:"sync"`
}

// statusJSON is GET /v1/status: the leader of the sync jobs (null when none
// was ever elected), the chain source as the syncer last saw it (null before
// it first ran) and each pool's sync position.
type statusJSON struct {
	Leader *leaderJSON  `json:"leader"`
	Chain  *chainJSON   `json:"chain"`
	Pools  []statusPool `json:"pools"`
}

// chainJSON is the chain source as the syncer last saw it: its tip, and the
// error of its last pass ("" when it succeeded).
type chainJSON struct {
	TipHeight   int64      `json:"tip_height"`
	TipHash     string     `json:"tip_hash"`
	LastSuccess *time.Time `json:"last_success"`
	LastError   string     `json:"last_error"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

// leaderJSON is the current term of the sync jobs.
type leaderJSON struct {
	ID    string    `json:"id"`
	Epoch int64     `json:"epoch"`
	Since time.Time `json:"since"`
}

// status is GET /v1/status: the leader of the sync jobs, the chain source and
// each pool's sync position.
func (s *server) status(c *fiber.Ctx) error {
	ctx, cancel := reqContext(c)
	defer cancel()
	pools, err := s.store.ListPools(ctx)
	if err != nil {
		return s.unavailable(c, "unavailable", fmt.Errorf("list pools: %w", err))
	}
	cursors, err := s.store.Cursors(ctx)
	if err != nil {
		return s.unavailable(c, "unavailable", fmt.Errorf("cursors: %w", err))
	}
	out := statusJSON{Pools: make([]statusPool, 0, len(pools))}
	switch term, err := s.store.CurrentTerm(ctx, syncer.LeaderJob); {
	case err == nil:
		out.Leader = &leaderJSON{ID: term.LeaderID, Epoch: term.Epoch, Since: term.Since.UTC()}
	case !errors.Is(err, storage.ErrNotFound):
		return s.unavailable(c, "unavailable", fmt.Errorf("current term: %w", err))
	}
	if cur := chainCursor(cursors); cur != nil {
		out.Chain = &chainJSON{TipHeight: cur.Height, TipHash: cur.BlockHash, LastSuccess: cur.LastSuccess,
			LastError: cur.LastError, UpdatedAt: cur.UpdatedAt}
	}
	sync := syncOf(cursors)
	for _, p := range pools {
		sp := statusPool{ID: p.ID, Sync: sync[p.ID]}
		if sp.Sync == nil {
			sp.Sync = map[string]cursorJSON{}
		}
		out.Pools = append(out.Pools, sp)
	}
	return c.JSON(out)
}

// chainCursor is the chain source's position among cursors (the syncer's
// view of the tip), nil before the syncer first ran.
func chainCursor(cursors []storage.SyncCursor) *storage.SyncCursor {
	for i := range cursors {
		if cursors[i].PoolID == 0 && cursors[i].Job == syncer.JobChain {
			return &cursors[i]
		}
	}
	return nil
}

// syncOf renders every pool's sync positions by pool and job; the chain
// index's tells how far the tip is ahead.
func syncOf(cursors []storage.SyncCursor) map[int64]map[string]cursorJSON {
	tip := int64(-1)
	if cur := chainCursor(cursors); cur != nil {
		tip = cur.Height
	}
	out := map[int64]map[string]cursorJSON{}
	for _, cur := range cursors {
		if cur.PoolID == 0 {
			continue
		}
		j := toCursorJSON(cur)
		if cur.Job == storage.JobIndex && tip >= 0 {
			behind := max(0, tip-cur.Height)
			j.BlocksBehind = &behind
		}
		if out[cur.PoolID] == nil {
			out[cur.PoolID] = map[string]cursorJSON{}
		}
		out[cur.PoolID][cur.Job] = j
	}
	return out
}

// toCursorJSON renders the position of one sync job.
func toCursorJSON(cur storage.SyncCursor) cursorJSON {
	return cursorJSON{
		Height:      cur.Height,
		BlockHash:   cur.BlockHash,
		Epoch:       cur.Epoch,
		LastSuccess: cur.LastSuccess,
		LastError:   cur.LastError,
		UpdatedAt:   cur.UpdatedAt,
	}
}
