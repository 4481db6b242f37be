package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/lockmgr/internal/scripts"
)

// combineBudget bounds the search of a combine reservation (combinations
// and candidates looked at), and so how long its script holds Redis (a few
// milliseconds); past it the best combination found so far is taken.
const combineBudget = 2000

// followTimeout bounds the Redis step that makes Redis follow the journal
// after the caller's own context may have ended.
const followTimeout = 5 * time.Second

// Reservations are the clients' reservations in Redis: Reserve and
// ReserveWait, Get and Peek, Extend, Submit, Release, the legacy API's
// ShortenOldestLegacy, and EndReservations, by which Redis follows the
// journal when it says reservations ended. The package doc has their
// lifecycle and the order of their writes to Redis and the journal
// (Options.Journal). Get one from a Manager.
type Reservations struct {
	*core
	journal Journal
	grace   time.Duration // how long a submitted reservation holds (Options.SubmitGrace)
	life    time.Duration // the longest life of a reservation (Options.MaxLifetime)
	hub     *hub          // ReserveWait's notifications, shared with the copies Fenced returns
	reloads *reloads      // endings to follow once their pool is loaded, shared likewise
}

// validate checks a request and returns its mode and TTL.
func (r *Request) validate() (string, time.Duration, error) {
	ttl := r.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	modes := 0
	mode := ""
	if len(r.Hashes) > 0 {
		modes++
		mode = "hashes"
	}
	if r.Count > 0 {
		modes++
		mode = "count"
	}
	if r.Amount > 0 {
		modes++
		mode = "amount"
		if r.Combine {
			mode = "combine"
		}
	}
	switch {
	case r.PoolID <= 0:
		return "", 0, fmt.Errorf("%w: pool id must be positive", ErrBadRequest)
	case ttl < MinTTL || ttl > MaxTTL:
		return "", 0, fmt.Errorf("%w: ttl must be between %s and %s", ErrBadRequest, MinTTL, MaxTTL)
	case modes != 1 || r.Count < 0:
		return "", 0, fmt.Errorf("%w: give exactly one of hashes, a positive count or a positive amount", ErrBadRequest)
	case r.Combine && mode != "combine":
		return "", 0, fmt.Errorf("%w: combine goes with amount", ErrBadRequest)
	case r.IdempotencyKey != "" && r.Fingerprint == "":
		return "", 0, fmt.Errorf("%w: an idempotency key needs the request's fingerprint", ErrBadRequest)
	}
	seen := make(map[string]bool, len(r.Hashes))
	for _, h := range r.Hashes {
		if seen[h] || h == "" || strings.ContainsAny(h, ", ") {
			return "", 0, fmt.Errorf("%w: hash %q given twice or malformed", ErrBadRequest, h)
		}
		seen[h] = true
	}
	return mode, ttl, nil
}

// Reserve grants a reservation in one atomic script (see Request for the
// modes). When a Journal is set the reservation is recorded before Reserve
// returns; if that fails the hold is undone and Reserve fails. A retry with
// the same idempotency key and fingerprint returns the first reservation
// (Replayed), as the journal has it now.
func (m *Reservations) Reserve(ctx context.Context, r Request) (*Reservation, error) {
	return m.reserve(ctx, r, true)
}

