package storage_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/testenv"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openPostgres returns a store on a fresh, migrated PostgreSQL database.
func openPostgres(t *testing.T) *storage.Store {
	t.Helper()
	ctx := testCtx(t)
	url := testenv.Postgres(t)
	if err := storage.MigrateUp(ctx, url); err != nil {
		t.Fatalf("MigrateUp: %v", err)
	}
	s, err := storage.Open(ctx, url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// openSQLite returns a store on a fresh SQLite file.
func openSQLite(t *testing.T) *storage.Store {
	t.Helper()
	s, err := storage.Open(testCtx(t), "sqlite://"+filepath.Join(t.TempDir(), "sub", "bufferd.db"))
	if err != nil {
		t.Fatalf("Open sqlite: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// eachDialect runs fn against PostgreSQL and SQLite.
func eachDialect(t *testing.T, fn func(t *testing.T, s *storage.Store)) {
	t.Helper()
	for _, d := range []struct {
		name string
		open func(*testing.T) *storage.Store
	}{{"postgres", openPostgres}, {"sqlite", openSQLite}} {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			fn(t, d.open(t))
		})
	}
}

const (
	assetA   = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
	assetB   = "bda946b3110fa46fd94346ce3f05f0760f1b9de72e238835bc4d19f9d64f1742"
	programA = "00143a8a3c1aa1e2c7ff8a8e3c7c2a1e0c9c9e2d3b41"
	programB = "0014ab91fd8e2b9d1b5b0b9d7bfa3e1a2b4c5d6e7f80"
)

func mustPool(t *testing.T, s *storage.Store, asset, program string) storage.Pool {
	t.Helper()
	p, _, err := s.EnsurePool(testCtx(t), asset, program)
	if err != nil {
		t.Fatalf("EnsurePool: %v", err)
	}
	return p
}

// hashOf is a distinct 64-hex hash for (tag, i).
func hashOf(tag byte, i int) string { return fmt.Sprintf("%02x%062x", tag, i) }

// chainUTXOs makes n confirmed chain UTXOs for pool p, hashes tagged tag, i from start.
func chainUTXOs(p storage.Pool, tag byte, start, n int) []chain.UTXO {
	out := make([]chain.UTXO, n)
	for i := range out {
		out[i] = chain.UTXO{
			Hash: hashOf(tag, start+i), Asset: p.Asset, Program: p.Program,
			Amount: int64(1000 + start + i), Confirmed: true, TxID: fmt.Sprintf("%064x", start+i),
		}
	}
	return out
}

func mustReconcile(t *testing.T, s *storage.Store, p storage.Pool, seen []chain.UTXO) storage.SyncResult {
	t.Helper()
	res, err := s.ReconcilePool(testCtx(t), p, seen)
	if err != nil {
		t.Fatalf("ReconcilePool: %v", err)
	}
	return res
}

func mustCounts(t *testing.T, s *storage.Store, poolID int64) storage.Counts {
	t.Helper()
	c, err := s.PoolCounts(testCtx(t))
	if err != nil {
		t.Fatalf("PoolCounts: %v", err)
	}
	return c[poolID]
}

func statesOf(t *testing.T, s *storage.Store, hashes ...string) map[string]string {
	t.Helper()
	us, err := s.GetUTXOs(testCtx(t), hashes)
	if err != nil {
		t.Fatalf("GetUTXOs: %v", err)
	}
	out := make(map[string]string, len(us))
	for _, u := range us {
		out[u.Hash] = u.State
	}
	return out
}
