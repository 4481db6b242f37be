package storage_test

import (
	"testing"
	"time"

	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/testenv"
)

// The session settings reach PostgreSQL: the name shows in pg_stat_activity
// and a transaction left idle past the timeout is ended by the server.
func TestSessionSettings(t *testing.T) {
	ctx := testCtx(t)
	url := testenv.Postgres(t)
	if err := storage.MigrateUp(ctx, url); err != nil {
		t.Fatal(err)
	}
	s, err := storage.Open(ctx, url, storage.WithApplicationName("bufferd-syncer s1"),
		storage.WithIdleInTransactionTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	var name, timeout string
	if err := s.DB().Raw(`SELECT current_setting('application_name'), current_setting('idle_in_transaction_session_timeout')`).Row().Scan(&name, &timeout); err != nil {
		t.Fatal(err)
	}
	if name != "bufferd-syncer s1" || timeout != "200ms" {
		t.Fatalf("application_name %q, idle_in_transaction_session_timeout %q", name, timeout)
	}
	tx := s.DB().Begin()
	if err := tx.Exec(`SELECT 1`).Error; err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := tx.Exec(`SELECT 1`).Error; err == nil {
		t.Fatal("a transaction idle past the timeout was not ended")
	}
	tx.Rollback()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("the store does not recover its pool: %v", err)
	}
}
