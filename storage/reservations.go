package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
)

// ErrNotLive means a reservation is no longer held or submitted, so it cannot change.
var ErrNotLive = errors.New("storage: reservation is not live")

// byHash is the pool condition of statements that look rows up by a unique
// key (a UTXO's hash, a reservation's id): on a table without fresh
// statistics the planner prefers the (pool_id, state) index and scans every
// row of the pool; "+ 0" keeps it (PostgreSQL and SQLite alike) on the unique
// index.
const byHash = "pool_id + 0 = ?"

// liveStates are the reservation states that hold UTXOs.
var liveStates = []string{ResHeld, ResSubmitted}

// SplitHashes returns the hashes of a journal row's comma-separated list.
func SplitHashes(hashes string) []string {
	if hashes == "" {
		return nil
	}
	return strings.Split(hashes, ",")
}

// RecordReservation journals a granted reservation and, in the same
// transaction, marks its UTXOs (r.Hashes) reserved where they are available.
// State defaults to held and times to now. Recording the same reservation again
// is a no-op; a fence already used by another reservation of the pool is
// refused with ErrStaleFence.
func (s *Store) RecordReservation(ctx context.Context, r Reservation) error {
	hashes, err := prepareRecord(&r)
	if err != nil {
		return err
	}
	t := now()
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&r).Error; err != nil {
			return err
		}
		if r.State != ResHeld && r.State != ResSubmitted {
			return nil
		}
		return tx.Exec(`UPDATE utxos SET state = ?, updated_at = ? WHERE `+byHash+` AND state = ? AND hash IN ?`,
			StateReserved, t, r.PoolID, StateAvailable, hashes).Error
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gorm.ErrDuplicatedKey):
		prev, gerr := s.GetReservation(ctx, r.ID)
		if gerr == nil && prev.PoolID == r.PoolID && prev.Fence == r.Fence && prev.Hashes == r.Hashes {
			return nil // a retry of a write that did commit
		}
		return fmt.Errorf("%w: fence %d of pool %d already used", ErrStaleFence, r.Fence, r.PoolID)
	case errors.Is(err, gorm.ErrForeignKeyViolated):
		return fmt.Errorf("%w: pool %d", ErrNotFound, r.PoolID)
	default:
		return fmt.Errorf("storage: record reservation: %w", err)
	}
}

// prepareRecord checks a reservation to record, fills in its defaults (state
// held, times now) and returns its hashes.
func prepareRecord(r *Reservation) ([]string, error) {
	hashes := SplitHashes(r.Hashes)
	switch {
	case r.ID == "" || r.PoolID <= 0 || r.Fence <= 0:
		return nil, fmt.Errorf("%w: reservation needs id, pool and a positive fence", ErrInvalidArgument)
	case len(hashes) == 0 || len(hashes) > batchSize:
		return nil, fmt.Errorf("%w: reservation needs 1 to %d hashes", ErrInvalidArgument, batchSize)
	case slices.Contains(hashes, ""):
		return nil, fmt.Errorf("%w: empty hash in reservation", ErrInvalidArgument)
	}
	if r.State == "" {
		r.State = ResHeld
	}
	if !validResState(r.State) {
		return nil, fmt.Errorf("%w: unknown reservation state %q", ErrInvalidArgument, r.State)
	}
	t := now()
	if r.CreatedAt.IsZero() {
		r.CreatedAt = t
	}
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = t
	}
	r.CreatedAt, r.UpdatedAt, r.ExpiresAt = dbTime(r.CreatedAt), dbTime(r.UpdatedAt), dbTime(r.ExpiresAt)
	return hashes, nil
}

// GetReservation returns the journal row of a reservation or ErrNotFound.
func (s *Store) GetReservation(ctx context.Context, id string) (Reservation, error) {
	if id == "" {
		return Reservation{}, fmt.Errorf("%w: reservation", ErrNotFound)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var r Reservation
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&r).Error
	return r, notFound(err, "reservation")
}

// ReservationUpdate is a change to a live reservation. Zero fields are kept.
type ReservationUpdate struct {
	Fence     int64     // the writer's fence: refused with ErrStaleFence if the stored one is newer; a newer one is stored
	State     string    // new state
	TxID      string    // spending transaction (submit)
	ExpiresAt time.Time // new expiry (extend, submit)
}