func (m *Reservations) reserve(ctx context.Context, r Request, mayRetry bool) (*Reservation, error) {
	mode, ttl, err := r.validate()
	if err != nil {
		return nil, err
	}
	id, err := newID(r.PoolID)
	if err != nil {
		return nil, err
	}
	k := m.keys(r.PoolID)
	digest := KeyDigest(r.IdempotencyKey)
	fingerprint := ""
	if digest != "" {
		fingerprint = r.Fingerprint
	}
	legacy := "0"
	if r.Owner == LegacyOwner {
		legacy = "1"
	}
	args := make([]any, 0, 10+len(r.Hashes))
	args = append(args, id, r.Owner, ttl.Milliseconds(), legacy, mode, r.Count, pad20(r.Amount), fingerprint,
		IdempotencyWindow.Milliseconds(), combineBudget)
	for _, h := range r.Hashes {
		args = append(args, h)
	}
	raw, err := scripts.Reserve.Run(ctx, m.rdb, k.With(k.IdemKey(digest)), args...).Slice()
	if err != nil {
		return nil, scriptError(err)
	}
	f, err := fieldsOf(raw)
	if err != nil {
		return nil, err
	}
	if f["result"] == "replay" {
		return m.replay(ctx, r, f, mayRetry)
	}
	res, err := resOf(r.PoolID, f)
	if err != nil {
		return nil, err
	}
	res.Key, res.Fingerprint = digest, fingerprint
	if m.journal == nil {
		return res, nil
	}
	if err := m.journal.Record(ctx, res); err != nil {
		// Undo with a fresh context: the caller's may be what failed.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), followTimeout)
		defer cancel()
		uerr := m.undo(uctx, k, res)
		if errors.Is(err, ErrKeyTaken) && uerr == nil {
			// Redis forgot the key (it was flushed) but the journal has it.
			return m.replayKey(ctx, r, digest)
		}
		if !errors.Is(err, ErrKeyTaken) && !errors.Is(err, ErrRebuilding) && uerr == nil {
			// Not a refusal: the write may have reached the database, and a
			// database that was paused may carry it out after this answer.
			m.journal.Withdrawn(res)
		}
		return nil, errors.Join(fmt.Errorf("lockmgr: journal: %w", err), uerr)
	}
	return res, nil
}

// replay answers a reserve whose idempotency key Redis remembers: the first
// reservation, once the journal has it.
func (m *Reservations) replay(ctx context.Context, r Request, f map[string]string, mayRetry bool) (*Reservation, error) {
	id := f["id"]
	if m.journal == nil {
		if _, ok := f["fence"]; !ok {
			return nil, ErrKeyInFlight
		}
		res, err := resOf(r.PoolID, f)
		if err != nil {
			return nil, err
		}
		res.Replayed = true
		return res, nil
	}
	res, err := m.journal.Lookup(ctx, id)
	if err == nil {
		if _, ok := f["fence"]; ok && Live(res.State) {
			// Redis has the newer expiry of a live reservation.
			if live, err := resOf(r.PoolID, f); err == nil && f["state"] != "ended" {
				live.Key, live.Fingerprint = res.Key, res.Fingerprint
				res = live
			}
		}
		res.Replayed = true
		return res, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	age, _ := strconv.ParseInt(f["age"], 10, 64)
	if age < keyInFlightLimit.Milliseconds() || !mayRetry {
		return nil, ErrKeyInFlight
	}
	// The first grant never reached the journal and was not undone (its
	// process died): forget it and grant anew.
	k := m.keys(r.PoolID)
	if err := m.undo(ctx, k, &Reservation{ID: id, Key: KeyDigest(r.IdempotencyKey)}); err != nil {
		return nil, err
	}
	return m.reserve(ctx, r, false)
}

// replayKey answers a reserve whose idempotency key the journal has.
func (m *Reservations) replayKey(ctx context.Context, r Request, digest string) (*Reservation, error) {
	res, err := m.journal.LookupKey(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("lockmgr: journal: %w", err)
	}
	if res.Fingerprint != r.Fingerprint {
		return nil, ErrKeyReused
	}
	if Live(res.State) {
		// Redis decides a live reservation's state, and the pool is loaded
		// (this call's grant was just undone there). One the journal has
		// live and Redis does not is a grant undone after its journal write
		// failed, whose late write landed before its withdrawal (Redis let
		// its UTXOs go), or one whose ending is on its way to the journal:
		// the first request's outcome is not settled yet.
		cur, err := m.Peek(ctx, r.PoolID, res.ID)
		if errors.Is(err, ErrNotFound) {
			return nil, ErrKeyInFlight
		}
		if err != nil {
			return nil, err
		}
		cur.Key, cur.Fingerprint = res.Key, res.Fingerprint
		res = cur
	}
	res.Replayed = true
	return res, nil
}

func (m *Reservations) undo(ctx context.Context, k scripts.Keys, res *Reservation) error {
	if err := scripts.Undo.Run(ctx, m.rdb, k.With(k.IdemKey(res.Key)), res.ID).Err(); err != nil {
		return fmt.Errorf("lockmgr: undo: %w", err)
	}
	return nil
}

// Get returns a live reservation from Redis, or ErrNotFound when Redis has none
// with that id (it never existed or it ended: the journal knows the rest), or
// ErrRebuilding when Redis lost the pool and cannot tell.
func (m *Reservations) Get(ctx context.Context, pool int64, id string) (*Reservation, error) {
	k := m.keys(pool)
	var fields *redis.SliceCmd
	var ready *redis.IntCmd
	_, err := m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		fields = p.HMGet(ctx, k.Res+id, resFields...)
		ready = p.Exists(ctx, k.Ready)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lockmgr: get: %w", err)
	}
	v := fields.Val()
	if v[0] == nil {
		if ready.Val() == 0 {
			return nil, ErrRebuilding
		}
		return nil, ErrNotFound
	}
	f := map[string]string{"id": id}
	for i, name := range resFields {
		s, _ := v[i].(string)
		f[name] = s
	}
	res, err := resOf(pool, f)
	if err != nil {
		return nil, err
	}
	if !Live(f["state"]) || !res.ExpiresAt.After(time.Now()) {
		return nil, ErrNotFound
	}
	return res, nil
}

