package lockmgr

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// combineBudget bounds the search of a combine reservation (nodes visited);
// past it the best combination found so far is taken.
const combineBudget = 20000

// FenceGap is how far a rebuild lifts a pool's fencing counter above the
// highest fence the journal knows, so that fences Redis handed out but the
// journal never saw are not handed out again.
const FenceGap = 1000

// Manager reserves, lists and releases the UTXOs of contract pools in Redis.
// It is safe for concurrent use; any number of Managers on any number of hosts
// may share one Redis.
type Manager struct {
	rdb     redis.UniversalClient
	prefix  string
	journal Journal
	grace   time.Duration
	life    time.Duration
	epoch   int64 // leadership epoch of the sync job writing through it, 0 for none
	hub     *hub  // shared with the copies Fenced returns
}

// New returns a Manager on rdb (a client, a failover client or a cluster client).
func New(rdb redis.UniversalClient, opts Options) *Manager {
	grace := opts.SubmitGrace
	if grace <= 0 {
		grace = DefaultSubmitGrace
	}
	life := opts.MaxLifetime
	if life <= 0 {
		life = MaxLifetime
	}
	return &Manager{rdb: rdb, prefix: opts.Prefix, journal: opts.Journal, grace: grace, life: life,
		hub: &hub{waiters: map[string]map[chan struct{}]struct{}{}}}
}

// Fenced returns a Manager sharing m's connection whose sync writes
// (SyncAvailable, Settle) carry the leadership epoch of a sync job: each pool
// remembers the highest epoch that wrote to it and refuses an older one with
// ErrStaleEpoch, so a deposed leader's late write cannot undo a newer
// leader's. Reservation operations are not affected.
func (m *Manager) Fenced(epoch int64) *Manager {
	c := *m
	c.epoch = epoch
	return &c
}

// poolKeys are the keys of one pool; they all share the hash tag {p<id>}.
type poolKeys struct {
	tag, avail, amount, held, holder, legacy, fence, loaded, freed, syncgen, epoch string
}

func (m *Manager) keys(pool int64) poolKeys {
	tag := m.prefix + "{p" + strconv.FormatInt(pool, 10) + "}"
	return poolKeys{
		tag:     tag,
		avail:   tag + ":avail",
		amount:  tag + ":amount",
		held:    tag + ":held",
		holder:  tag + ":holder",
		legacy:  tag + ":legacy",
		fence:   tag + ":fence",
		loaded:  tag + ":loaded",
		freed:   tag + ":freed",
		syncgen: tag + ":syncgen",
		epoch:   tag + ":epoch",
	}
}

func (k poolKeys) res(id string) string { return k.tag + ":res:" + id }

// stage names the keys a rebuild builds its new free set in; each rebuild has
// its own, so concurrent rebuilds never mix.
func (k poolKeys) stage(nonce string) (avail, amount string) {
	return k.tag + ":stage:" + nonce + ":avail", k.tag + ":stage:" + nonce + ":amount"
}

func (k poolKeys) idem(key string) string {
	s := sha256.Sum256([]byte(key))
	return k.tag + ":idem:" + hex.EncodeToString(s[:16])
}

// Ping checks that Redis answers.
func (m *Manager) Ping(ctx context.Context) error { return m.rdb.Ping(ctx).Err() }

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
	case modes != 1 || r.Count < 0 || r.Amount < 0:
		return "", 0, fmt.Errorf("%w: give exactly one of hashes, a positive count or a positive amount", ErrBadRequest)
	case r.Combine && mode != "combine":
		return "", 0, fmt.Errorf("%w: combine goes with amount", ErrBadRequest)
	}
	seen := make(map[string]bool, len(r.Hashes))
	for _, h := range r.Hashes {
		if seen[h] {
			return "", 0, fmt.Errorf("%w: hash %s given twice", ErrBadRequest, h)
		}
		seen[h] = true
	}
	return mode, ttl, nil
}