// UpdateReservation changes a held or submitted reservation. It returns
// ErrNotFound for an unknown id, ErrStaleFence when u.Fence is older than the
// stored fence, and ErrNotLive once the reservation has ended. Moving it to
// released, expired or invalidated also makes its reserved UTXOs available
// again (those no other live reservation holds), in the same transaction.
func (s *Store) UpdateReservation(ctx context.Context, id string, u ReservationUpdate) error {
	if err := checkUpdate(id, u); err != nil {
		return err
	}
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	var applied bool
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		applied, err = s.updateReservationTx(tx, id, u, now())
		if err != nil {
			return err
		}
		return s.checkFence(tx)
	})
	if err != nil {
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return fmt.Errorf("%w: fence %d already used", ErrStaleFence, u.Fence)
		}
		return fmt.Errorf("storage: update reservation: %w", err)
	}
	if applied {
		return nil
	}
	prev, err := s.GetReservation(ctx, id)
	if err != nil {
		return err
	}
	return refusedUpdate(&prev, id, u)
}

// checkUpdate validates an update before it is tried.
func checkUpdate(id string, u ReservationUpdate) error {
	if u.State != "" && !validResState(u.State) {
		return fmt.Errorf("%w: unknown reservation state %q", ErrInvalidArgument, u.State)
	}
	if id == "" || u.Fence <= 0 {
		return fmt.Errorf("%w: update needs the id and a positive fence", ErrInvalidArgument)
	}
	return nil
}