// resFields are the fields of a reservation's hash in Redis.
var resFields = []string{"fence", "owner", "state", "created", "expires", "hashes", "amounts", "txid"}

// Extend makes a held reservation end ttl from now (on the Redis clock). It
// fails with ErrNotFound once the reservation ended, ErrNotHeld once it was
// submitted, and ErrLifetime past the maximum lifetime from its creation.
func (m *Reservations) Extend(ctx context.Context, pool int64, id string, ttl time.Duration) (*Reservation, error) {
	if ttl < MinTTL || ttl > MaxTTL {
		return nil, fmt.Errorf("%w: ttl must be between %s and %s", ErrBadRequest, MinTTL, MaxTTL)
	}
	return m.change(ctx, pool, id, scripts.Extend, []string{StateHeld}, id, ttl.Milliseconds(), m.life.Milliseconds())
}

// Submit records the transaction that spends a held reservation's UTXOs: the
// reservation becomes submitted and keeps holding for at least the submit
// grace, until the syncer settles it. Submitting the same tx again is a no-op.
func (m *Reservations) Submit(ctx context.Context, pool int64, id, txID string) (*Reservation, error) {
	res, err := m.change(ctx, pool, id, scripts.Submit, []string{StateHeld, StateSubmitted}, id, txID, m.grace.Milliseconds())
	if err != nil {
		return nil, err
	}
	// The leading syncer syncs the pool at once, so the change output is
	// offered soon; told only now that the journal has the submit, it cannot
	// settle the reservation before the submit is answered.
	_ = m.rdb.Publish(context.WithoutCancel(ctx), m.keys(pool).Submitted, "1").Err()
	return res, nil
}

// ReleasedMemory is how long Redis remembers a release: a repeated release
// and Released find it there while its journal write may be on its way.
const ReleasedMemory = 10 * time.Second