// Reserve grants a reservation in one atomic script (see Request for the
// modes). When a Journal is set the reservation is recorded before Reserve
// returns; if that fails the hold is undone and Reserve fails.
func (m *Manager) Reserve(ctx context.Context, r Request) (*Reservation, error) {
	mode, ttl, err := r.validate()
	if err != nil {
		return nil, err
	}
	id, err := newID(r.PoolID)
	if err != nil {
		return nil, err
	}
	k := m.keys(r.PoolID)
	legacy, useIdem := "0", "0"
	if r.Owner == LegacyOwner {
		legacy = "1"
	}
	if r.IdempotencyKey != "" {
		useIdem = "1"
	}
	args := make([]any, 0, 9+len(r.Hashes))
	args = append(args, id, r.Owner, ttl.Milliseconds(), legacy, mode, r.Count, r.Amount, useIdem, combineBudget)
	for _, h := range r.Hashes {
		args = append(args, h)
	}
	keys := []string{k.avail, k.amount, k.held, k.holder, k.legacy, k.fence, k.loaded, k.res(id), k.idem(r.IdempotencyKey)}
	raw, err := reserveScript.Run(ctx, m.rdb, keys, args...).Slice()
	if err != nil {
		return nil, scriptError(err)
	}
	if len(raw) == 0 {
		return nil, errors.New("lockmgr: empty reply")
	}
	res, err := decodeRes(r.PoolID, raw[1:])
	if err != nil {
		return nil, err
	}
	if raw[0] == "REPLAY" {
		res.Replayed = true
		return res, nil
	}
	if m.journal == nil {
		return res, nil
	}
	if err := m.journal.Record(ctx, res); err != nil {
		// Undo with a fresh context: the caller's may be what failed.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return nil, errors.Join(fmt.Errorf("lockmgr: journal: %w", err), m.undo(uctx, k, res))
	}
	// Redis may have lost the grant while the journal was written; if so the
	// client must not be told it holds anything.
	ok, err := verifyScript.Run(ctx, m.rdb, []string{k.holder, k.loaded, k.res(id)}, append([]any{id}, anySlice(res.Hashes())...)...).Int()
	if err != nil || ok != 1 {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		ended := *res
		ended.State = StateReleased
		return nil, errors.Join(ErrRebuilding, err, m.journal.Update(uctx, &ended), m.undo(uctx, k, res))
	}
	return res, nil
}

func (m *Manager) undo(ctx context.Context, k poolKeys, res *Reservation) error {
	args := append([]any{res.ID}, anySlice(res.Hashes())...)
	if err := undoScript.Run(ctx, m.rdb, []string{k.avail, k.amount, k.held, k.holder, k.legacy, k.res(res.ID)}, args...).Err(); err != nil {
		return fmt.Errorf("lockmgr: undo: %w", err)
	}
	return nil
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Get returns a live reservation from Redis, or ErrNotFound when Redis has none
// with that id (it never existed or it ended; the journal knows the rest), or
// ErrRebuilding when Redis lost the pool and cannot tell.
func (m *Manager) Get(ctx context.Context, pool int64, id string) (*Reservation, error) {
	k := m.keys(pool)
	var fields *redis.SliceCmd
	var loaded *redis.IntCmd
	_, err := m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		fields = p.HMGet(ctx, k.res(id), "fence", "owner", "state", "created", "expires", "hashes", "amounts", "txid")
		loaded = p.Exists(ctx, k.loaded)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lockmgr: get: %w", err)
	}
	v := fields.Val()
	if v[0] == nil {
		if loaded.Val() == 0 {
			return nil, ErrRebuilding
		}
		return nil, ErrNotFound
	}
	raw := make([]any, 0, 9)
	raw = append(raw, id)
	for _, x := range v {
		if x == nil {
			x = ""
		}
		raw = append(raw, x)
	}
	return decodeRes(pool, raw)
}

// Extend makes a held reservation end ttl from now (on the Redis clock). It
// fails with ErrNotFound once the reservation ended, ErrNotHeld once it was
// submitted, and ErrLifetime past the maximum lifetime from its creation.
func (m *Manager) Extend(ctx context.Context, pool int64, id string, ttl time.Duration) (*Reservation, error) {
	if ttl < MinTTL || ttl > MaxTTL {
		return nil, fmt.Errorf("%w: ttl must be between %s and %s", ErrBadRequest, MinTTL, MaxTTL)
	}
	k := m.keys(pool)
	return m.change(ctx, pool, extendScript, []string{k.avail, k.amount, k.held, k.holder, k.loaded, k.res(id)},
		id, ttl.Milliseconds(), m.life.Milliseconds())
}

