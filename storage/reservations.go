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
	"gorm.io/gorm/clause"

	"github.com/bufferd/bufferd/lockmgr"
)

// Refusals of a reservation update.
var (
	// ErrNotLive means a reservation is no longer held or submitted, so it cannot change.
	ErrNotLive = errors.New("storage: reservation is not live")
	// errWrongState means a live reservation is not in a state the update
	// applies to (a submitted one asked to be released or extended).
	errWrongState = errors.New("storage: reservation is in another state")
)

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

// RecordReservation journals a granted reservation and what it holds, in one
// transaction. State defaults to held and times to now. Recording the same
// reservation again is a no-op; a fence already used by another reservation
// of the pool is refused with ErrStaleFence, an idempotency key another
// reservation has with an error wrapping lockmgr.ErrKeyTaken.
func (s *Store) RecordReservation(ctx context.Context, r Reservation) error {
	return s.recordReservation(ctx, r, "")
}

// recordReservation is RecordReservation of a grant made in the pool's Redis
// load load ("": any), refused with errLoadChanged in another.
func (s *Store) recordReservation(ctx context.Context, r Reservation, load string) error {
	if _, err := prepareRecord(&r); err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	results := make([]error, 1)
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return s.insertReservations(tx, []*journalWrite{{record: &r, load: load}}, []int{0}, results)
	})
	switch {
	case isForeignKeyViolation(err):
		return fmt.Errorf("%w: pool %d", ErrNotFound, r.PoolID)
	case errors.Is(err, errRetry):
		return fmt.Errorf("storage: record reservation %s: it conflicts with a row that is gone; retry", r.ID)
	case err != nil:
		return fmt.Errorf("storage: record reservation: %w", err)
	}
	return results[0]
}

// withdrawReservation makes r (state released, no idempotency key) the
// journal's row of r.ID unless one is there, and makes a row of r.ID still
// held released, its idempotency key forgotten: either way the grant r is not
// live, whether or not, or whenever, an earlier write of it commits (its
// INSERT then conflicts and does nothing). A fence taken by another
// reservation leaves that one alone.
func (s *Store) withdrawReservation(ctx context.Context, r Reservation) error {
	hashes, err := prepareRecord(&r)
	if err != nil {
		return err
	}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		ins := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&r)
		if ins.Error != nil {
			return ins.Error
		}
		if ins.RowsAffected == 1 {
			holdings := make([]reservationUTXO, len(hashes))
			for i, h := range hashes {
				holdings[i] = reservationUTXO{ReservationID: r.ID, Hash: h, PoolID: r.PoolID}
			}
			return s.insertHoldings(tx, holdings)
		}
		return tx.Model(&Reservation{}).Where("id = ? AND state = ?", r.ID, ResHeld).
			Updates(map[string]any{"state": ResReleased, "updated_at": r.UpdatedAt, "idempotency_key": "", "fingerprint": ""}).Error
	})
	if err != nil {
		return fmt.Errorf("storage: withdraw reservation %s: %w", r.ID, err)
	}
	return nil
}

// isForeignKeyViolation reports whether err is a foreign key violation (a
// reservation of a pool that does not exist). gorm translates the errors of
// the statements it builds, not those of a raw query read with Scan.
func isForeignKeyViolation(err error) bool {
	return errors.Is(err, gorm.ErrForeignKeyViolated) || hasPgCode(err, pgForeignKeyViolation)
}

