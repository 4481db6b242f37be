package lockmgr_test

import (
	"context"
	"errors"
	"testing"

	"github.com/bufferd/bufferd/lockmgr"
)

// Once a leadership term wrote to a pool, an older term's sync writes are
// refused and change nothing; writes outside any term are not fenced.
func TestSyncWritesOfAnOlderTermAreRefused(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	all := items(4)
	if err := m.LoadAvailable(ctx, 1, all[:2]); err != nil {
		t.Fatal(err)
	}
	old, cur := m.Fenced(4), m.Fenced(5)
	if err := old.ApplyChain(ctx, 1, all[2:3], nil); err != nil {
		t.Fatalf("first term's write: %v", err)
	}
	res, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(0)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cur.ApplyChain(ctx, 1, nil, []string{hashOf(1)}); err != nil {
		t.Fatalf("newer term's write: %v", err)
	}
	gen, err := m.SyncGeneration(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}

	// The deposed leader would bring hash 1 back and drop hash 2.
	if err := old.ApplyChain(ctx, 1, all[1:2], []string{hashOf(2)}); !errors.Is(err, lockmgr.ErrStaleEpoch) {
		t.Fatalf("older term's sync: err = %v, want ErrStaleEpoch", err)
	}
	if err := old.EndReservations(ctx, 1, []string{res.ID}); !errors.Is(err, lockmgr.ErrStaleEpoch) {
		t.Fatalf("older term's settle: err = %v, want ErrStaleEpoch", err)
	}
	if g, _ := m.SyncGeneration(ctx, 1); g != gen {
		t.Fatalf("refused sync moved the sync generation %d -> %d", gen, g)
	}
	if _, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(1)}}); !errors.Is(err, lockmgr.ErrUnknownUTXO) {
		t.Fatalf("refused sync brought hash 1 back: %v", err)
	}
	if got, err := m.Get(ctx, 1, res.ID); err != nil || got.State != lockmgr.StateHeld {
		t.Fatalf("refused settle ended the reservation: %+v, %v", got, err)
	}
	free, _, err := m.PoolCounts(ctx, 1)
	if err != nil || free != 1 {
		t.Fatalf("free = %d, %v; want 1 (hash 2)", free, err)
	}

	// The current term and writes outside any term go through.
	if err := cur.EndReservations(ctx, 1, []string{res.ID}); err != nil {
		t.Fatalf("current term's settle: %v", err)
	}
	if err := m.ApplyChain(ctx, 1, all[3:], nil); err != nil {
		t.Fatalf("unfenced sync: %v", err)
	}
}

// A concern taken alone from a fenced Manager carries its epoch: the sync
// writes of an older term are refused through it too.
func TestConcernsOfAFencedManagerCarryItsEpoch(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	all := items(2)
	if err := m.LoadAvailable(ctx, 1, all[:1]); err != nil {
		t.Fatal(err)
	}
	res, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Fenced(5).Pools.ApplyChain(ctx, 1, all[1:], nil); err != nil {
		t.Fatalf("newer term's write: %v", err)
	}
	old := m.Fenced(5).Fenced(4) // a fenced Manager fenced again takes the new epoch
	if err := old.Pools.ApplyChain(ctx, 1, nil, []string{hashOf(1)}); !errors.Is(err, lockmgr.ErrStaleEpoch) {
		t.Fatalf("older term's sync through Pools: err = %v, want ErrStaleEpoch", err)
	}
	if err := old.Reservations.EndReservations(ctx, 1, []string{res.ID}); !errors.Is(err, lockmgr.ErrStaleEpoch) {
		t.Fatalf("older term's settle through Reservations: err = %v, want ErrStaleEpoch", err)
	}
	if got, err := m.Get(ctx, 1, res.ID); err != nil || got.State != lockmgr.StateHeld {
		t.Fatalf("refused settle ended the reservation: %+v, %v", got, err)
	}
}