// Submit records the transaction that spends a held reservation's UTXOs: the
// reservation becomes submitted and keeps holding for at least the submit
// grace, until the syncer settles it. Submitting the same tx again is a no-op.
func (m *Manager) Submit(ctx context.Context, pool int64, id, txID string) (*Reservation, error) {
	k := m.keys(pool)
	return m.change(ctx, pool, submitScript, []string{k.avail, k.amount, k.held, k.holder, k.loaded, k.res(id)},
		id, txID, m.grace.Milliseconds())
}

// Release ends a live reservation; its UTXOs are free at once. The journal
// learns first, so a failure of the database leaves the UTXOs held (never
// free in Redis while the journal says held); a retry finishes the job.
//
// Of concurrent releases of one reservation exactly one succeeds: the one
// whose journal write ended it. The others fail with ErrNotFound, also when
// their Redis step is the one that freed the UTXOs.
func (m *Manager) Release(ctx context.Context, pool int64, id string) (*Reservation, error) {
	cur, err := m.Get(ctx, pool, id)
	if err != nil {
		return nil, err
	}
	ended := *cur
	ended.State = StateReleased
	jerr := m.journalUpdate(ctx, &ended)
	if jerr != nil && !errors.Is(jerr, ErrEnded) {
		return nil, jerr
	}
	// Also when the journal says it ended already (another release, or an
	// earlier attempt whose Redis step failed): Redis must follow.
	k := m.keys(pool)
	res, err := m.run(ctx, pool, releaseScript, []string{k.avail, k.amount, k.held, k.holder, k.legacy, k.loaded, k.res(id)}, id)
	switch {
	case jerr != nil && (err == nil || errors.Is(err, ErrNotFound)):
		// Ended by someone else: this call only made Redis follow.
		return nil, fmt.Errorf("%w: ended before this release (%w)", ErrNotFound, jerr)
	case errors.Is(err, ErrNotFound):
		// This call ended it in the journal and the hold is gone from Redis:
		// a concurrent release that lost in the journal made Redis follow,
		// or the script ran but its answer was lost and go-redis's retry
		// found nothing left. The release took effect.
		return &ended, nil
	case err != nil:
		return nil, err
	}
	res.State = StateReleased
	return res, nil
}

// change runs a script that changes a live reservation and journals the result.
func (m *Manager) change(ctx context.Context, pool int64, s *redis.Script, keys []string, args ...any) (*Reservation, error) {
	res, err := m.run(ctx, pool, s, keys, args...)
	if err != nil {
		return nil, err
	}
	if err := m.journalUpdate(ctx, res); err != nil {
		if errors.Is(err, ErrEnded) {
			// A concurrent release or settlement wrote the journal first; its
			// Redis step comes after ours, which found the reservation live. So
			// this change took effect just before the reservation ended, and
			// others may already have seen it: it succeeded.
			return res, nil
		}
		return nil, err
	}
	return res, nil
}

func (m *Manager) run(ctx context.Context, pool int64, s *redis.Script, keys []string, args ...any) (*Reservation, error) {
	raw, err := s.Run(ctx, m.rdb, keys, args...).Slice()
	if err != nil {
		return nil, scriptError(err)
	}
	return decodeRes(pool, raw)
}

func (m *Manager) journalUpdate(ctx context.Context, res *Reservation) error {
	if m.journal == nil {
		return nil
	}
	if err := m.journal.Update(ctx, res); err != nil {
		return fmt.Errorf("lockmgr: journal: %w", err)
	}
	return nil
}

