package lockmgr

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Releases are the pools' logs of the releases Redis decided (release.lua
// appends to them): the syncer writes them to the journal, in its sweep
// (RecentReleases, ForgetReleases) and before it settles the reservations
// the chain ended (ReleasesOf), so that a release answered by an API that
// died before its journal write is not lost or overtaken. Get one from a
// Manager.
type Releases struct {
	*core
}

// releasesKept is how long a pool's list of releases keeps one for the
// syncer's sweep (RecentReleases), should the sweep not have run since.
const releasesKept = 10 * time.Minute

// ReleaseRecord is a release as Redis recorded it: reservation ID, its
// fence, when it happened (the Redis clock).
type ReleaseRecord struct {
	ID    string
	Fence int64
	At    time.Time
}

// member is the record's member of the pool's releases set (release.lua).
func (r ReleaseRecord) member() string { return r.ID + " " + strconv.FormatInt(r.Fence, 10) }

// RecentReleases returns the oldest limit of the pool's releases made before
// cutoff that Redis keeps for the syncer's sweep (for ten minutes, or until
// ForgetReleases). The sweep writes them to the journal, where the API's own
// write of a release was lost (the API died right after answering), a page
// at a time: a busy pool makes thousands of releases between two sweeps,
// and one call that read them all would hold Redis for tens of milliseconds.
func (m *Releases) RecentReleases(ctx context.Context, pool int64, cutoff time.Time, limit int) ([]ReleaseRecord, error) {
	zs, err := m.rdb.ZRangeByScoreWithScores(ctx, m.keys(pool).Releases(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(cutoff.UnixMilli(), 10), Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("lockmgr: releases of pool %d: %w", pool, err)
	}
	out := make([]ReleaseRecord, 0, len(zs))
	for _, z := range zs {
		member, _ := z.Member.(string)
		id, f, _ := strings.Cut(member, " ")
		fence, err := strconv.ParseInt(f, 10, 64)
		if err != nil || id == "" {
			return nil, fmt.Errorf("lockmgr: bad release record %q of pool %d", member, pool)
		}
		out = append(out, ReleaseRecord{ID: id, Fence: fence, At: time.UnixMilli(int64(z.Score)).UTC()})
	}
	return out, nil
}

// ReleasesOf returns those of the reservations rs (ID and Fence set) that
// Redis recorded as released, with the time of the release. The syncer
// writes them to the journal before it settles the reservations: a release
// Redis answered must not be overtaken by the chain's settlement while its
// journal write is on its way (or was lost with its API).
func (m *Releases) ReleasesOf(ctx context.Context, pool int64, rs []ReleaseRecord) ([]ReleaseRecord, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	members := make([]string, len(rs))
	for i, r := range rs {
		members[i] = r.member()
	}
	scores, err := m.rdb.ZMScore(ctx, m.keys(pool).Releases(), members...).Result()
	if err != nil {
		return nil, fmt.Errorf("lockmgr: releases of pool %d: %w", pool, err)
	}
	var out []ReleaseRecord
	for i, score := range scores {
		// go-redis reads a member without a score as 0.
		if score > 0 {
			out = append(out, ReleaseRecord{ID: rs[i].ID, Fence: rs[i].Fence, At: time.UnixMilli(int64(score)).UTC()})
		}
	}
	return out, nil
}

// ForgetReleases drops releases RecentReleases returned once the journal has them.
func (m *Releases) ForgetReleases(ctx context.Context, pool int64, rs []ReleaseRecord) error {
	if len(rs) == 0 {
		return nil
	}
	members := make([]any, len(rs))
	for i, r := range rs {
		members[i] = r.member()
	}
	if err := m.rdb.ZRem(ctx, m.keys(pool).Releases(), members...).Err(); err != nil {
		return fmt.Errorf("lockmgr: forget releases of pool %d: %w", pool, err)
	}
	return nil
}
