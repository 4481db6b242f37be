package lockmgr

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/lockmgr/internal/scripts"
)

// Loads are the loads of pools into Redis: whether a pool's state is there
// (its ready marker), the count of chain changes a rebuild's snapshot is
// checked against, and the rebuild that restores a pool Redis lost (or loads
// it the first time). Until a pool is loaded, reserving in it fails with
// ErrRebuilding. Get one from a Manager.
type Loads struct {
	*core
}

// FenceGap is how far a rebuild lifts a pool's fencing counter above the
// highest fence the journal knows, so that fences Redis handed out but the
// journal never saw are not handed out again.
const FenceGap = 1000

// LoadAvailable is Rebuild with no reservations to restore: the pool's view of
// the chain becomes all, live holds are kept, and the pool is marked ready.
func (m *Loads) LoadAvailable(ctx context.Context, pool int64, all []Item) error {
	gen, err := m.SyncGeneration(ctx, pool)
	if err != nil {
		return err
	}
	return m.Rebuild(ctx, pool, Snapshot{Available: all, SyncGen: gen})
}

// SyncGeneration counts the ApplyChain calls on the pool; read it before
// taking a rebuild's snapshot (Snapshot.SyncGen).
func (m *Loads) SyncGeneration(ctx context.Context, pool int64) (int64, error) {
	n, err := m.rdb.Get(ctx, m.keys(pool).SyncGen).Int64()
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
// live reservations of s.Live that Redis lacks are put back with the
// idempotency keys of s.Keys, and the fencing counter is raised to at least
// s.FenceFloor+FenceGap. The new free set is staged and swapped in by one
// script, so readers never see half a pool. Until a pool is rebuilt,
// reserving in it fails with ErrRebuilding.
func (m *Loads) Rebuild(ctx context.Context, pool int64, s Snapshot) error {
	k := m.keys(pool)
	nonce, err := newNonce()
	if err != nil {
		return err
	}
	load := s.Load
	if load == "" {
		load = nonce
	}
	stageFree, stageUTXO := k.Stage(nonce)
	for i := 0; i < len(s.Available); i += bulkBatch {
		chunk := s.Available[i:min(i+bulkBatch, len(s.Available))]
		zs := make([]redis.Z, len(chunk))
		hs := make([]any, 0, 2*len(chunk))
		for j, it := range chunk {
			a := pad20(it.Amount)
			zs[j] = redis.Z{Score: 0, Member: a + ":" + it.Hash}
			hs = append(hs, it.Hash, a)
		}
		_, err := m.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.ZAdd(ctx, stageFree, zs...)
			p.HSet(ctx, stageUTXO, hs...)
			// A rebuild that dies half-way leaves nothing for long.
			p.Expire(ctx, stageFree, time.Minute)
			p.Expire(ctx, stageUTXO, time.Minute)
			return nil
		})
		if err != nil {
			return fmt.Errorf("lockmgr: rebuild pool %d: %w", pool, err)
		}
	}
	args := make([]any, 0, 4+9*len(s.Live)+2*len(s.Keys))
	args = append(args, s.FenceFloor+FenceGap, load, s.SyncGen, len(s.Live))
	// Newest first: of two live reservations of one UTXO (the older one's
	// release had not reached the journal), the newer is restored.
	live := slices.Clone(s.Live)
	slices.SortFunc(live, func(a, b *Reservation) int { return cmp.Compare(b.Fence, a.Fence) })
	for _, r := range live {
		amounts := make([]string, len(r.Items))
		for i, it := range r.Items {
			amounts[i] = pad20(it.Amount)
		}
		args = append(args, r.ID, r.Fence, r.Owner, r.State, r.CreatedAt.UnixMilli(), r.ExpiresAt.UnixMilli(),
			r.TxID, strings.Join(r.Hashes(), ","), strings.Join(amounts, ","))
	}
	// The layout before bufferd 2 had the same tag.
	keys := k.With(stageFree, stageUTXO, k.Tag+":avail", k.Tag+":amount", k.Tag+":loaded")
	now := time.Now()
	for _, r := range s.Keys {
		if r.Key == "" {
			continue
		}
		left := r.CreatedAt.Add(IdempotencyWindow).Sub(now)
		keys = append(keys, k.IdemKey(r.Key))
		args = append(args, r.ID+" "+r.Fingerprint+" "+strconv.FormatInt(r.CreatedAt.UnixMilli(), 10), left.Milliseconds())
	}
	if err := scripts.RebuildCommit.Run(ctx, m.rdb, keys, args...).Err(); err != nil {
		return fmt.Errorf("lockmgr: rebuild pool %d: %w", pool, scriptError(err))
	}
	return nil
}

// Loaded reports whether the pool's state is in Redis; false after Redis lost
// its data (restart without persistence, flush, failover to a stale replica),
// which calls for a Rebuild.
func (m *Loads) Loaded(ctx context.Context, pool int64) (bool, error) {
	n, err := m.rdb.Exists(ctx, m.keys(pool).Ready).Result()
	if err != nil {
		return false, fmt.Errorf("lockmgr: loaded: %w", err)
	}
	return n == 1, nil
}
