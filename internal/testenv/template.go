package testenv

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bufferd/bufferd/internal/scratchdb"
)

// templatePrefix starts the name of every template database; the process id
// that follows lets a later process drop the templates of one that died.
const templatePrefix = "bufferd_tmpl_"

// Template is a database prepared once per test process (migrated, say) on
// the shared PostgreSQL, which each test clones: a clone costs one CREATE
// DATABASE ... TEMPLATE instead of a fresh database plus its preparation.
// Declare one per package and end the package's TestMain with Main or
// AfterTests, which drop it.
type Template struct {
	prepare func(ctx context.Context, url string) error

	once sync.Once
	db   *scratchdb.DB
	err  error
}

// NewTemplate returns a template that prepare makes from an empty database
// (given its URL) the first time a test clones it.
func NewTemplate(prepare func(ctx context.Context, url string) error) *Template {
	return &Template{prepare: prepare}
}

var (
	templatesMu sync.Mutex
	templates   []*scratchdb.DB // made by this process, dropped at its end
)

// Postgres returns the URL of a new database on the shared PostgreSQL cloned
// from the template; it is dropped when the test ends.
func (tm *Template) Postgres(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	u, drop, err := tm.Clone(ctx)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(drop)
	return u
}

// Clone is Postgres for code without a *testing.T (an Example's server): it
// returns the new database's URL and a func that drops it.
func (tm *Template) Clone(ctx context.Context) (string, func(), error) {
	admin := DatabaseURL()
	tm.once.Do(func() { tm.db, tm.err = makeTemplate(ctx, admin, tm.prepare) })
	if tm.err != nil {
		return "", nil, fmt.Errorf("template database: %w", tm.err)
	}
	db, err := newDatabase(ctx, admin, scratchdb.FromTemplate(tm.db.Name))
	if err != nil {
		return "", nil, err
	}
	return db.URL, db.Discard, nil
}

// makeTemplate creates a database named after this process, prepares it and
// returns it. It first drops the templates of test processes that no longer
// run.
func makeTemplate(ctx context.Context, admin string, prepare func(context.Context, string) error) (*scratchdb.DB, error) {
	dropDeadTemplates(ctx, admin)
	db, err := scratchdb.Create(ctx, admin, scratchdb.Name(templatePrefix+strconv.Itoa(os.Getpid())+"_"))
	if err != nil {
		return nil, err
	}
	templatesMu.Lock()
	templates = append(templates, db)
	templatesMu.Unlock()
	if err := prepare(ctx, db.URL); err != nil {
		return nil, fmt.Errorf("prepare %s: %w", db.Name, err)
	}
	return db, nil
}

// dropDeadTemplates drops the templates whose process has exited (a test
// binary killed before its TestMain could drop them).
func dropDeadTemplates(ctx context.Context, admin string) {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return
	}
	defer func() { _ = conn.Close(context.Background()) }()
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1", templatePrefix+"%")
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, name := range names {
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(name, templatePrefix), "_", 2)[0])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		_ = scratchdb.Drop(ctx, admin, name)
	}
}

// ReleaseShared drops what the process shared between its tests: its
// template databases and its fresh PostgreSQL data directory. Main and
// AfterTests call it; a TestMain without a leak check calls it after m.Run.
func ReleaseShared() {
	removeInitialData()
	dropTemplates()
}

// dropTemplates drops the templates this process made.
func dropTemplates() {
	templatesMu.Lock()
	dbs := templates
	templates = nil
	templatesMu.Unlock()
	if len(dbs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, db := range dbs {
		if err := db.Drop(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		}
	}
}
