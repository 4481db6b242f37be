package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// normHex trims and lower-cases an asset id or a control program, so the same
// pool is never registered twice under different spellings.
func normHex(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// EnsurePool returns the pool of (asset, program), creating it if needed;
// created tells whether this call inserted it. It is safe to call from many
// replicas at once: exactly one row results. Asset and program are stored
// trimmed and lower-case.
func (s *Store) EnsurePool(ctx context.Context, asset, program string) (Pool, bool, error) {
	asset, program = normHex(asset), normHex(program)
	if asset == "" || program == "" {
		return Pool{}, false, fmt.Errorf("%w: asset and program are required", ErrInvalidArgument)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	t := now()
	res := s.db.WithContext(ctx).Exec(
		`INSERT INTO pools (asset, program, created_at, updated_at) VALUES (?, ?, ?, ?)
		 ON CONFLICT (asset, program) DO NOTHING`, asset, program, t, t)
	if res.Error != nil {
		return Pool{}, false, fmt.Errorf("storage: insert pool: %w", res.Error)
	}
	p, err := s.FindPool(ctx, asset, program)
	if err != nil {
		return Pool{}, false, err
	}
	return p, res.RowsAffected == 1, nil
}

// GetPool returns the pool with that id or ErrNotFound.
func (s *Store) GetPool(ctx context.Context, id int64) (Pool, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var p Pool
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&p).Error
	return p, notFound(err, "pool")
}

// FindPool returns the pool of (asset, program) or ErrNotFound.
func (s *Store) FindPool(ctx context.Context, asset, program string) (Pool, error) {
	asset, program = normHex(asset), normHex(program)
	if asset == "" || program == "" {
		return Pool{}, fmt.Errorf("%w: asset and program are required", ErrInvalidArgument)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var p Pool
	err := s.db.WithContext(ctx).Where("asset = ? AND program = ?", asset, program).Take(&p).Error
	return p, notFound(err, "pool")
}

// ListPools returns every pool ordered by id.
func (s *Store) ListPools(ctx context.Context) ([]Pool, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var ps []Pool
	if err := s.db.WithContext(ctx).Order("id").Find(&ps).Error; err != nil {
		return nil, fmt.Errorf("storage: list pools: %w", err)
	}
	return ps, nil
}

// PoolCounts returns the number of UTXOs in each state for every pool that has
// any, in one query. A pool without UTXOs is absent (its Counts are zero).
func (s *Store) PoolCounts(ctx context.Context) (map[int64]Counts, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var rows []struct {
		PoolID int64
		State  string
		N      int64
	}
	err := s.db.WithContext(ctx).Raw(
		`SELECT pool_id, state, COUNT(*) AS n FROM utxos GROUP BY pool_id, state`).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("storage: pool counts: %w", err)
	}
	out := make(map[int64]Counts)
	for _, r := range rows {
		c := out[r.PoolID]
		switch r.State {
		case StateAvailable:
			c.Available = r.N
		case StateReserved:
			c.Reserved = r.N
		case StateSpent:
			c.Spent = r.N
		case StateInvalidated:
			c.Invalidated = r.N
		}
		out[r.PoolID] = c
	}
	return out, nil
}

// notFound maps gorm's not-found error to ErrNotFound and wraps the others.
func notFound(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gorm.ErrRecordNotFound):
		return fmt.Errorf("%w: %s", ErrNotFound, what)
	default:
		return fmt.Errorf("storage: get %s: %w", what, err)
	}
}
