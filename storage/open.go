package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// More sentinel errors.
var (
	// errBadURL means the database URL has an unsupported scheme.
	errBadURL = errors.New("storage: unsupported database url (want postgres://, postgresql://, sqlite:// or file:)")
	// errInvalidArgument means a caller passed a value the store refuses
	// (empty key, unknown state...). It is wrapped with the details.
	errInvalidArgument = errors.New("storage: invalid argument")
)

// The dialects a Store runs on (its dialect field).
const (
	dialectPostgres = "postgres"
	dialectSQLite   = "sqlite"
)

// defaultTimeout bounds every store call whose context has no deadline.
const defaultTimeout = 30 * time.Second

// slowQuery is the duration above which a statement is logged at warn level.
const slowQuery = 500 * time.Millisecond

// Open connects to the database at databaseURL.
//
// postgres:// and postgresql:// URLs open PostgreSQL, whose schema comes only
// from the versioned SQL migrations (MigrateUp, `bufferd migrate up`); Open
// fails when the schema is older than this binary. sqlite://PATH and
// file:PATH open a SQLite file (WAL, busy timeout, immediate write
// transactions) for development only; its schema is created
// with gorm's AutoMigrate from the models, so it has their columns, indexes
// and check constraints but not the foreign keys to pools, which only the
// PostgreSQL migrations declare.
func Open(ctx context.Context, databaseURL string, opts ...Option) (*Store, error) {
	cfg := openConfig{maxConns: defaultMaxConns}
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case isPostgresURL(databaseURL):
		return openPostgres(ctx, databaseURL, cfg)
	case strings.HasPrefix(databaseURL, "sqlite://"):
		return openSQLite(ctx, strings.TrimPrefix(databaseURL, "sqlite://"))
	case strings.HasPrefix(databaseURL, "file:"):
		return openSQLite(ctx, strings.TrimPrefix(databaseURL, "file:"))
	default:
		return nil, errBadURL
	}
}

// defaultMaxConns is how many PostgreSQL connections a Store opens at most.
const defaultMaxConns = 10

// Option configures Open.
type Option func(*openConfig)

type openConfig struct {
	maxConns int
	params   map[string]string // PostgreSQL session settings
}

func (c *openConfig) set(k, v string) {
	if c.params == nil {
		c.params = map[string]string{}
	}
	c.params[k] = v
}

// WithApplicationName names the PostgreSQL sessions of the Store (as
// pg_stat_activity shows them).
func WithApplicationName(name string) Option {
	return func(c *openConfig) {
		if name != "" {
			c.set("application_name", name)
		}
	}
}

// WithIdleInTransactionTimeout makes PostgreSQL end a session that keeps a
// transaction open without a statement for longer than d (d <= 0: no limit).
// A sync leader paused in the middle of a transaction would otherwise keep its
// row locks, and the next leader waiting on them, until it resumes.
func WithIdleInTransactionTimeout(d time.Duration) Option {
	return func(c *openConfig) {
		if d > 0 {
			c.set("idle_in_transaction_session_timeout", strconv.FormatInt(d.Milliseconds(), 10))
		}
	}
}

// WithMaxConns bounds the PostgreSQL connections of the Store (default 10;
// n <= 0 keeps it). Every replica holds up to n: size it against the
// server's max_connections.
func WithMaxConns(n int) Option {
	return func(c *openConfig) {
		if n > 0 {
			c.maxConns = n
		}
	}
}

func isPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

func openPostgres(ctx context.Context, databaseURL string, cfg openConfig) (*Store, error) {
	sqlDB, err := openSQL(ctx, databaseURL, cfg.params)
	if err != nil {
		return nil, err
	}
	ctx2, cancel := withTimeout(ctx)
	defer cancel()
	current, latest, err := schemaVersions(ctx2, sqlDB)
	if err != nil {
		return nil, errors.Join(err, sqlDB.Close())
	}
	if current < latest {
		return nil, errors.Join(fmt.Errorf("%w: database at version %d, binary needs %d", errNotMigrated, current, latest),
			sqlDB.Close())
	}
	if current > latest {
		slog.Warn("storage: database schema is newer than this binary", "current", current, "latest", latest)
	}
	sqlDB.SetMaxOpenConns(cfg.maxConns)
	sqlDB.SetMaxIdleConns(cfg.maxConns)
	sqlDB.SetConnMaxLifetime(30 * time.Minute)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), gormConfig())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("storage: open postgres: %w", err), sqlDB.Close())
	}
	return newStore(db, dialectPostgres)
}

