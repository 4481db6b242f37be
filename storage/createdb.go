package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// errCannotCreateDatabase means the database of the URL does not exist and
// bufferd may not create it; it is wrapped with what to run as a superuser.
var errCannotCreateDatabase = errors.New("storage: the database does not exist and cannot be created")

// maintenanceDatabases are where EnsureDatabase connects to run CREATE
// DATABASE, in this order.
var maintenanceDatabases = []string{"postgres", "template1"}

// PostgreSQL error codes the store tells apart.
const (
	pgForeignKeyViolation   = "23503"
	pgInvalidCatalogName    = "3D000" // the database does not exist
	pgDuplicateDatabase     = "42P04"
	pgUniqueViolation       = "23505" // a concurrent CREATE DATABASE of the same name
	pgInsufficientPrivilege = "42501"
	pgInvalidAuthorization  = "28000" // refused by pg_hba.conf
)

// EnsureDatabase creates the PostgreSQL database databaseURL names when it
// does not exist yet, with the URL's credentials through a maintenance
// database of the same server (postgres, else template1), and reports whether
// it created it. The URL's role then owns it. When the role may not create
// databases the error gives the statement a superuser should run. Concurrent calls are safe: one creates the database.
func EnsureDatabase(ctx context.Context, databaseURL string) (created bool, err error) {
	if !isPostgresURL(databaseURL) {
		return false, fmt.Errorf("%w: migrations need a postgres:// URL", errBadURL)
	}
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return false, fmt.Errorf("%w: %v", errBadURL, err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		return false, conn.Close(ctx)
	}
	if !hasPgCode(err, pgInvalidCatalogName) {
		return false, fmt.Errorf("storage: connect postgres: %w", err)
	}
	admin, err := connectMaintenance(ctx, cfg)
	if err != nil {
		return false, cannotCreate(cfg, err)
	}
	// Only this one statement runs on it: a failed close loses nothing.
	defer func() { _ = admin.Close(context.WithoutCancel(ctx)) }()
	_, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{cfg.Database}.Sanitize())
	switch {
	case err == nil:
		return true, nil
	case hasPgCode(err, pgDuplicateDatabase, pgUniqueViolation):
		return false, nil
	case hasPgCode(err, pgInsufficientPrivilege):
		return false, cannotCreate(cfg, err)
	default:
		return false, fmt.Errorf("storage: create database %q: %w", cfg.Database, err)
	}
}

// connectMaintenance connects with cfg's credentials to the first
// maintenance database that exists.
func connectMaintenance(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	var err error
	for _, db := range maintenanceDatabases {
		mc := cfg.Copy()
		mc.Database = db
		var conn *pgx.Conn
		if conn, err = pgx.ConnectConfig(ctx, mc); err == nil {
			return conn, nil
		}
		// Another one may exist, be open to the role or be allowed by pg_hba.conf.
		if !hasPgCode(err, pgInvalidCatalogName, pgInsufficientPrivilege, pgInvalidAuthorization) {
			break
		}
	}
	return nil, err
}

// cannotCreate is the error of a database the role of cfg may not create,
// saying what to run instead.
func cannotCreate(cfg *pgx.ConnConfig, cause error) error {
	db, role := pgx.Identifier{cfg.Database}.Sanitize(), pgx.Identifier{cfg.User}.Sanitize()
	return fmt.Errorf("%w: database %s is missing and role %s may not create it (%v); as a superuser, "+
		"run CREATE DATABASE %s OWNER %s; (or ALTER ROLE %s CREATEDB;) and run bufferd migrate up again",
		errCannotCreateDatabase, db, role, cause, db, role, role)
}

// hasPgCode reports whether err is a PostgreSQL error with one of codes.
func hasPgCode(err error, codes ...string) bool {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return false
	}
	for _, c := range codes {
		if pg.Code == c {
			return true
		}
	}
	return false
}
