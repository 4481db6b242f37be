package storage_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/storage"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// migrated is the package's migrated database, which tests clone.
var migrated = testenv.NewTemplate(storage.MigrateUp)

// openPostgres returns a store on a fresh, migrated PostgreSQL database.
func openPostgres(t *testing.T) *storage.Store {
	t.Helper()
	return openStore(t, migrated.Postgres(t))
}

// openPrivatePostgres returns a store on a migrated database of a private
// PostgreSQL server, which the test may stop and continue.
func openPrivatePostgres(t *testing.T) (*testenv.PostgresServer, *storage.Store) {
	t.Helper()
	srv := testenv.StartPostgres(t)
	return srv, openStoreAt(t, testenv.CreateDatabase(t, srv.URL()))
}

// openStoreAt migrates the database at url and returns a store on it.
func openStoreAt(t *testing.T, url string) *storage.Store {
	t.Helper()
	ctx := testCtx(t)
	if err := storage.MigrateUp(ctx, url); err != nil {
		t.Fatalf("MigrateUp: %v", err)
	}
	return openStore(t, url)
}

// openStore returns a store on the migrated database at url.
func openStore(t *testing.T, url string) *storage.Store {
	t.Helper()
	s, err := storage.Open(testCtx(t), url)
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
	programC = "0014c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0"
)

func mustPool(t *testing.T, s *storage.Store, asset, program string, opts ...storage.PoolOptions) storage.Pool {
	t.Helper()
	p, _, err := s.EnsurePool(testCtx(t), asset, program, opts...)
	if err != nil {
		t.Fatalf("EnsurePool: %v", err)
	}
	return p
}

// hashOf is a distinct 64-hex hash for (tag, i).
func hashOf(tag byte, i int) string { return fmt.Sprintf("%02x%062x", tag, i) }

// txOf is a distinct 64-hex transaction id for (tag, i).
func txOf(tag byte, i int) string { return fmt.Sprintf("%02x%062x", 0x80|tag, i) }

// chainUTXOs makes n confirmed chain UTXOs for pool p, hashes tagged tag, i from start.
func chainUTXOs(p storage.Pool, tag byte, start, n int) []chain.UTXO {
	out := make([]chain.UTXO, n)
	for i := range out {
		out[i] = chain.UTXO{
			Hash: hashOf(tag, start+i), Asset: p.Asset, Program: p.Program,
			Amount: uint64(1000 + start + i), Confirmed: true, TxID: fmt.Sprintf("%064x", start+i),
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

// statesOf returns the stored chain state of each of hashes.
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

// listedStates returns the state ListUTXOs shows for every UTXO of the pool:
// the chain state, or "reserved" for an available one a live reservation
// holds (reserved is derived, no longer stored).
func listedStates(t *testing.T, s *storage.Store, poolID int64) map[string]string {
	t.Helper()
	out := map[string]string{}
	after := int64(0)
	for {
		us, err := s.ListUTXOs(testCtx(t), poolID, "", after, storage.MaxListLimit)
		if err != nil {
			t.Fatalf("ListUTXOs: %v", err)
		}
		if len(us) == 0 {
			return out
		}
		for _, u := range us {
			out[u.Hash] = u.State
		}
		after = us[len(us)-1].ID
	}
}

// wantStates fails the test unless got has want's states for want's hashes.
func wantStates(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for h, st := range want {
		if got[h] != st {
			t.Errorf("%s: %s is %q, want %q", what, short(h), got[h], st)
		}
	}
}

// short abbreviates a hash for messages.
func short(h string) string {
	if len(h) > 12 {
		return h[:4] + ".." + strings.TrimLeft(h[4:], "0")
	}
	return h
}

func mustUTXO(t *testing.T, s *storage.Store, hash string) storage.UTXO {
	t.Helper()
	us, err := s.GetUTXOs(testCtx(t), []string{hash})
	if err != nil || len(us) != 1 {
		t.Fatalf("GetUTXOs(%s) = %+v, %v", short(hash), us, err)
	}
	return us[0]
}

// output is a pool output for ApplyBlocks or ChangeUTXOs (height 0: pending).
func output(p storage.Pool, hash string, amount uint64, txID string, height int64) storage.IndexedOutput {
	return storage.IndexedOutput{PoolID: p.ID, Hash: hash, Asset: p.Asset, Amount: amount, TxID: txID, Height: height,
		State: storage.StateAvailable}
}

func mustChange(t *testing.T, s *storage.Store, outs []storage.IndexedOutput, changes ...storage.UTXOChange) {
	t.Helper()
	if err := s.ChangeUTXOs(testCtx(t), outs, changes); err != nil {
		t.Fatalf("ChangeUTXOs: %v", err)
	}
}

// spend marks hashes of pool spent by txID at height (0: pending).
func spend(t *testing.T, s *storage.Store, poolID int64, txID string, height int64, hashes ...string) {
	t.Helper()
	changes := make([]storage.UTXOChange, len(hashes))
	for i, h := range hashes {
		changes[i] = storage.UTXOChange{PoolID: poolID, Hash: h, State: storage.StateSpent, SpentTx: txID, SpentHeight: height}
	}
	mustChange(t, s, nil, changes...)
}

// setState sets the chain state of hashes of pool (available clears the spend).
func setState(t *testing.T, s *storage.Store, poolID int64, state string, hashes ...string) {
	t.Helper()
	changes := make([]storage.UTXOChange, len(hashes))
	for i, h := range hashes {
		changes[i] = storage.UTXOChange{PoolID: poolID, Hash: h, State: state}
	}
	mustChange(t, s, nil, changes...)
}

// block is an IndexedBlock at height whose hash is derived from (tag, height).
func block(tag byte, height int64) storage.IndexedBlock {
	return storage.IndexedBlock{Header: storage.BlockHeader{Height: height, Hash: blockHash(tag, height),
		PreviousHash: blockHash(tag, height-1), Time: time.Unix(1_700_000_000+height, 0).UTC()}}
}

func blockHash(tag byte, height int64) string { return fmt.Sprintf("b%x%062x", tag, height) }

func mustApply(t *testing.T, s *storage.Store, pools []int64, blocks ...storage.IndexedBlock) storage.Touched {
	t.Helper()
	touched, err := s.ApplyBlocks(testCtx(t), pools, blocks)
	if err != nil {
		t.Fatalf("ApplyBlocks: %v", err)
	}
	return touched
}

// lockRow locks the reservation row id in a transaction of its own, which
// the caller rolls back.
func lockRow(t *testing.T, s *storage.Store, id string) *gorm.DB {
	t.Helper()
	tx := s.DB().WithContext(testCtx(t)).Begin()
	if err := tx.Exec(`SELECT 1 FROM reservations WHERE id = ? FOR UPDATE`, id).Error; err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	return tx
}

// waitForLockWait returns once a session of s's database waits for a lock.
func waitForLockWait(t *testing.T, s *storage.Store, what string) {
	t.Helper()
	waitFor(t, what, func() bool {
		var n int
		err := s.DB().WithContext(testCtx(t)).Raw(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n).Error
		return err == nil && n >= 1
	})
}
