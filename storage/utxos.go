package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/bufferd/bufferd/chain"
	"gorm.io/gorm"
)

// batchSize bounds the rows of one multi-row INSERT and the values of one
// IN list (well under PostgreSQL's 65535 and SQLite's 32766 parameters).
const batchSize = 1000

// MaxListLimit is the largest page a List method returns.
const MaxListLimit = 1000

// pageLimit is a List method's page size: limit, 100 when it is not
// positive, at most MaxListLimit.
func pageLimit(limit int) int {
	if limit <= 0 {
		return 100
	}
	return min(limit, MaxListLimit)
}

// SyncResult is what ReconcilePool changed.
type SyncResult struct {
	Added      []UTXO   // new rows, now available
	Revived    []UTXO   // were spent or invalidated, seen again: available again
	Spent      []string // hashes no longer seen: now spent
	Confirmed  int      // rows whose confirmed flag changed
	Statements int      // SQL statements issued (BEGIN/COMMIT not counted)
	// Unchanged says the syncer did not reconcile: the listing and the
	// pool's rows were as they were when a reconciliation last changed nothing.
	Unchanged bool
}

// Changes is the number of rows the reconciliation changed.
func (r SyncResult) Changes() int {
	return len(r.Added) + len(r.Revived) + len(r.Spent) + r.Confirmed
}

// Touched are the hashes whose chain state changed.
func (r SyncResult) Touched() []string {
	out := make([]string, 0, len(r.Added)+len(r.Revived)+len(r.Spent))
	out = append(out, hashesOf(r.Added)...)
	out = append(out, hashesOf(r.Revived)...)
	return append(out, r.Spent...)
}

// current is the part of a stored UTXO that reconciling compares.
type current struct {
	ID        int64
	Hash      string
	State     string
	Confirmed bool
	Amount    Amount
}

// ReconcilePool makes the stored UTXOs of pool match seen, the complete list
// of the pool's unspent outputs the chain reports now (a Lister's):
//   - unknown hashes are inserted as available;
//   - spent or invalidated rows seen again become available (Revived);
//   - available rows not seen any more become spent;
//   - the confirmed flag follows the chain.
//
// It reads the pool in at most two statements and, only if something differs, writes
// in one transaction with a fixed number of statements per batchSize changes.
// Entries for another asset or program, without a hash, or whose hash
// already belongs to another pool are skipped and logged.
func (s *Store) ReconcilePool(ctx context.Context, pool Pool, seen []chain.UTXO) (SyncResult, error) {
	var n atomic.Int64
	ctx, cancel := s.writeContext(countStatements(ctx, &n))
	defer cancel()
	res, err := s.reconcile(ctx, pool, seen)
	res.Statements = int(n.Load())
	return res, err
}

