package storage

import (
	"context"
	"fmt"

	"github.com/bufferd/bufferd/lockmgr"
)

// MigrateUpTo applies the embedded migrations up to version (a test helper:
// the migration tests build a database of an older schema).
func MigrateUpTo(ctx context.Context, databaseURL string, version int64) error {
	db, err := openSQL(ctx, databaseURL, nil)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	p, err := newProvider(db)
	if err != nil {
		return err
	}
	if _, err := p.UpTo(ctx, version); err != nil {
		return fmt.Errorf("storage: migrate up to %d: %w", version, err)
	}
	return nil
}

// MigrateDownTo rolls the migrations above version back (a test helper).
func MigrateDownTo(ctx context.Context, databaseURL string, version int64) error {
	db, err := openSQL(ctx, databaseURL, nil)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	p, err := newProvider(db)
	if err != nil {
		return err
	}
	if _, err := p.DownTo(ctx, version); err != nil {
		return fmt.Errorf("storage: migrate down to %d: %w", version, err)
	}
	return nil
}

// Batches is the number of group transactions committed so far (writes
// retried one by one after a failed batch are not counted).
func (j *Journal) Batches() int64 { return j.batches.Load() }

// StatementCount is the number of SQL statements this store has issued so far
// (transaction BEGIN/COMMIT not included). Tests use deltas of it.
func (s *Store) StatementCount() int64 { return s.stmts.Load() }

// ForgetKeysStatement is the statement ForgetKeys runs.
const ForgetKeysStatement = forgetKeys

// Names the external tests (package storage_test) check the store with.
const (
	DialectPostgres = dialectPostgres
	DialectSQLite   = dialectSQLite
)

// Sentinel errors of the store's checks.
var (
	ErrAddressAssetRequired = errAddressAssetRequired
	ErrBadURL               = errBadURL
	ErrInvalidArgument      = errInvalidArgument
	ErrJournalClosed        = errJournalClosed
	ErrNotMigrated          = errNotMigrated
	ErrWrongState           = errWrongState
)

type (
	ReservationUTXO   = reservationUTXO
	ReservationUpdate = reservationUpdate
)

// Models lists every model.
func Models() []any { return models() }

// JournalRow is the journal's row of a reservation.
func JournalRow(r *lockmgr.Reservation) Reservation { return journalRow(r) }

// NewJournalOfBatch starts a journal committing at most maxBatch writes in
// one transaction.
func NewJournalOfBatch(s *Store, maxBatch int) *Journal {
	return newJournal(s, JournalOptions{}, maxBatch)
}

// Pending is the number of writes queued and not yet taken by a writer.
func (j *Journal) Pending() int {
	n := 0
	for _, w := range j.writers {
		w.mu.Lock()
		n += len(w.queue)
		w.mu.Unlock()
	}
	return n
}

// Dialect is "postgres" or "sqlite".
func (s *Store) Dialect() string { return s.dialect }

// Snapshot reads what a pool's Redis state is rebuilt from.
func (s *Store) Snapshot(ctx context.Context, poolID int64) (utxos []UTXO, live, keyed []Reservation, maxFence int64, err error) {
	return s.snapshot(ctx, poolID)
}

// UpdateReservation changes one reservation row (fenced).
func (s *Store) UpdateReservation(ctx context.Context, id string, u ReservationUpdate) error {
	return s.updateReservation(ctx, id, u)
}

// Changed reports whether the reconcile wrote anything.
func (r SyncResult) Changed() bool {
	return len(r.Added) > 0 || len(r.Revived) > 0 || len(r.Spent) > 0 || r.Confirmed > 0
}
