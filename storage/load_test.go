package storage_test

import (
	"errors"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
)

// A grant's journal write that read the pool's old load before a rebuild's
// BeginLoad, and commits after it, must be in the snapshot the rebuild reads
// once BeginLoad returns: else a grant the client was told it holds is not
// restored. The grant's write is held up by a transaction that has a row of
// its id, not yet committed, while the rebuild runs.
func TestBeginLoadWaitsForAGrantThatReadTheOldLoad(t *testing.T) {
	t.Parallel()
	s := openPostgres(t)
	ctx := testCtx(t)
	p := mustPool(t, s, assetA, programA)
	if err := s.BeginLoad(ctx, p.ID, "load-1"); err != nil {
		t.Fatal(err)
	}
	j := newJournal(t, s, storage.JournalOptions{})
	grant := lockRes(p.ID, 1, hashOf(4, 1))
	grant.Load = "load-1"

	blocker := s.DB().WithContext(ctx).Begin()
	t.Cleanup(func() { blocker.Rollback() })
	now := time.Now()
	if err := blocker.Create(&storage.Reservation{ID: grant.ID, PoolID: p.ID, Fence: 99, Hashes: hashOf(4, 2),
		State: storage.ResHeld, CreatedAt: now, ExpiresAt: now.Add(time.Minute), UpdatedAt: now}).Error; err != nil {
		t.Fatal(err)
	}
	recorded := make(chan error, 1)
	go func() { recorded <- j.Record(ctx, grant) }()
	// The grant's statement has read the load and waits for the blocker.
	testenv.Eventually(t, 10*time.Second, func() error {
		var n int
		err := s.DB().WithContext(ctx).Raw(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'WITH%'`).Scan(&n).Error
		if err == nil && n == 0 {
			err = errors.New("the grant's statement is not waiting")
		}
		return err
	})

	// The rebuild: a new load, then the snapshot.
	rebuilt := make(chan lockmgr.Snapshot, 1)
	go func() {
		if err := s.BeginLoad(ctx, p.ID, "load-2"); err != nil {
			t.Error(err)
		}
		snap, err := s.LockSnapshot(ctx, p.ID)
		if err != nil {
			t.Error(err)
		}
		rebuilt <- snap
	}()
	var snap lockmgr.Snapshot
	early := false
	select {
	case snap = <-rebuilt: // it did not wait for the grant
		early = true
	case <-time.After(500 * time.Millisecond):
	}
	if err := blocker.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	err := <-recorded
	if !early {
		snap = <-rebuilt
	}
	inSnapshot := false
	for _, r := range snap.Live {
		inSnapshot = inSnapshot || r.ID == grant.ID
	}
	switch {
	case err == nil && !inSnapshot:
		t.Fatalf("the grant was journalled (acknowledged) but the rebuild's snapshot lacks it")
	case err != nil && !errors.Is(err, lockmgr.ErrRebuilding):
		t.Fatalf("record: %v", err)
	case err != nil && inSnapshot:
		t.Fatalf("the grant was refused (%v) but the snapshot has it", err)
	}
}
