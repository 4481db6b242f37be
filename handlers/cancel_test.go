package handlers

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/bufferd/bufferd/storage"
)

// A reserve whose journal write times out while it waits on the pool's row
// (a rebuild beginning a new load holds it) answers 503 unavailable: the
// pool is not being rebuilt as far as anyone knows, so not 503 rebuilding.
// The UTXO is free again afterwards.
func TestReserveJournalTimeoutIsUnavailable(t *testing.T) {
	f := newFixture(t, 5)
	j := storage.NewJournal(f.store, storage.JournalOptions{Timeout: 300 * time.Millisecond})
	t.Cleanup(j.Close)
	f.locks = f.newLocks(j)
	f.app = f.newApp(Config{})
	ctx := testCtx(t)

	tx := f.store.DB().WithContext(ctx).Begin()
	if tx.Error != nil {
		t.Fatal(tx.Error)
	}
	t.Cleanup(func() { tx.Rollback() })
	if err := tx.Exec(`SELECT id FROM pools WHERE id = ? FOR UPDATE`, f.pool.ID).Error; err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"pool":%d,"hashes":[%q]}`, f.pool.ID, f.utxos[0].Hash)
	status, b := f.call(http.MethodPost, "/v1/reservations", body)
	wantError(t, "reserve whose journal write timed out", status, b, http.StatusServiceUnavailable, "unavailable")
	// The journal's statement was cancelled, not left to commit on release.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var waiting int
		err := f.store.DB().WithContext(ctx).Raw(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'WITH%INSERT INTO reservations %'`).
			Scan(&waiting).Error
		if err == nil && waiting == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the journal's statement still waits (%d, %v)", waiting, err)
		}
	}
	tx.Rollback()

	if got := f.reserveOK(body); len(got.UTXOs) != 1 || got.UTXOs[0].Hash != f.utxos[0].Hash {
		t.Fatalf("reserve after the timeout: %+v", got)
	}
}
