package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// normHex trims and lower-cases an asset id or a control program, so the same
// pool is never registered twice under different spellings.
func normHex(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// PoolOptions are the settings of a pool chosen when it is registered.
type PoolOptions struct {
	// Unconfirmed makes outputs of pending transactions reservable; nil
	// means true (the original bufferserver offered them).
	Unconfirmed *bool
	// FromHeight is the block a node-backed index starts the pool from (0:
	// the index's default depth below the tip).
	FromHeight int64
}

// EnsurePool returns the pool of (asset, program), creating it if needed with
// opts; created tells whether this call inserted it (an existing pool keeps
// its settings). It is safe to call from many replicas at once: exactly one
// row results. Asset and program are stored trimmed and lower-case.
func (s *Store) EnsurePool(ctx context.Context, asset, program string, opts ...PoolOptions) (Pool, bool, error) {
	asset, program = normHex(asset), normHex(program)
	if asset == "" || program == "" {
		return Pool{}, false, fmt.Errorf("%w: asset and program are required", errInvalidArgument)
	}
	var o PoolOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	unconfirmed := o.Unconfirmed == nil || *o.Unconfirmed
	if o.FromHeight < 0 {
		return Pool{}, false, fmt.Errorf("%w: from_height must not be negative", errInvalidArgument)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	t := now()
	res := s.db.WithContext(ctx).Exec(
		`INSERT INTO pools (asset, program, created_at, updated_at, unconfirmed, from_height) VALUES (?, ?, ?, ?, ?, ?)
		 ON CONFLICT (asset, program) DO NOTHING`, asset, program, t, t, unconfirmed, o.FromHeight)
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
		return Pool{}, fmt.Errorf("%w: asset and program are required", errInvalidArgument)
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
// any: the chain states, with the available UTXOs a live reservation holds
// (not run out) counted as reserved. A pool without UTXOs is absent (its
// Counts are zero). Two queries.
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
	var held []struct {
		PoolID int64
		N      int64
	}
	err = s.db.WithContext(ctx).Raw(`SELECT r.pool_id, COUNT(DISTINCT ru.hash) AS n FROM reservations r
		JOIN reservation_utxos ru ON ru.reservation_id = r.id
		JOIN utxos u ON u.hash = ru.hash AND u.state = ?
		WHERE r.state IN ? AND r.expires_at > ? GROUP BY r.pool_id`, StateAvailable, liveStates, now()).Scan(&held).Error
	if err != nil {
		return nil, fmt.Errorf("storage: pool counts: %w", err)
	}
	out := make(map[int64]Counts)
	for _, r := range rows {
		c := out[r.PoolID]
		switch r.State {
		case StateAvailable:
			c.Available += r.N
		case StateImmature:
			c.Immature = r.N
		case StateSpent:
			c.Spent = r.N
		case StateInvalidated:
			c.Invalidated = r.N
		}
		out[r.PoolID] = c
	}
	for _, h := range held {
		c := out[h.PoolID]
		c.Reserved = h.N
		c.Available -= h.N
		out[h.PoolID] = c
	}
	return out, nil
}

// BeginLoad records that pool's Redis state is being loaded (rebuilt) under
// load, before the snapshot of the rebuild is taken. It waits for the
// journal writes of grants in flight that may have read the old load (a
// batch of grants alone reads it without a lock; the others hold the pool's
// row FOR SHARE, which the UPDATE waits for), and those that come after
// refuse a grant made under another load: a grant Redis lost before the
// rebuild is never journalled after the snapshot was taken without it.
func (s *Store) BeginLoad(ctx context.Context, poolID int64, load string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	res := s.db.WithContext(ctx).Exec(`UPDATE pools SET redis_load = ? WHERE id = ?`, load, poolID)
	if res.Error != nil {
		return fmt.Errorf("storage: begin the load of pool %d: %w", poolID, res.Error)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("%w: pool %d", ErrNotFound, poolID)
	}
	if s.dialect != dialectPostgres {
		return nil // SQLite runs one write at a time
	}
	// The journal's grant statement (recordBatch) reads the pool's load
	// without locking its row. A statement takes its table locks before its
	// snapshot, so once this SHARE lock is granted, every statement that can
	// have read the old load has ended, and every later one reads the new
	// load: a grant of the old load is then in the rebuild's snapshot, or
	// refused. Grants of every pool wait behind the lock for as long as it
	// waits (at most 2 s; then the rebuild fails and is tried again).
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(`SET LOCAL lock_timeout = '2s'`).Error; err != nil {
			return err
		}
		return tx.Exec(`LOCK TABLE reservations IN SHARE MODE`).Error
	})
	if err != nil {
		return fmt.Errorf("storage: wait for the grants of pool %d's old load: %w", poolID, err)
	}
	return nil
}

// MarkSynced records that the syncer has pool's whole UTXO set (once).
func (s *Store) MarkSynced(ctx context.Context, poolID int64) error {
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	t := now()
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		err := tx.Exec(`UPDATE pools SET synced_at = ?, updated_at = ? WHERE id = ? AND synced_at IS NULL`, t, t, poolID).Error
		if err != nil {
			return err
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return fmt.Errorf("storage: mark pool %d synced: %w", poolID, err)
	}
	return nil
}

// AvailableUTXOs returns the pool's available UTXOs by hash, with their
// amounts: what Redis must offer (held or not).
func (s *Store) AvailableUTXOs(ctx context.Context, poolID int64) (map[string]uint64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var rows []struct {
		Hash   string
		Amount Amount
	}
	err := s.db.WithContext(ctx).Model(&UTXO{}).Select("hash", "amount").
		Where("pool_id = ? AND state = ?", poolID, StateAvailable).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("storage: available utxos of pool %d: %w", poolID, err)
	}
	out := make(map[string]uint64, len(rows))
	for _, r := range rows {
		out[r.Hash] = uint64(r.Amount)
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

// OldestLiveReservation returns when the pool's oldest live (held or
// submitted, not run out) reservation was made; ok is false when it has none.
func (s *Store) OldestLiveReservation(ctx context.Context, pool int64) (oldest time.Time, ok bool, err error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var rows []Reservation
	err = s.db.WithContext(ctx).Select("created_at").
		Where("pool_id = ? AND state IN ? AND expires_at > ?", pool, liveStates, now()).
		Order("created_at").Limit(1).Find(&rows).Error
	if err != nil {
		return time.Time{}, false, fmt.Errorf("storage: oldest live reservation: %w", err)
	}
	if len(rows) == 0 {
		return time.Time{}, false, nil
	}
	return rows[0].CreatedAt, true, nil
}