// Release ends a held reservation; its UTXOs are free at once. Redis decides
// and the journal learns afterwards without being waited for (see the
// package doc for why that is safe); a release repeated within
// ReleasedMemory returns the same released reservation. A submitted
// reservation is not released (ErrNotHeld): its transaction may be mined, so
// its UTXOs stay withheld until the chain settles it. When Redis does not
// have the reservation live (it ran out, the chain ended it, Redis lost the
// pool) the journal decides: a reservation that already ended fails with an
// error wrapping ErrEnded (ask the journal how) and Redis is made to follow;
// a live one is released in the journal first, then in Redis.
func (m *Reservations) Release(ctx context.Context, pool int64, id string) (*Reservation, error) {
	k := m.keys(pool)
	raw, err := scripts.Release.Run(ctx, m.rdb, k.With(k.Releases()), id, ReleasedMemory.Milliseconds(),
		releasesKept.Milliseconds()).Slice()
	if err == nil {
		f, err := fieldsOf(raw)
		if err != nil {
			return nil, err
		}
		res, err := resOf(pool, f)
		if err != nil {
			return nil, err
		}
		res.Replayed = f["result"] == "again"
		if m.journal != nil {
			// Also when Redis had released it already: that may have been
			// this call's own script, run twice (go-redis resends a script
			// after a lost connection) and answered only the second time.
			// The journal takes a release it has once.
			m.journal.Released(res, res.UpdatedAt)
		}
		return res, nil
	}
	err = scriptError(err)
	if m.journal == nil || !(errors.Is(err, ErrNotFound) || errors.Is(err, ErrRebuilding)) {
		return nil, err
	}
	// Redis does not have it live (any more): the journal tells. A live row
	// past its expiry ran out (the syncer marks it expired later).
	cur, err := m.journal.Lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	if Live(cur.State) && !cur.ExpiresAt.After(time.Now()) {
		cur.State = StateExpired
	}
	if !Live(cur.State) {
		m.follow(ctx, pool, id)
		return nil, fmt.Errorf("%w: it is %s", ErrEnded, cur.State)
	}
	ended := *cur
	ended.State = StateReleased
	ended.UpdatedAt = time.Now()
	if err := m.journalUpdate(ctx, &ended, StateHeld); err != nil {
		if errors.Is(err, ErrEnded) {
			m.follow(ctx, pool, id)
		}
		return nil, err
	}
	// The release took effect; Redis follows. Should this step fail, the
	// UTXOs stay held until the hold runs out or the syncer's sweep ends it:
	// later, never twice.
	m.follow(ctx, pool, id)
	return &ended, nil
}

// Peek returns reservation id as Redis has it: live (held or submitted,
// not past its expiry), or released within ReleasedMemory. Anything else is
// ErrNotFound: the journal knows the rest. Redis is where a change of a
// live reservation takes effect first (its journal write follows), so a
// reader that must not go back in time asks here before the journal.
func (m *Reservations) Peek(ctx context.Context, pool int64, id string) (*Reservation, error) {
	names := append(resFields[:len(resFields):len(resFields)], "ended") //nolint:gocritic // the 3-index slice makes append copy
	v, err := m.rdb.HMGet(ctx, m.keys(pool).Res+id, names...).Result()
	if err != nil {
		return nil, fmt.Errorf("lockmgr: peek: %w", err)
	}
	f := map[string]string{"id": id}
	for i, name := range names {
		s, _ := v[i].(string)
		f[name] = s
	}
	switch f["state"] {
	case StateReleased:
		return resOf(pool, f)
	case StateHeld, StateSubmitted:
		res, err := resOf(pool, f)
		if err != nil {
			return nil, err
		}
		if res.ExpiresAt.After(time.Now()) {
			return res, nil
		}
	}
	return nil, ErrNotFound
}

// follow makes Redis end a reservation the journal says has ended. While
// Redis has lost the pool it does so once the pool is loaded
// (endOnceLoaded): a rebuild whose snapshot came before the ending may
// restore the reservation. A failure is left to the hold's expiry and the
// syncer's sweep.
func (m *Reservations) follow(ctx context.Context, pool int64, id string) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), followTimeout)
	defer cancel()
	if n, err := m.rdb.Exists(fctx, m.keys(pool).Ready).Result(); err == nil && n == 0 {
		m.endOnceLoaded(pool, []string{id})
		return
	}
	_ = m.endReservations(fctx, pool, 0, []string{id})
}

