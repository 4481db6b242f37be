package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/lockmgr/internal/scripts"
)

// Pools are the pools' UTXOs as Redis offers them: the free ones and the
// held ones, the chain's changes to them, the holds that ran out, listings
// and counts, and the syncer's wake-up when a reservation was submitted
// (WatchSubmits). Get one from a Manager.
type Pools struct {
	*core
}

// ListAvailable returns free UTXOs of the pool sorted by amount (then hash),
// ascending or descending, from position start, at most limit of them. A held
// UTXO is never listed.
func (m *Pools) ListAvailable(ctx context.Context, pool int64, desc bool, start, limit int) ([]Item, error) {
	return m.list(ctx, pool, desc, start, limit, 0)
}

// SampleAvailable returns at most limit free UTXOs of the pool sorted by
// amount, spread over the whole ranking: every P-th one from an offset that
// moves on with each call (P = free UTXOs / size), plus the largest. Callers
// at the same moment thus get different UTXOs to pick from, whatever rule
// they pick by. With fewer than 2*size free UTXOs it is ListAvailable's
// first page.
func (m *Pools) SampleAvailable(ctx context.Context, pool int64, desc bool, limit, size int) ([]Item, error) {
	if size <= 0 {
		return nil, fmt.Errorf("%w: sample size must be > 0", ErrBadRequest)
	}
	return m.list(ctx, pool, desc, 0, limit, size)
}

func (m *Pools) list(ctx context.Context, pool int64, desc bool, start, limit, size int) ([]Item, error) {
	if start < 0 || limit <= 0 {
		return nil, fmt.Errorf("%w: start must be >= 0 and limit > 0", ErrBadRequest)
	}
	d := "0"
	if desc {
		d = "1"
	}
	k := m.keys(pool)
	raw, err := scripts.List.Run(ctx, m.rdb, k.With(k.ListTurn()), d, start, start+limit-1, size).Slice()
	if err != nil {
		return nil, scriptError(err)
	}
	return decodeItems(raw)
}

// bulkBatch is how many UTXOs (or reservations) one Redis call of the bulk
// paths (the chain's changes, a rebuild's staging, the sweep's reads, the
// endings the journal decides) carries at most. Redis serves nobody else
// while it runs a command, so each holds it for about a millisecond,
// whatever the pool's size; 5,000 held it for 40-90 ms (BENCHMARKS.md).
const bulkBatch = 500

// scanHash reads the hash at key a bulkBatch at a time (HSCAN, through
// go-redis's iterator, which yields a field, then its value), not in one
// command that holds Redis as long as the hash is large. A field set or
// deleted meanwhile may be seen or not; the others are seen.
func (c *core) scanHash(ctx context.Context, key string) (map[string]string, error) {
	out := map[string]string{}
	it := c.rdb.HScan(ctx, key, 0, "", bulkBatch).Iterator()
	for it.Next(ctx) {
		field := it.Val()
		if !it.Next(ctx) {
			break
		}
		out[field] = it.Val()
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// ApplyChain applies the chain's changes to a pool: add holds UTXOs the chain
// now offers (free at once unless held), remove those it no longer offers
// (spent, spent in the mempool, invalidated, immature: never offered again; a
// hold on one stays until its reservation ends). It does not mark a pool
// ready: after a loss of Redis data only a Rebuild does.
func (m *Pools) ApplyChain(ctx context.Context, pool int64, add []Item, remove []string) error {
	k := m.keys(pool)
	for len(add) > 0 || len(remove) > 0 {
		a := add[:min(len(add), bulkBatch)]
		add = add[len(a):]
		r := remove[:min(len(remove), bulkBatch-len(a))]
		remove = remove[len(r):]
		args := make([]any, 0, 2+2*len(a)+len(r))
		args = append(args, m.epoch, len(a))
		for _, it := range a {
			args = append(args, it.Hash, pad20(it.Amount))
		}
		for _, h := range r {
			args = append(args, h)
		}
		if err := scripts.Chain.Run(ctx, m.rdb, k.List, args...).Err(); err != nil {
			return fmt.Errorf("lockmgr: apply chain to pool %d: %w", pool, scriptError(err))
		}
	}
	return nil
}

// PoolCounts returns how many UTXOs of the pool are free and how many are held.
func (m *Pools) PoolCounts(ctx context.Context, pool int64) (free, held int64, err error) {
	k := m.keys(pool)
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	var fc, hc *redis.IntCmd
	_, err = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		fc = p.ZCard(ctx, k.Free)
		hc = p.ZCount(ctx, k.Held, "("+now, "+inf")
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("lockmgr: counts: %w", err)
	}
	return fc.Val(), hc.Val(), nil
}

// Offered returns the UTXOs Redis offers for the pool (free or held), with
// their amounts: what the syncer's sweep compares with the journal's view.
// It is read in pieces (scanHash): one offered or withdrawn meanwhile may be
// seen or not, as if read a moment earlier or later.
func (m *Pools) Offered(ctx context.Context, pool int64) (map[string]uint64, error) {
	all, err := m.scanHash(ctx, m.keys(pool).UTXO)
	if err != nil {
		return nil, fmt.Errorf("lockmgr: offered utxos of pool %d: %w", pool, err)
	}
	out := make(map[string]uint64, len(all))
	for h, a := range all {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("lockmgr: bad amount %q of %s: %w", a, h, err)
		}
		out[h] = n
	}
	return out, nil
}

// Reclaim ends the reservations of the pool whose hold ran out (every
// script does it in passing); it returns how many holds ran out.
func (m *Pools) Reclaim(ctx context.Context, pool int64) (int, error) {
	n, err := scripts.Reclaim.Run(ctx, m.rdb, m.keys(pool).List).Int()
	if err != nil {
		return 0, fmt.Errorf("lockmgr: reclaim pool %d: %w", pool, scriptError(err))
	}
	return n, nil
}

// Holds returns the live reservations holding UTXOs of the pool in Redis,
// with the time each was granted (Redis clock). Holds that ran out are
// ended first (Reclaim).
func (m *Pools) Holds(ctx context.Context, pool int64) (map[string]time.Time, error) {
	if _, err := m.Reclaim(ctx, pool); err != nil {
		return nil, err
	}
	k := m.keys(pool)
	holders, err := m.scanHash(ctx, k.Holder)
	if err != nil {
		return nil, fmt.Errorf("lockmgr: holds of pool %d: %w", pool, err)
	}
	ids := map[string]struct{}{}
	for _, id := range holders {
		ids[id] = struct{}{}
	}
	out := make(map[string]time.Time, len(ids))
	cmds := make(map[string]*redis.StringCmd, len(ids))
	_, err = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for id := range ids {
			cmds[id] = p.HGet(ctx, k.Res+id, "created")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("lockmgr: holds of pool %d: %w", pool, err)
	}
	for id, c := range cmds {
		ms, err := c.Int64()
		if errors.Is(err, redis.Nil) {
			continue // its key expired with the hold: the next script reclaims it
		}
		if err != nil {
			return nil, fmt.Errorf("lockmgr: holds of pool %d: %w", pool, err)
		}
		out[id] = time.UnixMilli(ms).UTC()
	}
	return out, nil
}