// UTXOVersion is the number of statements that have changed pool's UTXO rows
// (PostgreSQL triggers keep it, whoever writes). A sync reads it before it
// reads the rows: should it read the same number later, no change committed
// in between. ok is false where there is no such count (SQLite, for bufferd
// dev), so that every sync compares the rows.
func (s *Store) UTXOVersion(ctx context.Context, poolID int64) (version int64, ok bool, err error) {
	if s.dialect != dialectPostgres {
		return 0, false, nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var v []int64
	if err := s.db.WithContext(ctx).Model(&poolUTXOVersion{}).Where("pool_id = ?", poolID).Pluck("version", &v).Error; err != nil {
		return 0, false, fmt.Errorf("storage: utxo version of pool %d: %w", poolID, err)
	}
	if len(v) == 0 {
		return 0, true, nil // no UTXO row of the pool ever changed
	}
	return v[0], true, nil
}

// reconcileRows reads the rows reconcile compares with seen: the pool's
// available ones, which may have been spent, and those of seen's other
// hashes, which are new or spent ones seen again. The pool's spent history,
// which only grows, is read only when seen has more than batchSize hashes
// the available rows lack (the first sync of a pool): two statements either
// way.
func (s *Store) reconcileRows(ctx context.Context, poolID int64, seen []chain.UTXO) ([]current, error) {
	rows, err := scanCurrent(s.db.WithContext(ctx).Model(&UTXO{}).
		Where("pool_id = ? AND state = ?", poolID, StateAvailable))
	if err != nil {
		return nil, fmt.Errorf("storage: read pool %d utxos: %w", poolID, err)
	}
	live := make(map[string]struct{}, len(rows))
	for _, r := range rows {
		live[r.Hash] = struct{}{}
	}
	var others []string
	for _, u := range seen {
		if _, ok := live[u.Hash]; !ok && u.Hash != "" {
			others = append(others, u.Hash)
		}
	}
	if len(others) == 0 {
		return rows, nil
	}
	q := s.db.WithContext(ctx).Model(&UTXO{})
	if len(others) <= batchSize {
		q = q.Where(byHash+" AND hash IN ?", poolID, others)
	} else {
		q = q.Where("pool_id = ? AND state <> ?", poolID, StateAvailable)
	}
	ended, err := scanCurrent(q)
	if err != nil {
		return nil, fmt.Errorf("storage: read pool %d utxos: %w", poolID, err)
	}
	return append(rows, ended...), nil
}

// scanCurrent reads the columns of current from the UTXOs q selects and
// scans them by position: a sync reads every available UTXO of a pool, and
// gorm's scanning by reflection was most of the syncer's work after decoding.
func scanCurrent(q *gorm.DB) (out []current, err error) {
	rows, err := q.Select("id", "hash", "state", "confirmed", "amount").Rows()
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, rows.Close()) }()
	for rows.Next() {
		var c current
		if err := rows.Scan(&c.ID, &c.Hash, &c.State, &c.Confirmed, &c.Amount); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *Store) reconcile(ctx context.Context, pool Pool, seen []chain.UTXO) (SyncResult, error) {
	var res SyncResult
	if pool.ID == 0 {
		return res, fmt.Errorf("%w: pool without id", errInvalidArgument)
	}
	rows, err := s.reconcileRows(ctx, pool.ID, seen)
	if err != nil {
		return res, err
	}
	have := make(map[string]current, len(rows))
	for _, r := range rows {
		have[r.Hash] = r
	}

	t := now()
	var (
		added              []UTXO
		revived            []UTXO
		spent              []string
		confirm, unconfirm []string
		seenSet            = make(map[string]struct{}, len(seen))
	)
	for _, u := range seen {
		if reason := rejectSeen(pool, u); reason != "" {
			slog.WarnContext(ctx, "storage: reconcile skips utxo", "pool", pool.ID, "hash", u.Hash, "reason", reason)
			continue
		}
		if _, dup := seenSet[u.Hash]; dup {
			continue
		}
		seenSet[u.Hash] = struct{}{}
		cur, ok := have[u.Hash]
		if !ok {
			if !u.Confirmed && !pool.Unconfirmed {
				continue // waits for its block
			}
			added = append(added, UTXO{
				Hash: u.Hash, PoolID: pool.ID, Asset: pool.Asset, Amount: Amount(u.Amount),
				State: StateAvailable, Confirmed: u.Confirmed, CreatedTx: u.TxID,
				CreatedAt: t, UpdatedAt: t,
			})
			continue
		}
		if cur.State == StateSpent || cur.State == StateInvalidated {
			revived = append(revived, UTXO{
				ID: cur.ID, Hash: cur.Hash, PoolID: pool.ID, Asset: pool.Asset, Amount: cur.Amount,
				State: StateAvailable, Confirmed: u.Confirmed, UpdatedAt: t,
			})
		}
		if cur.Confirmed != u.Confirmed {
			if u.Confirmed {
				confirm = append(confirm, u.Hash)
			} else {
				unconfirm = append(unconfirm, u.Hash)
			}
		}
	}
	for _, r := range rows {
		if _, ok := seenSet[r.Hash]; ok {
			continue
		}
		if r.State == StateAvailable {
			spent = append(spent, r.Hash)
		}
	}
	if len(added) == 0 && len(revived) == 0 && len(spent) == 0 && len(confirm) == 0 && len(unconfirm) == 0 {
		return res, nil
	}

	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		ins, err := insertUTXOs(tx, added)
		if err != nil {
			return err
		}
		res.Added = ins
		for _, chunk := range chunks(spent) {
			err := tx.Exec(`UPDATE utxos SET state = ?, spent_at = ?, updated_at = ?
				WHERE `+byHash+` AND state = ? AND hash IN ?`,
				StateSpent, t, t, pool.ID, StateAvailable, chunk).Error
			if err != nil {
				return fmt.Errorf("storage: mark spent: %w", err)
			}
		}
		for _, chunk := range chunks(hashesOf(revived)) {
			err := tx.Exec(`UPDATE utxos SET state = ?, spent_tx = '', spent_at = NULL, spent_height = 0, updated_at = ?
				WHERE `+byHash+` AND state IN ? AND hash IN ?`,
				StateAvailable, t, pool.ID, []string{StateSpent, StateInvalidated}, chunk).Error
			if err != nil {
				return fmt.Errorf("storage: revive: %w", err)
			}
		}
		for flag, hashes := range map[bool][]string{true: confirm, false: unconfirm} {
			for _, chunk := range chunks(hashes) {
				err := tx.Exec(`UPDATE utxos SET confirmed = ?, updated_at = ? WHERE `+byHash+` AND hash IN ?`,
					flag, t, pool.ID, chunk).Error
				if err != nil {
					return fmt.Errorf("storage: set confirmed: %w", err)
				}
			}
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return SyncResult{}, err
	}
	res.Revived = revived
	res.Spent = spent
	res.Confirmed = len(confirm) + len(unconfirm)
	return res, nil
}