// prepareRecord checks a reservation to record, fills in its defaults (state
// held, times now) and returns its hashes.
func prepareRecord(r *Reservation) ([]string, error) {
	hashes := SplitHashes(r.Hashes)
	switch {
	case r.ID == "" || r.PoolID <= 0 || r.Fence <= 0:
		return nil, fmt.Errorf("%w: reservation needs id, pool and a positive fence", errInvalidArgument)
	case len(hashes) == 0 || len(hashes) > batchSize:
		return nil, fmt.Errorf("%w: reservation needs 1 to %d hashes", errInvalidArgument, batchSize)
	case slices.Contains(hashes, ""):
		return nil, fmt.Errorf("%w: empty hash in reservation", errInvalidArgument)
	}
	if r.State == "" {
		r.State = ResHeld
	}
	if !validResState(r.State) {
		return nil, fmt.Errorf("%w: unknown reservation state %q", errInvalidArgument, r.State)
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

// reservationByKey returns the reservation made with the idempotency key of
// digest key, or ErrNotFound.
func (s *Store) reservationByKey(ctx context.Context, key string) (Reservation, error) {
	if key == "" {
		return Reservation{}, fmt.Errorf("%w: reservation", ErrNotFound)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var r Reservation
	err := s.db.WithContext(ctx).Where("idempotency_key = ?", key).Take(&r).Error
	return r, notFound(err, "reservation")
}

// reservationUpdate is a change to a live reservation. Zero fields are kept.
type reservationUpdate struct {
	Fence     int64     // the writer's fence: refused with ErrStaleFence if the stored one is newer; a newer one is stored
	State     string    // new state
	TxID      string    // spending transaction (submit)
	ExpiresAt time.Time // new expiry (extend, submit)
	From      []string  // the states the row must be in; empty means any live state
	At        time.Time // when the change happened (the Redis clock); zero: when it is written
}

// at is when the change happened: u.At, else t (when it is written).
func (u reservationUpdate) at(t time.Time) time.Time {
	if u.At.IsZero() {
		return t
	}
	return dbTime(u.At)
}

// from returns the states the update applies to.
func (u reservationUpdate) from() []string {
	if len(u.From) == 0 {
		return liveStates
	}
	return u.From
}

// updateReservation changes a live reservation in one of u's From states.
// It returns ErrNotFound for an unknown id, ErrStaleFence when u.Fence is
// older than the stored fence, ErrNotLive once the reservation has ended and
// errWrongState when it is live in another state.
func (s *Store) updateReservation(ctx context.Context, id string, u reservationUpdate) error {
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
func checkUpdate(id string, u reservationUpdate) error {
	if u.State != "" && !validResState(u.State) {
		return fmt.Errorf("%w: unknown reservation state %q", errInvalidArgument, u.State)
	}
	for _, st := range u.From {
		// A release Redis made may find the row expired (see releaseUpdate).
		if st != ResHeld && st != ResSubmitted && !(st == ResExpired && u.State == ResReleased) {
			return fmt.Errorf("%w: an update applies to live states only, not %q", errInvalidArgument, st)
		}
	}
	if id == "" || u.Fence <= 0 {
		return fmt.Errorf("%w: update needs the id and a positive fence", errInvalidArgument)
	}
	return nil
}

// updateReservationTx applies u inside tx at time t and reports whether the
// reservation was in one of u's From states with a fence no newer than
// u.Fence (and so changed).
func (s *Store) updateReservationTx(tx *gorm.DB, id string, u reservationUpdate, t time.Time) (bool, error) {
	set := map[string]any{"fence": u.Fence, "updated_at": u.at(t)}
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
		Where("id = ? AND fence <= ? AND state IN ?", id, u.Fence, u.from()).
		Updates(set)
	if res.Error != nil {
		return false, res.Error
	}
	return res.RowsAffected > 0, nil
}

// refusedUpdate explains why u did not apply to reservation id, whose current
// row is prev (nil when there is none).
func refusedUpdate(prev *Reservation, id string, u reservationUpdate) error {
	switch {
	case prev == nil:
		return fmt.Errorf("%w: reservation %s", ErrNotFound, id)
	case prev.Fence > u.Fence:
		return fmt.Errorf("%w: reservation %s has fence %d, write carried %d", ErrStaleFence, id, prev.Fence, u.Fence)
	case !lockmgr.Live(prev.State):
		return fmt.Errorf("%w: reservation %s is %s", ErrNotLive, id, prev.State)
	default:
		return fmt.Errorf("%w: reservation %s is %s", errWrongState, id, prev.State)
	}
}

// ExpireReservations marks held and submitted reservations whose expiry is at
// or before before as expired, in one transaction, and returns how many. The
// syncer passes a time some way in the past (its expiryMargin): Redis
// ends a hold on its own clock, and an extension granted at the last moment
// reaches the journal a little later.
func (s *Store) ExpireReservations(ctx context.Context, before time.Time) (int64, error) {
	before = dbTime(before)
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	var expired int64
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Exec(`UPDATE reservations SET state = ?, updated_at = ?
			WHERE id IN (SELECT id FROM reservations WHERE state IN ? AND expires_at <= ?`+lockInIDOrder(tx)+`)
			AND state IN ?`, ResExpired, now(), liveStates, before, liveStates)
		if res.Error != nil {
			return res.Error
		}
		expired = res.RowsAffected
		return s.checkFence(tx)
	})
	if err != nil {
		return 0, fmt.Errorf("storage: expire reservations: %w", err)
	}
	return expired, nil
}

// forgetKeys is ForgetKeys' statement. It picks the keys greater than the
// empty string (every key sorts after it), not those different from it:
// PostgreSQL estimates an inequality to match nearly every row, with
// statistics or without, and scanned the whole journal each time; a range
// finds the few keyed rows through the partial index
// reservations_idempotency_key.
const forgetKeys = `UPDATE reservations SET idempotency_key = '' WHERE idempotency_key > '' AND created_at <= ?`

// ForgetKeys forgets the idempotency keys of reservations made at or before
// before, so that the keys are new again (lockmgr.IdempotencyWindow). It
// returns how many it forgot.
func (s *Store) ForgetKeys(ctx context.Context, before time.Time) (int64, error) {
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	var n int64
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Exec(forgetKeys, dbTime(before))
		if res.Error != nil {
			return res.Error
		}
		n = res.RowsAffected
		return s.checkFence(tx)
	})
	if err != nil {
		return 0, fmt.Errorf("storage: forget idempotency keys: %w", err)
	}
	return n, nil
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

func validResState(s string) bool {
	switch s {
	case ResHeld, ResSubmitted, ResReleased, ResExpired, ResSpent, ResInvalidated:
		return true
	}
	return false
}

// settleWindow is how long after it was settled spent a reservation is
// looked at again: its spend may still fail or vanish.
const settleWindow = 2 * lockmgr.DefaultSubmitGrace

// Settled is a reservation Settle moved, with the state it left.
type Settled struct {
	Reservation
	From string
}

// Settle applies the chain to the reservations of the pool that hold (or,
// spent, held) one of hashes: each one's next state is decided from the
// chain states of all its UTXOs by lockmgr.NextState and written, in one
// transaction that locks the rows in id order. It returns the reservations
// it moved, ordered by fence; those whose From is live must end in Redis
// too (lockmgr.Manager.EndReservations).
func (s *Store) Settle(ctx context.Context, poolID int64, hashes []string) ([]Settled, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	var out []Settled
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		t := now()
		cands, err := settleCandidates(tx, poolID, hashes, t)
		if err != nil || len(cands) == 0 {
			return err
		}
		states, err := holdingStates(tx, cands)
		if err != nil {
			return err
		}
		for _, r := range cands {
			next, txID := lockmgr.NextState(r.State, r.TxID, r.ExpiresAt, t, states[r.ID])
			if next == r.State {
				continue
			}
			from := r.State
			r.State, r.TxID, r.UpdatedAt = next, txID, t
			out = append(out, Settled{Reservation: r, From: from})
		}
		if len(out) == 0 {
			return nil
		}
		if err := writeSettled(tx, out, t); err != nil {
			return err
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return nil, fmt.Errorf("storage: settle pool %d: %w", poolID, err)
	}
	slices.SortFunc(out, func(a, b Settled) int { return cmp.Compare(a.Fence, b.Fence) })
	return out, nil
}

// HeldHolding returns the ID and fence of the pool's held reservations
// that hold one of hashes, in the journal's view.
func (s *Store) HeldHolding(ctx context.Context, poolID int64, hashes []string) ([]lockmgr.ReleaseRecord, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var out []lockmgr.ReleaseRecord
	for _, chunk := range chunks(hashes) {
		var rows []Reservation
		err := s.db.WithContext(ctx).Raw(`SELECT DISTINCT r.id, r.fence FROM reservation_utxos ru
			JOIN reservations r ON r.id = ru.reservation_id
			WHERE ru.hash IN ? AND r.pool_id = ? AND r.state = ?`, chunk, poolID, ResHeld).Scan(&rows).Error
		if err != nil {
			return nil, fmt.Errorf("storage: held reservations of pool %d: %w", poolID, err)
		}
		for _, r := range rows {
			out = append(out, lockmgr.ReleaseRecord{ID: r.ID, Fence: r.Fence})
		}
	}
	return out, nil
}

// settleCandidates returns the reservations of the pool that may move because
// of a change of hashes: live ones holding one, and spent ones (settled
// within settleWindow) that held one, locked in id order.
func settleCandidates(tx *gorm.DB, poolID int64, hashes []string, t time.Time) ([]Reservation, error) {
	idSet := map[string]struct{}{}
	for _, chunk := range chunks(hashes) {
		var ids []string
		err := tx.Raw(`SELECT DISTINCT ru.reservation_id FROM reservation_utxos ru
			JOIN reservations r ON r.id = ru.reservation_id
			WHERE ru.hash IN ? AND r.pool_id = ? AND (r.state IN ? OR (r.state = ? AND r.updated_at > ?))`,
			chunk, poolID, liveStates, ResSpent, t.Add(-settleWindow)).Scan(&ids).Error
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			idSet[id] = struct{}{}
		}
	}
	ids := make([]string, 0, len(idSet))
	for id := range idSet {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []Reservation
	for _, chunk := range chunks(ids) {
		var rows []Reservation
		q := `SELECT * FROM reservations WHERE id IN ? ORDER BY id`
		if tx.Dialector.Name() == "postgres" {
			q += ` FOR UPDATE`
		}
		if err := tx.Raw(q, chunk).Scan(&rows).Error; err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	return out, nil
}

// holdingStates returns the chain states of the UTXOs of each reservation.
// A UTXO the store does not know counts as available.
func holdingStates(tx *gorm.DB, rs []Reservation) (map[string][]lockmgr.UTXOState, error) {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	out := make(map[string][]lockmgr.UTXOState, len(rs))
	for _, chunk := range chunks(ids) {
		var rows []struct {
			ReservationID string
			Hash          string
			State         *string
			SpentTx       *string
		}
		err := tx.Raw(`SELECT ru.reservation_id, ru.hash, u.state, u.spent_tx FROM reservation_utxos ru
			LEFT JOIN utxos u ON u.hash = ru.hash WHERE ru.reservation_id IN ?`, chunk).Scan(&rows).Error
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			st := lockmgr.UTXOState{Hash: r.Hash, State: StateAvailable}
			if r.State != nil {
				st.State = *r.State
			}
			if r.SpentTx != nil {
				st.SpentTx = *r.SpentTx
			}
			out[r.ReservationID] = append(out[r.ReservationID], st)
		}
	}
	return out, nil
}

// writeSettled writes the new states of settled reservations (already
// locked) with one UPDATE per recordChunk rows.
func writeSettled(tx *gorm.DB, rs []Settled, t time.Time) error {
	for start := 0; start < len(rs); start += recordChunk {
		chunk := rs[start:min(start+recordChunk, len(rs))]
		var values strings.Builder
		args := make([]any, 0, 4*len(chunk)+1)
		args = append(args, t)
		for k, r := range chunk {
			if k > 0 {
				values.WriteString(",")
			}
			values.WriteString("(?, ?, ?, ?)")
			args = append(args, r.ID, r.From, r.State, r.TxID)
		}
		err := tx.Exec(`UPDATE reservations SET state = v.state, tx_id = v.tx_id, updated_at = ?
			FROM `+valuesTable("v", []string{"id", "from_state", "state", "tx_id"}, values.String())+`
			WHERE reservations.id = v.id AND reservations.state = v.from_state`, args...).Error
		if err != nil {
			return err
		}
	}
	return nil
}

// valuesTable names the columns of a VALUES list (its rows, as SQL) for
// UPDATE ... FROM, in a form both PostgreSQL and SQLite read.
func valuesTable(name string, cols []string, rows string) string {
	var sb strings.Builder
	sb.WriteString("(SELECT ")
	for i, c := range cols {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "column%d AS %s", i+1, c)
	}
	sb.WriteString(" FROM (VALUES ")
	sb.WriteString(rows)
	sb.WriteString(") AS ")
	sb.WriteString(name)
	sb.WriteString("_rows) AS ")
	sb.WriteString(name)
	return sb.String()
}