func openSQLite(ctx context.Context, path string) (*Store, error) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i] // our own pragmas replace any given ones
	}
	if path == "" {
		return nil, fmt.Errorf("%w: empty sqlite path", errBadURL)
	}
	memory := strings.Contains(path, ":memory:")
	if !memory {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("storage: sqlite directory: %w", err)
		}
	}
	if !memory {
		if err := setAsideOldDevFile(ctx, path); err != nil {
			return nil, err
		}
	}
	// _txlock=immediate takes the write lock at BEGIN, so concurrent write
	// transactions wait on busy_timeout instead of failing on lock upgrade.
	dsn := path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := gorm.Open(sqlite.Open(dsn), gormConfig())
	if err != nil {
		return nil, fmt.Errorf("storage: open sqlite: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("storage: open sqlite: %w", err)
	}
	if memory {
		sqlDB.SetMaxOpenConns(1) // every connection would be another database
	} else {
		sqlDB.SetMaxOpenConns(8)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := db.WithContext(ctx).AutoMigrate(models()...); err != nil {
		return nil, errors.Join(fmt.Errorf("storage: sqlite schema: %w", err), sqlDB.Close())
	}
	return newStore(db, dialectSQLite)
}

// setAsideOldDevFile renames a development database written by bufferd 1
// (its utxos table lacks valid_height; its schema cannot be migrated in
// place on SQLite) to path + ".v1", so that a fresh one is made.
func setAsideOldDevFile(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err != nil {
		return nil // no file yet
	}
	db, err := gorm.Open(sqlite.Open(path+"?mode=ro"), &gorm.Config{Logger: slogLogger{}})
	if err != nil {
		return fmt.Errorf("storage: open sqlite: %w", err)
	}
	var cols []struct{ Name string }
	err = db.WithContext(ctx).Raw(`SELECT name FROM pragma_table_info('utxos')`).Scan(&cols).Error
	if sqlDB, e := db.DB(); e == nil {
		err = errors.Join(err, sqlDB.Close())
	}
	if err != nil || len(cols) == 0 {
		return err
	}
	for _, c := range cols {
		if c.Name == "valid_height" {
			return nil
		}
	}
	slog.Warn("storage: the development database was made by bufferd 1; starting a fresh one", "old", path+".v1")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Rename(path+suffix, path+".v1"+suffix); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("storage: set aside the old development database: %w", err)
		}
	}
	return nil
}

func gormConfig() *gorm.Config {
	return &gorm.Config{
		Logger:                 slogLogger{},
		NowFunc:                now,
		TranslateError:         true,
		SkipDefaultTransaction: true,
	}
}

// now is the store's clock: UTC at PostgreSQL's microsecond precision, so a
// time read back equals the time written on both dialects.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// Close closes the connection pool.
func (s *Store) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

type stmtCounterKey struct{}

// countStatements makes the statements issued under ctx also count into n.
func countStatements(ctx context.Context, n *atomic.Int64) context.Context {
	return context.WithValue(ctx, stmtCounterKey{}, n)
}

func newStore(db *gorm.DB, dialect string) (*Store, error) {
	s := &Store{db: db, dialect: dialect, stmts: new(atomic.Int64)}
	count := func(tx *gorm.DB) {
		if tx.DryRun || tx.Statement.SQL.Len() == 0 {
			return
		}
		s.stmts.Add(1)
		if n, ok := tx.Statement.Context.Value(stmtCounterKey{}).(*atomic.Int64); ok {
			n.Add(1)
		}
	}
	cb := db.Callback()
	for _, err := range []error{
		cb.Create().After("gorm:create").Register("bufferd:count_create", count),
		cb.Query().After("gorm:query").Register("bufferd:count_query", count),
		cb.Update().After("gorm:update").Register("bufferd:count_update", count),
		cb.Delete().After("gorm:delete").Register("bufferd:count_delete", count),
		cb.Row().After("gorm:row").Register("bufferd:count_row", count),
		cb.Raw().After("gorm:raw").Register("bufferd:count_raw", count),
	} {
		if err != nil {
			err = fmt.Errorf("storage: register callback: %w", err)
			if sqlDB, e := db.DB(); e == nil {
				err = errors.Join(err, sqlDB.Close())
			}
			return nil, err
		}
	}
	return s, nil
}

// withTimeout applies defaultTimeout when ctx has no deadline.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, defaultTimeout)
}

// slogLogger is gorm's logger: slow statements at warn, errors at debug (the
// caller decides whether an error matters), nothing else.
type slogLogger struct{}

func (l slogLogger) LogMode(logger.LogLevel) logger.Interface { return l }

func (slogLogger) Info(ctx context.Context, msg string, args ...any) {
	slog.DebugContext(ctx, "gorm: "+fmt.Sprintf(msg, args...))
}

func (slogLogger) Warn(ctx context.Context, msg string, args ...any) {
	slog.WarnContext(ctx, "gorm: "+fmt.Sprintf(msg, args...))
}

func (slogLogger) Error(ctx context.Context, msg string, args ...any) {
	slog.ErrorContext(ctx, "gorm: "+fmt.Sprintf(msg, args...))
}

func (slogLogger) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	elapsed := time.Since(begin)
	switch {
	case elapsed >= slowQuery:
		sql, rows := fc()
		slog.WarnContext(ctx, "storage: slow statement", "elapsed", elapsed, "rows", rows, "sql", truncate(sql, 300))
	case err != nil && !errors.Is(err, gorm.ErrRecordNotFound) && slog.Default().Enabled(ctx, slog.LevelDebug):
		sql, _ := fc()
		slog.DebugContext(ctx, "storage: statement failed", "err", err, "sql", truncate(sql, 300))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}