// rejectSeen says why a UTXO reported for pool cannot belong to it, or "".
func rejectSeen(pool Pool, u chain.UTXO) string {
	switch {
	case u.Hash == "":
		return "empty hash"
	case u.Asset != "" && !strings.EqualFold(u.Asset, pool.Asset):
		return "asset differs from the pool's"
	case u.Program != "" && !strings.EqualFold(u.Program, pool.Program):
		return "program differs from the pool's"
	}
	return ""
}

// insertUTXOs inserts rows in multi-row statements, skipping hashes that
// already exist (in another pool: a hash is unique), and returns the rows
// inserted with their ids.
func insertUTXOs(tx *gorm.DB, rows []UTXO) ([]UTXO, error) {
	var out []UTXO
	for start := 0; start < len(rows); start += batchSize {
		batch := rows[start:min(start+batchSize, len(rows))]
		q, args := insertRows(`INSERT INTO utxos (hash, pool_id, asset, amount, state, confirmed, created_tx, spent_tx,
			created_at, updated_at, height, valid_height)`, batch, `ON CONFLICT (hash) DO NOTHING RETURNING id, hash`, func(u UTXO) []any {
			return []any{u.Hash, u.PoolID, u.Asset, u.Amount, u.State, u.Confirmed, u.CreatedTx, "", u.CreatedAt,
				u.UpdatedAt, u.Height, u.ValidHeight}
		})
		var ids []struct {
			ID   int64
			Hash string
		}
		if err := tx.Raw(q, args...).Scan(&ids).Error; err != nil {
			return nil, fmt.Errorf("storage: insert utxos: %w", err)
		}
		byHash := make(map[string]int64, len(ids))
		for _, r := range ids {
			byHash[r.Hash] = r.ID
		}
		for _, u := range batch {
			id, ok := byHash[u.Hash]
			if !ok {
				slog.WarnContext(tx.Statement.Context, "storage: reconcile skips utxo", "pool", u.PoolID, "hash", u.Hash,
					"reason", "hash already stored for another pool")
				continue
			}
			u.ID = id
			out = append(out, u)
		}
	}
	return out, nil
}

func hashesOf(us []UTXO) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Hash
	}
	return out
}