// UnsettledHashes returns the UTXOs of the pool whose reservations the chain
// moved without Settle having seen it: those held by live reservations but
// no longer available, and those of reservations settled spent within
// settleWindow whose spend vanished (none of their UTXOs is spent any more)
// or one of whose UTXOs was invalidated. Settle them.
func (s *Store) UnsettledHashes(ctx context.Context, poolID int64) ([]string, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var out []string
	err := s.db.WithContext(ctx).Raw(`SELECT DISTINCT ru.hash FROM reservations r
		JOIN reservation_utxos ru ON ru.reservation_id = r.id
		JOIN utxos u ON u.hash = ru.hash
		WHERE r.pool_id = ? AND (
			(r.state IN ? AND u.state IN ?)
			OR (r.state = ? AND r.updated_at > ? AND (u.state = ? OR NOT EXISTS (
				SELECT 1 FROM reservation_utxos ru2 JOIN utxos u2 ON u2.hash = ru2.hash
				WHERE ru2.reservation_id = r.id AND u2.state = ?))))`,
		poolID, liveStates, []string{StateSpent, StateInvalidated},
		ResSpent, now().Add(-settleWindow), StateInvalidated, StateSpent).
		Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("storage: unsettled utxos of pool %d: %w", poolID, err)
	}
	return out, nil
}

