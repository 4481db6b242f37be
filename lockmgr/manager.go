package lockmgr

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Manager reserves, lists and releases the UTXOs of contract pools in Redis.
// It is safe for concurrent use; any number of Managers on any number of hosts
// may share one Redis.
type Manager struct {
	rdb     redis.UniversalClient
	prefix  string
	journal Journal
}

// New returns a Manager on rdb (a client, a failover client or a cluster client).
func New(rdb redis.UniversalClient, opts Options) *Manager {
	return &Manager{rdb: rdb, prefix: opts.Prefix, journal: opts.Journal}
}

// poolKeys are the keys of one pool; they all share the hash tag {p<id>}.
type poolKeys struct {
	tag, avail, amount, held, holder, legacy, fence, loaded, stageAvail, stageAmount string
}

func (m *Manager) keys(pool int64) poolKeys {
	tag := m.prefix + "{p" + strconv.FormatInt(pool, 10) + "}"
	return poolKeys{
		tag:         tag,
		avail:       tag + ":avail",
		amount:      tag + ":amount",
		held:        tag + ":held",
		holder:      tag + ":holder",
		legacy:      tag + ":legacy",
		fence:       tag + ":fence",
		loaded:      tag + ":loaded",
		stageAvail:  tag + ":stage:avail",
		stageAmount: tag + ":stage:amount",
	}
}

func (k poolKeys) res(id string) string { return k.tag + ":res:" + id }

// Ping checks that Redis answers.
func (m *Manager) Ping(ctx context.Context) error { return m.rdb.Ping(ctx).Err() }

