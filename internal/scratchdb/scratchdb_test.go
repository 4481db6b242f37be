package scratchdb_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bufferd/bufferd/internal/scratchdb"
	"github.com/bufferd/bufferd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// exists reports whether the shared server has a database called name.
func exists(ctx context.Context, t *testing.T, name string) bool {
	t.Helper()
	conn, err := pgx.Connect(ctx, testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestCreateConnectDrop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := scratchdb.Name("bufferd_test_scratch_")
	db, err := scratchdb.Create(ctx, testenv.DatabaseURL(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Discard)
	if db.Name != name || !strings.Contains(db.URL, "/"+name) {
		t.Fatalf("got name %q, URL %q; want %q in both", db.Name, db.URL, name)
	}

	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	var current string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&current); err != nil {
		t.Fatal(err)
	}
	if current != name {
		t.Fatalf("connected to %q, want %q", current, name)
	}
	// The connection stays open: Drop closes it.
	if err := db.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
	if exists(ctx, t, name) {
		t.Fatalf("database %s still exists after Drop", name)
	}
	if err := db.Drop(ctx); err != nil {
		t.Fatalf("a second Drop: %v", err)
	}
}

func TestCreateFromTemplate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tmpl, err := scratchdb.Create(ctx, testenv.DatabaseURL(), scratchdb.Name("bufferd_test_scratch_"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tmpl.Discard)
	conn, err := pgx.Connect(ctx, tmpl.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, "CREATE TABLE marker (v text); INSERT INTO marker VALUES ('from the template')")
	_ = conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}

	clone, err := scratchdb.Create(ctx, testenv.DatabaseURL(), scratchdb.Name("bufferd_test_scratch_"),
		scratchdb.FromTemplate(tmpl.Name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(clone.Discard)
	conn, err = pgx.Connect(ctx, clone.URL)
	if err != nil {
		t.Fatal(err)
	}
	var v string
	err = conn.QueryRow(ctx, "SELECT v FROM marker").Scan(&v)
	_ = conn.Close(ctx)
	if err != nil || v != "from the template" {
		t.Fatalf("the clone's marker: %q, %v", v, err)
	}
	clone.Discard()
	if exists(ctx, t, clone.Name) {
		t.Fatalf("database %s still exists after Discard", clone.Name)
	}
}

func TestCreateRejectsBadAdminURL(t *testing.T) {
	for _, u := range []string{"host=127.0.0.1 user=postgres", "redis://127.0.0.1:6379/0", "postgres://%zz"} {
		if _, err := scratchdb.Create(context.Background(), u, scratchdb.Name("x_")); !errors.Is(err, scratchdb.ErrAdminURL) {
			t.Errorf("Create(%q): %v, want ErrAdminURL", u, err)
		}
	}
}