// chunks splits xs into slices of at most batchSize.
func chunks(xs []string) [][]string {
	var out [][]string
	for start := 0; start < len(xs); start += batchSize {
		out = append(out, xs[start:min(start+batchSize, len(xs))])
	}
	return out
}

// heldNow is an SQL condition true when a live reservation that has not run
// out at ? holds utxos.hash: that available UTXO is reserved.
const heldNow = `EXISTS (SELECT 1 FROM reservation_utxos ru JOIN reservations r ON r.id = ru.reservation_id
	WHERE ru.hash = utxos.hash AND r.state IN ('held', 'submitted') AND r.expires_at > ?)`

// ListUTXOs returns up to limit UTXOs of a pool with id > afterID, ordered by
// id (keyset pagination: pass the last id as the next afterID). state "" means
// any state; StateReserved selects the available UTXOs a live reservation
// holds, StateAvailable the others, and a returned row's State says
// "reserved" for those. limit <= 0 means 100; it is capped at MaxListLimit.
func (s *Store) ListUTXOs(ctx context.Context, poolID int64, state string, afterID int64, limit int) ([]UTXO, error) {
	if state != "" && !validUTXOState(state) && state != StateReserved {
		return nil, fmt.Errorf("%w: unknown utxo state %q", errInvalidArgument, state)
	}
	limit = pageLimit(limit)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	t := now()
	q := s.db.WithContext(ctx).Model(&UTXO{}).Select("utxos.*, "+heldNow+" AS held", t).
		Where("pool_id = ? AND id > ?", poolID, afterID)
	switch state {
	case "":
	case StateReserved:
		q = q.Where("state = ? AND "+heldNow, StateAvailable, t)
	case StateAvailable:
		q = q.Where("state = ? AND NOT "+heldNow, StateAvailable, t)
	default:
		q = q.Where("state = ?", state)
	}
	var rows []struct {
		UTXO
		Held bool
	}
	if err := q.Order("id").Limit(limit).Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("storage: list utxos: %w", err)
	}
	out := make([]UTXO, len(rows))
	for i, r := range rows {
		out[i] = r.UTXO
		if r.Held && r.State == StateAvailable {
			out[i].State = StateReserved
		}
	}
	return out, nil
}

// PoolUTXOsByState returns every UTXO of a pool in one of states (all of them
// when states is empty), ordered by id.
func (s *Store) PoolUTXOsByState(ctx context.Context, poolID int64, states ...string) ([]UTXO, error) {
	for _, st := range states {
		if !validUTXOState(st) {
			return nil, fmt.Errorf("%w: unknown utxo state %q", errInvalidArgument, st)
		}
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	q := s.db.WithContext(ctx).Where("pool_id = ?", poolID)
	if len(states) > 0 {
		q = q.Where("state IN ?", states)
	}
	var out []UTXO
	if err := q.Order("id").Find(&out).Error; err != nil {
		return nil, fmt.Errorf("storage: pool utxos: %w", err)
	}
	return out, nil
}

// GetUTXOs returns the stored UTXOs among hashes (unknown hashes are absent),
// ordered by id.
func (s *Store) GetUTXOs(ctx context.Context, hashes []string) ([]UTXO, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	hashes = slices.Clone(hashes)
	slices.Sort(hashes)
	hashes = slices.Compact(hashes)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var out []UTXO
	for _, chunk := range chunks(hashes) {
		var part []UTXO
		if err := s.db.WithContext(ctx).Where("hash IN ?", chunk).Order("id").Find(&part).Error; err != nil {
			return nil, fmt.Errorf("storage: get utxos: %w", err)
		}
		out = append(out, part...)
	}
	if len(hashes) > batchSize {
		slices.SortFunc(out, func(a, b UTXO) int { return cmp.Compare(a.ID, b.ID) })
	}
	return out, nil
}

func validUTXOState(s string) bool {
	switch s {
	case StateAvailable, StateImmature, StateSpent, StateInvalidated:
		return true
	}
	return false
}