// change runs a script that changes a live reservation, then journals the
// result. When the journal says the reservation ended meanwhile (a release
// or the chain got there first), Redis follows and the change fails with
// ErrNotFound.
func (m *Reservations) change(ctx context.Context, pool int64, id string, s *scripts.Script, from []string, args ...any) (*Reservation, error) {
	res, err := m.run(ctx, pool, s, m.keys(pool).List, args...)
	if err != nil {
		return nil, err
	}
	res.UpdatedAt = time.Now().UTC()
	if err := m.journalUpdate(ctx, res, from...); err != nil {
		switch {
		case errors.Is(err, ErrEnded):
			m.follow(ctx, pool, id)
			return nil, fmt.Errorf("%w (%w)", ErrNotFound, err)
		case !errors.Is(err, ErrNotHeld):
			// The change took effect in Redis (a submitted reservation keeps
			// its UTXOs for the submit grace): the journal must learn it,
			// or the two disagree until the sweep ends the hold.
			m.journal.UpdateLater(res, from...)
		}
		return nil, err
	}
	return res, nil
}

func (m *Reservations) run(ctx context.Context, pool int64, s *scripts.Script, keys []string, args ...any) (*Reservation, error) {
	raw, err := s.Run(ctx, m.rdb, keys, args...).Slice()
	if err != nil {
		return nil, scriptError(err)
	}
	f, err := fieldsOf(raw)
	if err != nil {
		return nil, err
	}
	return resOf(pool, f)
}

func (m *Reservations) journalUpdate(ctx context.Context, res *Reservation, from ...string) error {
	if m.journal == nil {
		return nil
	}
	if err := m.journal.Update(ctx, res, from...); err != nil {
		return fmt.Errorf("lockmgr: journal: %w", err)
	}
	return nil
}

// EndReservations makes Redis end reservations the journal says have ended
// (the syncer settled them, or the sweep found them ended): the UTXOs they
// hold are offered again where the chain still offers them. The write
// carries the epoch of the Manager it came from (see Manager.Fenced).
func (m *Reservations) EndReservations(ctx context.Context, pool int64, ids []string) error {
	return m.endReservations(ctx, pool, m.epoch, ids)
}

func (m *Reservations) endReservations(ctx context.Context, pool, epoch int64, ids []string) error {
	k := m.keys(pool)
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), bulkBatch)]
		ids = ids[len(chunk):]
		args := make([]any, 0, 1+len(chunk))
		args = append(args, epoch)
		for _, id := range chunk {
			args = append(args, id)
		}
		if err := scripts.End.Run(ctx, m.rdb, k.List, args...).Err(); err != nil {
			return fmt.Errorf("lockmgr: end reservations of pool %d: %w", pool, scriptError(err))
		}
	}
	return nil
}

// ShortenOldestLegacy applies the original bufferserver's rule, for legacy holds
// only: when no UTXO of the pool is free, the oldest live legacy hold is cut to
// end within LegacyShortTTL. It never lengthens a hold and never touches a
// reservation made through the v1 API. It reports whether a hold was shortened.
// The journal learns the new expiry after Redis, well before it comes.
func (m *Reservations) ShortenOldestLegacy(ctx context.Context, pool int64) (bool, error) {
	raw, err := scripts.ShortenLegacy.Run(ctx, m.rdb, m.keys(pool).List, LegacyShortTTL.Milliseconds()).Slice()
	if err != nil {
		return false, fmt.Errorf("lockmgr: shorten legacy: %w", scriptError(err))
	}
	if len(raw) == 0 {
		return false, nil
	}
	f, err := fieldsOf(raw)
	if err != nil {
		return true, err
	}
	res, err := resOf(pool, f)
	if err != nil {
		return true, err
	}
	if err := m.journalUpdate(ctx, res, StateHeld); err != nil && !errors.Is(err, ErrEnded) {
		return true, err
	}
	return true, nil
}
