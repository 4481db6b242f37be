package storage_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/bufferd/bufferd/storage"
)

func TestTermsOnlyGrow(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		{
			ctx := context.Background()
			if _, err := s.CurrentTerm(ctx, "sync"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("before any term: %v", err)
			}
			var mu sync.Mutex
			seen := map[int64]bool{}
			var wg sync.WaitGroup
			for i := 0; i < 10; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					e, err := s.NewTerm(ctx, "sync", "node")
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						t.Error(err)
						return
					}
					if seen[e] {
						t.Errorf("epoch %d minted twice", e)
					}
					seen[e] = true
				}()
			}
			wg.Wait()
			e, err := s.NewTerm(ctx, "sync", "other")
			if err != nil || e != 11 {
				t.Fatalf("11th term: %d %v", e, err)
			}
			cur, err := s.CurrentTerm(ctx, "sync")
			if err != nil || cur.Epoch != 11 || cur.LeaderID != "other" {
				t.Fatalf("current: %+v %v", cur, err)
			}
			if e, err := s.NewTerm(ctx, "crawler", "node"); err != nil || e != 1 {
				t.Fatalf("another job starts at 1: %d %v", e, err)
			}
		}
	})
}
