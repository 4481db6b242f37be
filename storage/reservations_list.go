package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ResLive selects the live reservations in ListReservations: held or
// submitted, not past their expiry.
const ResLive = "live"

// ReservationFilter selects journal rows for ListReservations. Zero fields
// select everything.
type ReservationFilter struct {
	PoolID int64
	// State is a Res* state or ResLive. A held or submitted row past its
	// expiry counts as expired (the sweep has not written it yet).
	State string
	Owner string
}

// ReservationKey is a position in the order of ListReservations.
type ReservationKey struct {
	PoolID int64
	Fence  int64
}

// ListReservations returns up to limit journal rows matching f, ordered by
// pool and fence, both descending (newest first within a pool), after the
// row at key (zero: from the start). The order follows the unique
// (pool_id, fence) index, so a page never skips nor repeats a row.
func (s *Store) ListReservations(ctx context.Context, f ReservationFilter, after ReservationKey, limit int) ([]Reservation, error) {
	limit = pageLimit(limit)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	t := now()
	q := s.db.WithContext(ctx).Model(&Reservation{})
	if f.PoolID > 0 {
		q = q.Where("pool_id = ?", f.PoolID)
	}
	if after.PoolID > 0 {
		if f.PoolID > 0 {
			q = q.Where("pool_id = ? AND fence < ?", after.PoolID, after.Fence)
		} else {
			q = q.Where("(pool_id < ? OR pool_id = ? AND fence < ?)", after.PoolID, after.PoolID, after.Fence)
		}
	}
	switch f.State {
	case "":
	case ResLive:
		q = q.Where("state IN ? AND expires_at > ?", liveStates, t)
	case ResHeld, ResSubmitted:
		q = q.Where("state = ? AND expires_at > ?", f.State, t)
	case ResExpired:
		q = q.Where("(state = ? OR state IN ? AND expires_at <= ?)", ResExpired, liveStates, t)
	default:
		if !validResState(f.State) {
			return nil, fmt.Errorf("%w: unknown reservation state %q", errInvalidArgument, f.State)
		}
		q = q.Where("state = ?", f.State)
	}
	if f.Owner != "" {
		q = q.Where("owner = ?", f.Owner)
	}
	var out []Reservation
	if err := q.Order("pool_id DESC, fence DESC").Limit(limit).Find(&out).Error; err != nil {
		return nil, fmt.Errorf("storage: list reservations: %w", err)
	}
	return out, nil
}

// LiveReservations returns how many live reservations (held or submitted,
// not past their expiry) each pool has, and up to limit of them, oldest
// first.
func (s *Store) LiveReservations(ctx context.Context, limit int) (map[int64]int64, []Reservation, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	t := now()
	var counts []struct {
		PoolID int64
		N      int64
	}
	err := s.db.WithContext(ctx).Model(&Reservation{}).Select("pool_id, COUNT(*) AS n").
		Where("state IN ? AND expires_at > ?", liveStates, t).Group("pool_id").Scan(&counts).Error
	if err != nil {
		return nil, nil, fmt.Errorf("storage: live reservations: %w", err)
	}
	out := make(map[int64]int64, len(counts))
	for _, c := range counts {
		out[c.PoolID] = c.N
	}
	var rows []Reservation
	if limit > 0 {
		err = s.db.WithContext(ctx).Where("state IN ? AND expires_at > ?", liveStates, t).
			Order("created_at, pool_id, fence").Limit(limit).Find(&rows).Error
		if err != nil {
			return nil, nil, fmt.Errorf("storage: live reservations: %w", err)
		}
	}
	return out, rows, nil
}

// GrantHistory counts the reservations each pool granted in n consecutive
// intervals of width step ending at end: out[pool][i] is the count of the
// i-th, oldest first. A reservation expires after it was created, so the
// expires_at index bounds the rows read to the window.
func (s *Store) GrantHistory(ctx context.Context, end time.Time, step time.Duration, n int) (_ map[int64][]int64, err error) {
	if n <= 0 || step <= 0 {
		return nil, fmt.Errorf("%w: history needs intervals", errInvalidArgument)
	}
	start := dbTime(end.Add(-time.Duration(n) * step))
	var sel strings.Builder
	sel.WriteString("SELECT pool_id")
	args := make([]any, 0, 2*n+2)
	for i := range n {
		from := start.Add(time.Duration(i) * step)
		sel.WriteString(", COALESCE(SUM(CASE WHEN created_at >= ? AND created_at < ? THEN 1 ELSE 0 END), 0)")
		args = append(args, from, dbTime(from.Add(step)))
	}
	sel.WriteString(" FROM reservations WHERE expires_at >= ? AND created_at >= ? GROUP BY pool_id")
	args = append(args, start, start)

	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.db.WithContext(ctx).Raw(sel.String(), args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("storage: grant history: %w", err)
	}
	defer func() { err = errors.Join(err, rows.Close()) }()
	out := map[int64][]int64{}
	for rows.Next() {
		var pool int64
		counts := make([]int64, n)
		dest := make([]any, n+1)
		dest[0] = &pool
		for i := range counts {
			dest[i+1] = &counts[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("storage: grant history: %w", err)
		}
		out[pool] = counts
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: grant history: %w", err)
	}
	return out, nil
}
