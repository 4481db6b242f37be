package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bufferd/bufferd/internal/testenv"
)

// pgAdmin connects to the shared PostgreSQL as its administrator.
func pgAdmin(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testenv.DatabaseURL())
	if err != nil {
		t.Fatalf("postgres at %s: %v", testenv.DatabaseURL(), err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// pgExec runs sql on conn, failing the test on error.
func pgExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// missingDatabase returns the URL of a database that does not exist yet on
// the shared server, for a new login role with the given attributes
// ("CREATEDB" or "NOCREATEDB"), and the database and role names. Both are
// dropped when the test ends.
func missingDatabase(t *testing.T, admin *pgx.Conn, attrs string) (dbURL, db, role string) {
	t.Helper()
	db, role = testenv.RandomName("bufferd_test_"), testenv.RandomName("bufferd_role_")
	pgExec(t, admin, "CREATE ROLE "+role+" LOGIN "+attrs)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
		_, _ = admin.Exec(ctx, "DROP ROLE IF EXISTS "+role)
	})
	u, err := url.Parse(testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	u.User, u.Path = url.User(role), "/"+db
	return u.String(), db, role
}

// runBufferd runs the bufferd binary with args and BUFFERD_DATABASE_URL=dbURL
// and returns its combined output and error.
func runBufferd(dbURL string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "BUFFERD_DATABASE_URL="+dbURL, "BUFFERD_LOG_FORMAT=text")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// `bufferd migrate up` on a server without the database creates it (owned by
// the URL's role, which has CREATEDB but is no superuser) and migrates it;
// three replicas doing so at once all succeed and only one creates it.
func TestMigrateUpCreatesTheDatabase(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	dbURL, db, role := missingDatabase(t, admin, "CREATEDB")
	var wg sync.WaitGroup
	outs, errs := make([]string, 3), make([]error, 3)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = runBufferd(dbURL, "migrate", "up")
		}()
	}
	wg.Wait()
	created := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrate up %d: %v\n%s", i, err, outs[i])
		}
		created += strings.Count(outs[i], "database created")
	}
	if created != 1 {
		t.Errorf("%d runs created the database, want 1:\n%s", created, strings.Join(outs, "\n"))
	}
	var owner string
	if err := admin.QueryRow(context.Background(),
		"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", db).Scan(&owner); err != nil || owner != role {
		t.Fatalf("owner of %s: %q (%v), want %s", db, owner, err, role)
	}
	out, err := runBufferd(dbURL, "migrate", "status")
	var cur, latest int
	if _, serr := fmt.Sscanf(out, "current %d, latest %d", &cur, &latest); err != nil || serr != nil || cur != latest || cur == 0 {
		t.Fatalf("migrate status: %q (%v), want current = latest", out, err)
	}
}

// Without CREATEDB, `bufferd migrate up` fails saying which statement a
// superuser should run; once it was run, migrate up succeeds.
func TestMigrateUpSaysHowToCreateTheDatabase(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	dbURL, db, role := missingDatabase(t, admin, "NOCREATEDB")
	out, err := runBufferd(dbURL, "migrate", "up")
	statement := fmt.Sprintf(`CREATE DATABASE "%s" OWNER "%s";`, db, role)
	if err == nil || !strings.Contains(out, statement) || !strings.Contains(out, "superuser") {
		t.Fatalf("migrate up without CREATEDB: %v\n%s\nwant a failure naming %s", err, out, statement)
	}
	t.Logf("the error: %s", strings.TrimSpace(out))
	pgExec(t, admin, statement)
	if out, err := runBufferd(dbURL, "migrate", "up"); err != nil || strings.Contains(out, "database created") {
		t.Fatalf("migrate up after %s: %v\n%s", statement, err, out)
	}
}
