// Package scratchdb creates throwaway PostgreSQL databases on a server given
// by an admin URL, and drops them again. Tests, templates and benchmark runs
// use it for a database of their own; it depends on nothing but pgx, so the
// binary's bench commands can use it too.
package scratchdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrAdminURL is an admin URL that is not a postgres:// URL.
var ErrAdminURL = errors.New("scratchdb: admin URL is not a postgres:// URL")

// dropTimeout bounds DB.Discard.
const dropTimeout = 30 * time.Second

// Name returns prefix followed by 12 random hex characters: a fresh database
// name when prefix is a lowercase identifier.
func Name(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// DB is a database made by Create.
type DB struct {
	Name  string // the database's name
	URL   string // the admin URL with the database's name as its path
	admin string
}

// Option modifies Create's CREATE DATABASE.
type Option func(*options)

type options struct {
	template string
}

// FromTemplate makes Create copy the database named template
// (CREATE DATABASE ... TEMPLATE template).
func FromTemplate(template string) Option {
	return func(o *options) { o.template = template }
}

// Create runs CREATE DATABASE name on the server adminURL names and returns
// the new database. Pass Name(prefix) for a fresh name.
func Create(ctx context.Context, adminURL, name string, opts ...Option) (*DB, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("%w: %q", ErrAdminURL, adminURL)
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("scratchdb: postgres at %s: %w", u.Redacted(), err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if o.template != "" {
		sql += " TEMPLATE " + pgx.Identifier{o.template}.Sanitize()
	}
	if _, err := conn.Exec(ctx, sql); err != nil {
		return nil, fmt.Errorf("scratchdb: create database %s: %w", name, err)
	}
	u.Path = "/" + name
	u.RawPath = ""
	return &DB{Name: name, URL: u.String(), admin: adminURL}, nil
}

// Drop drops the database, closing the connections still open to it.
func (db *DB) Drop(ctx context.Context) error { return Drop(ctx, db.admin, db.Name) }

// Discard drops the database within 30 seconds and ignores a failure: for a
// defer or a test's cleanup.
func (db *DB) Discard() {
	ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
	defer cancel()
	_ = db.Drop(ctx)
}

// Drop drops the database called name on the server adminURL names, if it
// exists, closing the connections still open to it.
func Drop(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("scratchdb: postgres: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("scratchdb: drop database %s: %w", name, err)
	}
	return nil
}