// LiveReservationIDs returns the ids of the pool's live reservations that
// have not run out at now, the set Redis's holds must not exceed.
func (s *Store) LiveReservationIDs(ctx context.Context, poolID int64, at time.Time) (map[string]bool, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var ids []string
	err := s.db.WithContext(ctx).Model(&Reservation{}).Where("pool_id = ? AND state IN ? AND expires_at > ?",
		poolID, liveStates, dbTime(at)).Pluck("id", &ids).Error
	if err != nil {
		return nil, fmt.Errorf("storage: live reservations of pool %d: %w", poolID, err)
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// SubmittedReservations returns up to limit reservations whose transaction
// the chain may still fail: live submitted ones and those settled spent
// within the submit grace, oldest first. limit <= 0 means 100; it is capped
// at MaxListLimit.
func (s *Store) SubmittedReservations(ctx context.Context, limit int) ([]Reservation, error) {
	limit = pageLimit(limit)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	t := now()
	var out []Reservation
	err := s.db.WithContext(ctx).
		Where("(state = ? AND expires_at > ?) OR (state = ? AND tx_id <> '' AND updated_at > ?)",
			ResSubmitted, t, ResSpent, t.Add(-lockmgr.DefaultSubmitGrace)).
		Order("created_at, id").Limit(limit).Find(&out).Error
	if err != nil {
		return nil, fmt.Errorf("storage: submitted reservations: %w", err)
	}
	return out, nil
}
