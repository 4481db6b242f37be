package storage

import (
	"context"
	"fmt"
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