// Settle ends a reservation as the chain decided (the syncer calls it after
// journaling the outcome): StateSpent or StateInvalidated drop its holds and the
// UTXOs are not offered again; StateReleased frees them.
func (m *Manager) Settle(ctx context.Context, pool int64, id, state string) error {
	switch state {
	case StateSpent, StateInvalidated, StateReleased:
	default:
		return fmt.Errorf("%w: cannot settle as %q", ErrBadRequest, state)
	}
	k := m.keys(pool)
	err := settleScript.Run(ctx, m.rdb, []string{k.avail, k.amount, k.held, k.holder, k.legacy, k.res(id), k.epoch}, id, state, m.epoch).Err()
	if err != nil {
		return fmt.Errorf("lockmgr: settle: %w", scriptError(err))
	}
	return nil
}

// scriptError maps the scripts' error replies to sentinel errors.
func scriptError(err error) error {
	// Redis may put its generic "ERR " code before a script's error text.
	msg := strings.TrimPrefix(err.Error(), "ERR ")
	word, rest, _ := strings.Cut(msg, " ")
	switch word {
	case "LOCKED":
		return fmt.Errorf("%w: %s", ErrLocked, rest)
	case "UNKNOWN":
		return fmt.Errorf("%w: %s", ErrUnknownUTXO, rest)
	case "UNAVAILABLE":
		return ErrUnavailable
	case "NOTLOADED":
		return ErrRebuilding
	case "NOTFOUND":
		return ErrNotFound
	case "NOTHELD":
		return ErrNotHeld
	case "LIFETIME":
		return ErrLifetime
	case "TXMISMATCH":
		return ErrTxMismatch
	case "STALE":
		return ErrStaleSnapshot
	case "STALEEPOCH":
		return fmt.Errorf("%w: %s", ErrStaleEpoch, rest)
	}
	return fmt.Errorf("lockmgr: redis: %w", err)
}

// decodeRes reads a reservation reply: id, fence, owner, state, created ms,
// expires ms, comma-separated hashes, comma-separated amounts, tx id.
func decodeRes(pool int64, raw []any) (*Reservation, error) {
	if len(raw) < 9 {
		return nil, fmt.Errorf("lockmgr: unexpected reply of %d values", len(raw))
	}
	s := make([]string, 9)
	for i := range s {
		switch v := raw[i].(type) {
		case string:
			s[i] = v
		case int64:
			s[i] = strconv.FormatInt(v, 10)
		default:
			return nil, fmt.Errorf("lockmgr: unexpected reply value %v", raw[i])
		}
	}
	fence, err1 := strconv.ParseInt(s[1], 10, 64)
	created, err2 := strconv.ParseInt(s[4], 10, 64)
	expires, err3 := strconv.ParseInt(s[5], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("lockmgr: bad reservation reply: %w", err)
	}
	var hashes, amounts []string
	if s[6] != "" {
		hashes, amounts = strings.Split(s[6], ","), strings.Split(s[7], ",")
	}
	if len(hashes) != len(amounts) {
		return nil, errors.New("lockmgr: bad reservation reply: hashes and amounts differ")
	}
	items := make([]Item, len(hashes))
	for i, h := range hashes {
		a, err := strconv.ParseInt(amounts[i], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("lockmgr: bad amount %q: %w", amounts[i], err)
		}
		items[i] = Item{Hash: h, Amount: a}
	}
	return &Reservation{
		ID: s[0], PoolID: pool, Fence: fence, Owner: s[2], State: s[3], TxID: s[8], Items: items,
		CreatedAt: time.UnixMilli(created).UTC(), ExpiresAt: time.UnixMilli(expires).UTC(),
	}, nil
}

// decodeItems reads a flat {hash, amount, ...} reply.
func decodeItems(raw []any) ([]Item, error) {
	items := make([]Item, 0, len(raw)/2)
	for i := 0; i+1 < len(raw); i += 2 {
		h, _ := raw[i].(string)
		as, _ := raw[i+1].(string)
		a, err := strconv.ParseInt(as, 10, 64)
		if h == "" || err != nil {
			return nil, fmt.Errorf("lockmgr: bad item in reply: %v %v", raw[i], raw[i+1])
		}
		items = append(items, Item{Hash: h, Amount: a})
	}
	return items, nil
}
