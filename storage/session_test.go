package storage_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/storage"
)

// The session settings reach PostgreSQL: the name shows in pg_stat_activity
// and a transaction left idle past the timeout is ended by the server.
func TestSessionSettings(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, err := storage.Open(ctx, migrated.Postgres(t), storage.WithApplicationName("bufferd-syncer s1"),
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
	var pid int
	if err := tx.Raw(`SELECT pg_backend_pid()`).Row().Scan(&pid); err != nil {
		t.Fatal(err)
	}
	// The server ends the idle transaction's session.
	testenv.Eventually(t, 10*time.Second, func() error {
		var n int
		if err := s.DB().Raw(`SELECT count(*) FROM pg_stat_activity WHERE pid = ?`, pid).Row().Scan(&n); err != nil || n != 0 {
			return fmt.Errorf("session %d still there (%d) %v", pid, n, err)
		}
		return nil
	})
	if err := tx.Exec(`SELECT 1`).Error; err == nil {
		t.Fatal("a transaction idle past the timeout was not ended")
	}
	tx.Rollback()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("the store does not recover its pool: %v", err)
	}
}