// updateReservationTx applies u inside tx at time t and reports whether the
// reservation was live with a fence no newer than u.Fence (and so changed).
// Moving it to released, expired or invalidated also frees its reserved UTXOs
// that no other live reservation holds.
func (s *Store) updateReservationTx(tx *gorm.DB, id string, u ReservationUpdate, t time.Time) (bool, error) {
	set := map[string]any{"fence": u.Fence, "updated_at": t}
	if u.State != "" {
		set["state"] = u.State
	}
	if u.TxID != "" {
		set["tx_id"] = u.TxID
	}
	if !u.ExpiresAt.IsZero() {
		set["expires_at"] = dbTime(u.ExpiresAt)
	}
	res := tx.Model(&Reservation{}).
		Where("id = ? AND fence <= ? AND state IN ?", id, u.Fence, liveStates).
		Updates(set)
	if res.Error != nil {
		return false, res.Error
	}
	if res.RowsAffected == 0 {
		return false, nil
	}
	switch u.State {
	case ResReleased, ResExpired, ResInvalidated:
		err := tx.Exec(`UPDATE utxos SET state = ?, updated_at = ?
			WHERE state = ? AND pool_id = (SELECT pool_id FROM reservations WHERE id = ?)
			AND `+s.inHashes("(SELECT hashes FROM reservations WHERE id = ?)")+`
			AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.state IN ? AND r.expires_at > ?
				AND r.pool_id = utxos.pool_id AND `+s.inHashes("r.hashes")+`)`,
			StateAvailable, t, StateReserved, id, id, liveStates, t).Error
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

// refusedUpdate explains why u did not apply to reservation id, whose current
// row is prev (nil when there is none).
func refusedUpdate(prev *Reservation, id string, u ReservationUpdate) error {
	switch {
	case prev == nil:
		return fmt.Errorf("%w: reservation %s", ErrNotFound, id)
	case prev.Fence > u.Fence:
		return fmt.Errorf("%w: reservation %s has fence %d, write carried %d", ErrStaleFence, id, prev.Fence, u.Fence)
	default:
		return fmt.Errorf("%w: reservation %s is %s", ErrNotLive, id, prev.State)
	}
}

// ExpireReservations marks held and submitted reservations whose expiry is at
// or before now as expired, then makes their reserved UTXOs available again,
// those no live (held or submitted, unexpired) reservation holds. A constant
// number of statements per batchSize UTXOs, in one transaction; it returns the number
// of reservations expired.
func (s *Store) ExpireReservations(ctx context.Context, now time.Time) (int64, error) {
	now = dbTime(now)
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	var expired int64
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var ended []Reservation
		err := tx.Raw(`UPDATE reservations SET state = ?, updated_at = ?
			WHERE id IN (SELECT id FROM reservations WHERE state IN ? AND expires_at <= ?`+lockInIDOrder(tx)+`)
			AND state IN ? RETURNING id, pool_id, hashes`, ResExpired, now, liveStates, now, liveStates).Scan(&ended).Error
		if err != nil {
			return err
		}
		expired = int64(len(ended))
		if err := s.freeUTXOs(tx, ended, now); err != nil {
			return err
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return 0, fmt.Errorf("storage: expire reservations: %w", err)
	}
	return expired, nil
}

// lockInIDOrder ends a subquery selecting reservation ids so that, on
// PostgreSQL, it locks the rows in id order, the order every writer of
// reservations takes their locks in (the journal sorts its updates by id):
// transactions of the syncer and of the APIs' journals never deadlock on
// them. Without it an UPDATE locks rows in the order its plan meets them
// (physical order for a bitmap scan). SQLite has one writer at a time.
func lockInIDOrder(tx *gorm.DB) string {
	if tx.Dialector.Name() == "postgres" {
		return " ORDER BY id FOR UPDATE"
	}
	return ""
}

// inHashes is an SQL condition true when utxos.hash is an element of the
// comma-separated list list (an SQL expression).
func (s *Store) inHashes(list string) string {
	pos := "instr"
	if s.dialect == DialectPostgres {
		pos = "strpos"
	}
	return pos + "(',' || " + list + " || ',', ',' || utxos.hash || ',') > 0"
}

func validResState(s string) bool {
	switch s {
	case ResHeld, ResSubmitted, ResReleased, ResExpired, ResSpent, ResInvalidated:
		return true
	}
	return false
}

// SettleSpent ends as spent every live (held or submitted) reservation of the
// pool that holds any of hashes, UTXOs the chain has seen spent, and returns
// them (as now stored, by fence) so the caller can settle them in Redis too.
// One read-only statement plus one UPDATE per batchSize reservations, in one
// transaction, whatever the number of hashes.
func (s *Store) SettleSpent(ctx context.Context, poolID int64, hashes []string) ([]Reservation, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	var out []Reservation
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		if out, err = endLiveHolding(tx, poolID, hashes, ResSpent, now()); err != nil {
			return err
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return nil, fmt.Errorf("storage: settle spent: %w", err)
	}
	slices.SortFunc(out, func(a, b Reservation) int { return cmp.Compare(a.Fence, b.Fence) })
	return out, nil
}

// endLiveHolding ends as state, at t, every live reservation of the pool that
// holds any of hashes, and returns them: one read plus one UPDATE per
// batchSize reservations.
func endLiveHolding(tx *gorm.DB, poolID int64, hashes []string, state string, t time.Time) ([]Reservation, error) {
	set := make(map[string]struct{}, len(hashes))
	for _, h := range hashes {
		set[h] = struct{}{}
	}
	var live []Reservation
	if err := tx.Select("id", "hashes").Where("pool_id = ? AND state IN ?", poolID, liveStates).Find(&live).Error; err != nil {
		return nil, err
	}
	var ids []string
	for _, r := range live {
		for _, h := range SplitHashes(r.Hashes) {
			if _, ok := set[h]; ok {
				ids = append(ids, r.ID)
				break
			}
		}
	}
	slices.Sort(ids) // with lockInIDOrder, chunk after chunk: locked in id order
	var out []Reservation
	for _, chunk := range chunks(ids) {
		var rows []Reservation
		err := tx.Raw(`UPDATE reservations SET state = ?, updated_at = ?
			WHERE id IN (SELECT id FROM reservations WHERE id IN ?`+lockInIDOrder(tx)+`)
			AND `+byHash+` AND state IN ? RETURNING *`,
			state, t, chunk, poolID, liveStates).Scan(&rows).Error
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	return out, nil
}

// SubmittedReservations returns up to limit live submitted reservations (their
// transaction was sent and the hold has not expired), oldest first. limit <= 0
// means 100; it is capped at MaxListLimit.
func (s *Store) SubmittedReservations(ctx context.Context, limit int) ([]Reservation, error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxListLimit)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var out []Reservation
	err := s.db.WithContext(ctx).Where("state = ? AND expires_at > ?", ResSubmitted, now()).
		Order("created_at, id").Limit(limit).Find(&out).Error
	if err != nil {
		return nil, fmt.Errorf("storage: submitted reservations: %w", err)
	}
	return out, nil
}
