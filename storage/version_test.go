package storage_test

import (
	"testing"

	"github.com/bufferd/bufferd/storage"
)

// utxoVersion reads pool's UTXO version, failing the test where there is none.
func utxoVersion(t *testing.T, s *storage.Store, poolID int64) int64 {
	t.Helper()
	v, ok, err := s.UTXOVersion(testCtx(t), poolID)
	if err != nil || !ok {
		t.Fatalf("UTXOVersion(%d) = %d, %v, %v", poolID, v, ok, err)
	}
	return v
}

// Every statement that changes a pool's UTXO rows moves its version, whoever
// runs it; nothing else does, and another pool's changes do not.
func TestUTXOVersionCountsEveryChangeOfThePool(t *testing.T) {
	t.Parallel()
	s := openPostgres(t)
	ctx := testCtx(t)
	a, b := mustPool(t, s, assetA, programA), mustPool(t, s, assetA, programB)
	if v := utxoVersion(t, s, a.ID); v != 0 {
		t.Fatalf("new pool at version %d", v)
	}
	seen := chainUTXOs(a, 1, 0, 10)
	mustReconcile(t, s, a, seen)
	v := utxoVersion(t, s, a.ID)
	if v == 0 {
		t.Fatal("inserting the pool's UTXOs left its version at 0")
	}
	step := func(what string, change func() error, moves bool) {
		t.Helper()
		if err := change(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got := utxoVersion(t, s, a.ID)
		if moved := got != v; moved != moves {
			t.Errorf("%s: version %d -> %d, want moved=%v", what, v, got, moves)
		}
		v = got
	}
	step("a reconciliation that changes nothing", func() error { _, err := s.ReconcilePool(ctx, a, seen); return err }, false)
	step("another pool's rows", func() error { _, err := s.ReconcilePool(ctx, b, chainUTXOs(b, 2, 0, 5)); return err }, false)
	step("a UTXO gone from the listing", func() error { _, err := s.ReconcilePool(ctx, a, seen[1:]); return err }, true)
	step("an UPDATE by hand", func() error {
		return s.DB().WithContext(ctx).Exec(`UPDATE utxos SET confirmed = false WHERE hash = ?`, seen[2].Hash).Error
	}, true)
	step("an UPDATE that matches nothing", func() error {
		return s.DB().WithContext(ctx).Exec(`UPDATE utxos SET confirmed = false WHERE hash = 'none'`).Error
	}, false)
	step("a failed transaction's outputs invalidated", func() error {
		_, err := s.FailLineage(ctx, a.ID, txOf(1, 1), []string{seen[3].Hash})
		return err
	}, true)
	step("a DELETE", func() error {
		return s.DB().WithContext(ctx).Exec(`DELETE FROM utxos WHERE hash = ?`, seen[4].Hash).Error
	}, true)

	// A change committed after the version was read shows as a new version:
	// the row lock orders the increments as their transactions commit.
	tx := s.DB().WithContext(ctx).Begin()
	if err := tx.Exec(`UPDATE utxos SET confirmed = true WHERE hash = ?`, seen[2].Hash).Error; err != nil {
		t.Fatal(err)
	}
	before := utxoVersion(t, s, a.ID)
	if err := tx.Commit().Error; err != nil {
		t.Fatal(err)
	}
	if after := utxoVersion(t, s, a.ID); after == before {
		t.Errorf("a change committed after the version was read left it at %d", after)
	}
}

// SQLite (bufferd dev) keeps no version: every sync compares the rows.
func TestUTXOVersionIsUnknownOnSQLite(t *testing.T) {
	t.Parallel()
	s := openSQLite(t)
	p := mustPool(t, s, assetA, programA)
	if _, ok, err := s.UTXOVersion(testCtx(t), p.ID); ok || err != nil {
		t.Fatalf("UTXOVersion on SQLite: ok=%v err=%v", ok, err)
	}
}