// newID returns a 128-bit random reservation id as 32 hex characters.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("lockmgr: random id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Reserve grants a reservation for exactly r.Hashes (all or nothing) or for any
// r.Count free UTXOs of the pool, in one atomic script. When a Journal is set the
// reservation is recorded before Reserve returns; if that fails the hold is undone.
func (m *Manager) Reserve(ctx context.Context, r Request) (*Reservation, error) {
	ttl := r.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	switch {
	case r.PoolID <= 0:
		return nil, fmt.Errorf("%w: pool id must be positive", ErrBadRequest)
	case ttl < MinTTL || ttl > MaxTTL:
		return nil, fmt.Errorf("%w: ttl must be between %s and %s", ErrBadRequest, MinTTL, MaxTTL)
	case len(r.Hashes) > 0 && r.Count > 0:
		return nil, fmt.Errorf("%w: give either hashes or count", ErrBadRequest)
	case len(r.Hashes) == 0 && r.Count <= 0:
		return nil, fmt.Errorf("%w: give hashes or a positive count", ErrBadRequest)
	}
	seen := make(map[string]bool, len(r.Hashes))
	for _, h := range r.Hashes {
		if seen[h] {
			return nil, fmt.Errorf("%w: hash %s given twice", ErrBadRequest, h)
		}
		seen[h] = true
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	k := m.keys(r.PoolID)
	legacy := "0"
	if r.Owner == LegacyOwner {
		legacy = "1"
	}
	args := make([]any, 0, 5+len(r.Hashes))
	args = append(args, id, r.Owner, ttl.Milliseconds(), legacy, r.Count)
	for _, h := range r.Hashes {
		args = append(args, h)
	}
	raw, err := reserveScript.Run(ctx, m.rdb,
		[]string{k.avail, k.amount, k.held, k.holder, k.legacy, k.fence, k.res(id)}, args...).Slice()
	if err != nil {
		return nil, scriptError(err)
	}
	res, err := decodeGrant(id, r, raw)
	if err != nil {
		return nil, err
	}
	if m.journal != nil {
		if err := m.journal.Record(ctx, res); err != nil {
			// Undo with a fresh context: the caller's may be what failed.
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if uerr := m.release(uctx, r.PoolID, id, res.Hashes()); uerr != nil {
				return nil, errors.Join(fmt.Errorf("lockmgr: journal: %w", err), uerr)
			}
			return nil, fmt.Errorf("lockmgr: journal: %w", err)
		}
	}
	return res, nil
}

// scriptError maps the scripts' error replies to sentinel errors.
func scriptError(err error) error {
	// Redis may put its generic "ERR " code before a script's error text.
	msg := strings.TrimPrefix(err.Error(), "ERR ")
	switch {
	case strings.HasPrefix(msg, "LOCKED"):
		return fmt.Errorf("%w: %s", ErrLocked, strings.TrimSpace(strings.TrimPrefix(msg, "LOCKED")))
	case strings.HasPrefix(msg, "UNKNOWN"):
		return fmt.Errorf("%w: %s", ErrUnknownUTXO, strings.TrimSpace(strings.TrimPrefix(msg, "UNKNOWN")))
	case strings.HasPrefix(msg, "UNAVAILABLE"):
		return ErrUnavailable
	}
	return fmt.Errorf("lockmgr: redis: %w", err)
}

func decodeGrant(id string, r Request, raw []any) (*Reservation, error) {
	if len(raw) < 3 || (len(raw)-3)%2 != 0 {
		return nil, fmt.Errorf("lockmgr: unexpected reply of %d values", len(raw))
	}
	nums := make([]int64, 3)
	for i := range nums {
		n, ok := raw[i].(int64)
		if !ok {
			return nil, fmt.Errorf("lockmgr: unexpected reply value %v", raw[i])
		}
		nums[i] = n
	}
	items, err := decodeItems(raw[3:])
	if err != nil {
		return nil, err
	}
	return &Reservation{
		ID:        id,
		PoolID:    r.PoolID,
		Fence:     nums[0],
		Owner:     r.Owner,
		Items:     items,
		State:     "held",
		CreatedAt: time.UnixMilli(nums[1]).UTC(),
		ExpiresAt: time.UnixMilli(nums[2]).UTC(),
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

func (m *Manager) release(ctx context.Context, pool int64, id string, hashes []string) error {
	k := m.keys(pool)
	args := make([]any, 0, 1+len(hashes))
	args = append(args, id)
	for _, h := range hashes {
		args = append(args, h)
	}
	err := releaseScript.Run(ctx, m.rdb, []string{k.avail, k.amount, k.held, k.holder, k.legacy, k.res(id)}, args...).Err()
	if err != nil {
		return fmt.Errorf("lockmgr: release: %w", err)
	}
	return nil
}

// ListAvailable returns free UTXOs of the pool sorted by amount (then hash),
// ascending or descending, from position start, at most limit of them. A held
// UTXO is never listed.
func (m *Manager) ListAvailable(ctx context.Context, pool int64, desc bool, start, limit int) ([]Item, error) {
	if start < 0 || limit <= 0 {
		return nil, fmt.Errorf("%w: start must be >= 0 and limit > 0", ErrBadRequest)
	}
	k := m.keys(pool)
	d := "0"
	if desc {
		d = "1"
	}
	raw, err := listScript.Run(ctx, m.rdb, []string{k.avail, k.amount, k.held, k.holder}, d, start, start+limit-1).Slice()
	if err != nil {
		return nil, fmt.Errorf("lockmgr: list: %w", err)
	}
	return decodeItems(raw)
}

// ShortenOldestLegacy applies the original bufferserver's rule, for legacy holds
// only: when no UTXO of the pool is free, the oldest live legacy hold is cut to
// end within LegacyShortTTL. It never lengthens a hold and never touches a
// reservation made through the v1 API. It reports whether a hold was shortened.
func (m *Manager) ShortenOldestLegacy(ctx context.Context, pool int64) (bool, error) {
	k := m.keys(pool)
	n, err := shortenLegacyScript.Run(ctx, m.rdb, []string{k.avail, k.amount, k.held, k.holder, k.legacy},
		LegacyShortTTL.Milliseconds(), k.tag+":res:").Int()
	if err != nil {
		return false, fmt.Errorf("lockmgr: shorten legacy: %w", err)
	}
	return n == 1, nil
}

// SyncAvailable applies the chain's changes to a pool: add holds UTXOs new or
// seen again on chain (free at once unless held), remove those the chain no
// longer has (never offered again; a hold on one runs out by itself).
func (m *Manager) SyncAvailable(ctx context.Context, pool int64, add []Item, remove []string) error {
	const batch = 5000
	k := m.keys(pool)
	for len(add) > 0 || len(remove) > 0 {
		a := add[:min(len(add), batch)]
		add = add[len(a):]
		r := remove[:min(len(remove), batch-len(a))]
		remove = remove[len(r):]
		args := make([]any, 0, 1+2*len(a)+len(r))
		args = append(args, len(a))
		for _, it := range a {
			args = append(args, it.Hash, it.Amount)
		}
		for _, h := range r {
			args = append(args, h)
		}
		if err := syncScript.Run(ctx, m.rdb, []string{k.avail, k.amount, k.held}, args...).Err(); err != nil {
			return fmt.Errorf("lockmgr: sync pool %d: %w", pool, err)
		}
	}
	return nil
}

// LoadAvailable replaces the pool's whole view of the chain with all (the
// UTXOs the chain has for it), keeping every live hold, and marks the pool as
// loaded. The new view is staged and swapped in by one script, so readers never
// see a half-loaded pool.
func (m *Manager) LoadAvailable(ctx context.Context, pool int64, all []Item) error {
	const batch = 5000
	k := m.keys(pool)
	if err := m.rdb.Del(ctx, k.stageAvail, k.stageAmount).Err(); err != nil {
		return fmt.Errorf("lockmgr: load pool %d: %w", pool, err)
	}
	for i := 0; i < len(all); i += batch {
		chunk := all[i:min(i+batch, len(all))]
		zs := make([]redis.Z, len(chunk))
		hs := make([]any, 0, 2*len(chunk))
		for j, it := range chunk {
			zs[j] = redis.Z{Score: float64(it.Amount), Member: it.Hash}
			hs = append(hs, it.Hash, it.Amount)
		}
		_, err := m.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.ZAdd(ctx, k.stageAvail, zs...)
			p.HSet(ctx, k.stageAmount, hs...)
			return nil
		})
		if err != nil {
			return fmt.Errorf("lockmgr: load pool %d: %w", pool, err)
		}
	}
	loadID := strconv.FormatInt(time.Now().UnixNano(), 10)
	err := loadCommitScript.Run(ctx, m.rdb,
		[]string{k.avail, k.amount, k.held, k.stageAvail, k.stageAmount, k.loaded}, loadID).Err()
	if err != nil {
		return fmt.Errorf("lockmgr: load pool %d: %w", pool, err)
	}
	return nil
}

// FenceGap is how far RaiseFence lifts a restored fencing counter above the
// highest fence known durably, so that fences Redis handed out but the journal
// never saw are not handed out again.
const FenceGap = 1000

// RaiseFence lifts the pool's fencing counter to at least floor+FenceGap; it
// never lowers it. Call it with the highest fence in the journal whenever Redis
// may have lost its data, before the pool is served again. It returns the
// counter's value.
func (m *Manager) RaiseFence(ctx context.Context, pool, floor int64) (int64, error) {
	v, err := fenceFloorScript.Run(ctx, m.rdb, []string{m.keys(pool).fence}, floor+FenceGap).Int64()
	if err != nil {
		return 0, fmt.Errorf("lockmgr: raise fence: %w", err)
	}
	return v, nil
}

// Loaded reports whether the pool's view was loaded into this Redis; false after
// Redis lost its data (restart without persistence, flush, failover to a stale
// replica), which calls for a full load.
func (m *Manager) Loaded(ctx context.Context, pool int64) (bool, error) {
	n, err := m.rdb.Exists(ctx, m.keys(pool).loaded).Result()
	if err != nil {
		return false, fmt.Errorf("lockmgr: loaded: %w", err)
	}
	return n == 1, nil
}

// PoolCounts returns how many UTXOs of the pool are free and how many are held.
func (m *Manager) PoolCounts(ctx context.Context, pool int64) (free, held int64, err error) {
	k := m.keys(pool)
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	var fc *redis.IntCmd
	var hc *redis.IntCmd
	_, err = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		fc = p.ZCard(ctx, k.avail)
		hc = p.ZCount(ctx, k.held, "("+now, "+inf")
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("lockmgr: counts: %w", err)
	}
	return fc.Val(), hc.Val(), nil
}
