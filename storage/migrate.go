package storage

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// errNotMigrated means the PostgreSQL schema is older than this binary expects.
var errNotMigrated = errors.New("storage: schema not migrated (run bufferd migrate up)")

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockID is the advisory lock key the migrations hold, so that any
// number of replicas may run `bufferd migrate up` at once.
const migrationLockID int64 = 0x6275666665726400 // "bufferd\0"

// MigrateUp applies every pending migration to the PostgreSQL database at
// databaseURL. Concurrent callers serialise on a session-level advisory lock;
// the ones that get it after the first find nothing to do.
func MigrateUp(ctx context.Context, databaseURL string) (err error) {
	db, err := openSQL(ctx, databaseURL, nil)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(migrationLockID),
		lock.WithLockTimeout(1, 600), // poll every second for up to 10 minutes
	)
	if err != nil {
		return fmt.Errorf("storage: migration lock: %w", err)
	}
	p, err := newProvider(db, goose.WithSessionLocker(locker))
	if err != nil {
		return err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("storage: migrate up: %w", err)
	}
	for _, r := range results {
		slog.Info("storage: migration applied", "version", r.Source.Version, "path", r.Source.Path, "duration", r.Duration)
	}
	return nil
}

// MigrateStatus reports the schema version of the PostgreSQL database at
// databaseURL (0 when no migration ever ran) and the latest version this
// binary knows. It changes nothing in the database.
func MigrateStatus(ctx context.Context, databaseURL string) (current, latest int64, err error) {
	db, err := openSQL(ctx, databaseURL, nil)
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	return schemaVersions(ctx, db)
}

// schemaVersions is MigrateStatus over an open handle.
func schemaVersions(ctx context.Context, db *sql.DB) (current, latest int64, err error) {
	p, err := newProvider(db)
	if err != nil {
		return 0, 0, err
	}
	sources := p.ListSources()
	if len(sources) == 0 {
		return 0, 0, errors.New("storage: no embedded migrations")
	}
	latest = sources[len(sources)-1].Version
	// goose would create its version table on first use; a status check must
	// not write, so look for the table first.
	var exists bool
	if err := db.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", goose.DefaultTablename).Scan(&exists); err != nil {
		return 0, latest, fmt.Errorf("storage: schema version: %w", err)
	}
	if !exists {
		return 0, latest, nil
	}
	current, err = p.GetDBVersion(ctx)
	if err != nil {
		return 0, latest, fmt.Errorf("storage: schema version: %w", err)
	}
	return current, latest, nil
}

func newProvider(db *sql.DB, opts ...goose.ProviderOption) (*goose.Provider, error) {
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("storage: migrations: %w", err)
	}
	opts = append(opts, goose.WithLogger(goose.NopLogger()), goose.WithDisableGlobalRegistry(true))
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, opts...)
	if err != nil {
		return nil, fmt.Errorf("storage: migrations: %w", err)
	}
	return p, nil
}

// openSQL opens and pings a database/sql handle on PostgreSQL through pgx.
func openSQL(ctx context.Context, databaseURL string, params map[string]string) (*sql.DB, error) {
	if !isPostgresURL(databaseURL) {
		return nil, fmt.Errorf("%w: migrations need a postgres:// URL", errBadURL)
	}
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadURL, err)
	}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	db := stdlib.OpenDB(*cfg)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("storage: connect postgres: %w", err), db.Close())
	}
	return db, nil
}
