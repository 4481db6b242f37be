package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

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
	raw, err := listScript.Run(ctx, m.rdb, []string{k.avail, k.amount, k.held, k.holder, k.loaded}, d, start, start+limit-1).Slice()
	if err != nil {
		return nil, scriptError(err)
	}
	return decodeItems(raw)
}

// ShortenOldestLegacy applies the original bufferserver's rule, for legacy holds
// only: when no UTXO of the pool is free, the oldest live legacy hold is cut to
// end within LegacyShortTTL. It never lengthens a hold and never touches a
// reservation made through the v1 API. It reports whether a hold was shortened.
// The journal learns the new expiry after Redis, well before it comes.
func (m *Manager) ShortenOldestLegacy(ctx context.Context, pool int64) (bool, error) {
	k := m.keys(pool)
	raw, err := shortenLegacyScript.Run(ctx, m.rdb, []string{k.avail, k.amount, k.held, k.holder, k.legacy},
		LegacyShortTTL.Milliseconds(), k.tag+":res:").Slice()
	if err != nil {
		return false, fmt.Errorf("lockmgr: shorten legacy: %w", err)
	}
	if len(raw) == 0 {
		return false, nil
	}
	res, err := decodeRes(pool, raw)
	if err != nil {
		return true, err
	}
	if err := m.journalUpdate(ctx, res); err != nil && !errors.Is(err, ErrEnded) {
		return true, err
	}
	return true, nil
}

// SyncAvailable applies the chain's changes to a pool: add holds UTXOs new or
// seen again on chain (free at once unless held), remove those the chain no
// longer has (never offered again; a hold on one stays until it is settled or
// runs out). It does not mark a pool loaded: after a loss of Redis data only a
// Rebuild does.
func (m *Manager) SyncAvailable(ctx context.Context, pool int64, add []Item, remove []string) error {
	const batch = 5000
	k := m.keys(pool)
	for len(add) > 0 || len(remove) > 0 {
		a := add[:min(len(add), batch)]
		add = add[len(a):]
		r := remove[:min(len(remove), batch-len(a))]
		remove = remove[len(r):]
		args := make([]any, 0, 2+2*len(a)+len(r))
		args = append(args, m.epoch, len(a))
		for _, it := range a {
			args = append(args, it.Hash, it.Amount)
		}
		for _, h := range r {
			args = append(args, h)
		}
		if err := syncScript.Run(ctx, m.rdb, []string{k.avail, k.amount, k.held, k.syncgen, k.epoch}, args...).Err(); err != nil {
			return fmt.Errorf("lockmgr: sync pool %d: %w", pool, scriptError(err))
		}
	}
	return nil
}

// LoadAvailable is Rebuild with no reservations to restore: the pool's view of
// the chain becomes all, live holds are kept, and the pool is marked loaded.
func (m *Manager) LoadAvailable(ctx context.Context, pool int64, all []Item) error {
	gen, err := m.SyncGeneration(ctx, pool)
	if err != nil {
		return err
	}
	return m.Rebuild(ctx, pool, Snapshot{Available: all, SyncGen: gen})
}

// SyncGeneration counts the SyncAvailable calls on the pool; read it before
// taking a rebuild's snapshot (Snapshot.SyncGen).
func (m *Manager) SyncGeneration(ctx context.Context, pool int64) (int64, error) {
	n, err := m.rdb.Get(ctx, m.keys(pool).syncgen).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("lockmgr: sync generation: %w", err)
	}
	return n, nil
}

// Rebuild restores a pool from durable state after Redis lost it (or loads it
// the first time): the free set becomes s.Available minus every held UTXO, the
// live reservations of s.Live that Redis lacks are put back, and the fencing
// counter is raised to at least s.FenceFloor+FenceGap. The new free set is
// staged and swapped in by one script, so readers never see half a pool. Until
// a pool is rebuilt, reserving in it fails with ErrRebuilding.
func (m *Manager) Rebuild(ctx context.Context, pool int64, s Snapshot) error {
	const batch = 5000
	k := m.keys(pool)
	nonce, err := newNonce()
	if err != nil {
		return err
	}
	stageAvail, stageAmount := k.stage(nonce)
	for i := 0; i < len(s.Available); i += batch {
		chunk := s.Available[i:min(i+batch, len(s.Available))]
		zs := make([]redis.Z, len(chunk))
		hs := make([]any, 0, 2*len(chunk))
		for j, it := range chunk {
			zs[j] = redis.Z{Score: float64(it.Amount), Member: it.Hash}
			hs = append(hs, it.Hash, it.Amount)
		}
		_, err := m.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.ZAdd(ctx, stageAvail, zs...)
			p.HSet(ctx, stageAmount, hs...)
			// A rebuild that dies half-way leaves nothing for long.
			p.Expire(ctx, stageAvail, time.Minute)
			p.Expire(ctx, stageAmount, time.Minute)
			return nil
		})
		if err != nil {
			return fmt.Errorf("lockmgr: rebuild pool %d: %w", pool, err)
		}
	}
	args := make([]any, 0, 2+9*len(s.Live))
	args = append(args, s.FenceFloor+FenceGap, nonce, s.SyncGen)
	for _, r := range s.Live {
		amounts := make([]string, len(r.Items))
		for i, it := range r.Items {
			amounts[i] = strconv.FormatInt(it.Amount, 10)
		}
		args = append(args, r.ID, r.Fence, r.Owner, r.State, r.CreatedAt.UnixMilli(), r.ExpiresAt.UnixMilli(),
			r.TxID, strings.Join(r.Hashes(), ","), strings.Join(amounts, ","))
	}
	keys := []string{k.avail, k.amount, k.held, k.holder, k.legacy, k.fence, k.loaded, stageAvail, stageAmount, k.syncgen}
	if err := rebuildCommitScript.Run(ctx, m.rdb, keys, args...).Err(); err != nil {
		return fmt.Errorf("lockmgr: rebuild pool %d: %w", pool, scriptError(err))
	}
	return nil
}

// Loaded reports whether the pool's state is in Redis; false after Redis lost
// its data (restart without persistence, flush, failover to a stale replica),
// which calls for a Rebuild.
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
	var fc, hc *redis.IntCmd
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
