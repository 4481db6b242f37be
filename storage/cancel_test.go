package storage_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
)

// A reserve whose context ends while the journal checks the grant's load
// (it waits on the pool's row, which a rebuild beginning a new load holds)
// fails with the context's error, never with ErrRebuilding: the pool was not
// reloaded, the caller gave up. Its hold is undone in Redis and the journal
// has no row of it.
func TestReserveContextEndsDuringLoadCheck(t *testing.T) {
	s := openPostgres(t)
	p := mustPool(t, s, assetA, programA)
	rdb, prefix := testenv.Redis(t)
	m := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix, Journal: newJournal(t, s, storage.JournalOptions{})})
	t.Cleanup(func() { _ = m.Close() })
	ctx := testCtx(t)
	load, err := lockmgr.NewLoadID()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.BeginLoad(ctx, p.ID, load); err != nil {
		t.Fatal(err)
	}
	hash := hashOf(1, 1)
	snap := lockmgr.Snapshot{Available: []lockmgr.Item{{Hash: hash, Amount: 5}}, Load: load}
	if err := m.Rebuild(ctx, p.ID, snap); err != nil {
		t.Fatal(err)
	}
	req := lockmgr.Request{PoolID: p.ID, Hashes: []string{hash}, Owner: "o"}

	// Hold the pool's row as a rebuild's BeginLoad does.
	tx := s.DB().WithContext(ctx).Begin()
	if tx.Error != nil {
		t.Fatal(tx.Error)
	}
	t.Cleanup(func() { tx.Rollback() })
	if err := tx.Exec(`SELECT id FROM pools WHERE id = ? FOR UPDATE`, p.ID).Error; err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	res, err := m.Reserve(rctx, req)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, lockmgr.ErrRebuilding) {
		t.Fatalf("reserve whose context ended in the load check: %+v, %v; want the context's error, not ErrRebuilding", res, err)
	}
	waitLockWaiters(t, s, 0) // the journal's statement was cancelled, not left to commit
	tx.Rollback()

	var rows int64
	if err := s.DB().WithContext(ctx).Model(&storage.Reservation{}).Where("pool_id = ?", p.ID).Count(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Fatalf("the journal has %d reservation(s) of the pool, want none", rows)
	}
	again, err := m.Reserve(ctx, req)
	if err != nil || again.Hashes()[0] != hash {
		t.Fatalf("reserve after the failed one: %+v, %v; want its UTXO free again", again, err)
	}
}

// A caller that gives up while its grant is in a batch that other callers
// still wait for learns the batch's outcome, not "failed": the batch commits
// the grant, and a caller told it failed would undo in Redis a hold the
// journal keeps live. Its write is either journalled and acknowledged, or
// neither.
func TestRecordAbandonedInARunningBatchTellsItsOutcome(t *testing.T) {
	s := openPostgres(t)
	ctx := testCtx(t)
	p1 := mustPool(t, s, assetA, programA)
	p2 := mustPool(t, s, assetB, programA)
	j := newJournal(t, s, storage.JournalOptions{})

	lockPool := func(id int64) (release func()) {
		tx := s.DB().WithContext(ctx).Begin()
		if tx.Error != nil {
			t.Fatal(tx.Error)
		}
		if err := tx.Exec(`SELECT id FROM pools WHERE id = ? FOR UPDATE`, id).Error; err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		release = func() { once.Do(func() { tx.Rollback() }) }
		t.Cleanup(release)
		return release
	}
	release1, release2 := lockPool(p1.ID), lockPool(p2.ID)

	// A first grant waits on pool 1; two more queue behind it for pool 2.
	first := make(chan error, 1)
	go func() { first <- j.Record(ctx, lockRes(p1.ID, 1, hashOf(1, 1))) }()
	waitLockWaiters(t, s, 1)
	a, b := lockRes(p2.ID, 1, hashOf(2, 1)), lockRes(p2.ID, 2, hashOf(2, 2))
	actx, cancelA := context.WithCancel(ctx)
	defer cancelA()
	aErr, bErr := make(chan error, 1), make(chan error, 1)
	go func() { aErr <- j.Record(actx, a) }()
	go func() { bErr <- j.Record(ctx, b) }()
	waitFor(t, "two grants queued", func() bool { return j.Pending() == 2 })

	// The first commits; a and b go together and wait on pool 2.
	release1()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	waitLockWaiters(t, s, 1)
	cancelA() // a's caller gives up; b's still waits, so the batch goes on
	release2()
	if err := <-bErr; err != nil {
		t.Fatalf("b: %v", err)
	}
	errA := <-aErr
	_, getErr := s.GetReservation(ctx, a.ID)
	journalled := getErr == nil
	if (errA == nil) != journalled {
		t.Fatalf("a's caller was told %v, and the journal has it: %v (lookup: %v)", errA, journalled, getErr)
	}
}
