package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
)

func TestThreeAPIsGrantEachUTXOOnce(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackConfig{APIs: 3, UTXOs: 100})
	grantEachOnce(t, s, 400)
}

func TestRedisClusterConcurrency(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node Redis Cluster and a whole deployment")
	}
	t.Parallel()
	c := testenv.StartRedisCluster(t, 3)
	urls := make([]string, 0, len(c.Addrs()))
	for _, a := range c.Addrs() {
		urls = append(urls, "redis://"+a)
	}
	s := startStack(t, stackConfig{APIs: 2, UTXOs: 30, RedisURL: strings.Join(urls, ",")})
	grantEachOnce(t, s, 120)
}

// grantEachOnce sends n concurrent count:1 reserves spread round-robin over the
// stack's APIs, released together, and checks that exactly one per UTXO of the
// pool was granted (distinct hashes and fences), that every other answer is
// 409 no_utxo_available, and that the journal holds exactly the grants.
func grantEachOnce(t *testing.T, s *stack, n int) {
	t.Helper()
	pool := len(s.hashes)
	replies := make([]reply, n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	gate := make(chan struct{})
	began := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-gate
			replies[i] = reserve(ctx, s.api(i), reserveReq{Pool: s.pool, Count: 1, TTLSeconds: 600, Owner: fmt.Sprintf("c%d", i)})
		}(i)
	}
	close(gate)
	wg.Wait()
	elapsed := time.Since(began)

	known := s.hashSet()
	byHash := map[string]string{}
	byFence := map[int64]string{}
	granted := map[string]reservation{}
	var created, conflict int
	for i, r := range replies {
		switch {
		case r.Err == nil && r.Status == http.StatusCreated:
			created++
			h := r.hash()
			switch {
			case h == "" || !known[h]:
				t.Errorf("reply %d via %s: want one utxo of the pool, got %s", i, s.api(i), r)
			case byHash[h] != "":
				t.Errorf("utxo %s granted twice: to %s and %s", h, byHash[h], r.Res.ID)
			}
			if prev := byFence[r.Res.Fence]; prev != "" || r.Res.Fence <= 0 {
				t.Errorf("fence %d of %s not unique and positive (also %s)", r.Res.Fence, r.Res.ID, prev)
			}
			if r.Res.State != "held" || r.Res.Pool != s.pool || len(r.Res.ID) < 32 {
				t.Errorf("reply %d: bad reservation %s", i, r)
			}
			byHash[h], byFence[r.Res.Fence] = r.Res.ID, r.Res.ID
			granted[r.Res.ID] = r.Res
		case r.Err == nil && r.Status == http.StatusConflict && r.Code == "no_utxo_available":
			conflict++
		default:
			t.Errorf("reply %d via %s: %s", i, s.api(i), r)
		}
	}
	t.Logf("%d concurrent reserves over %d APIs in %s: %d x 201, %d x 409", n, len(s.apis),
		elapsed.Round(time.Millisecond), created, conflict)
	if created != pool || conflict != n-pool {
		t.Fatalf("got %d x 201 and %d x 409, want exactly %d and %d", created, conflict, pool, n-pool)
	}

	rows := queryJournal(t, s.dbURL)
	rowHashes := map[string]bool{}
	for _, row := range rows {
		g, ok := granted[row.ID]
		switch {
		case !ok:
			t.Errorf("journal row %+v is no reservation a client was granted", row)
		case row.State != "held" || row.PoolID != s.pool || row.Fence != g.Fence || row.Hashes != g.UTXOs[0].Hash:
			t.Errorf("journal row %+v does not match the grant %+v", row, g)
		}
		if rowHashes[row.Hashes] {
			t.Errorf("journal holds %s twice", row.Hashes)
		}
		rowHashes[row.Hashes] = true
	}
	if len(rows) != pool {
		t.Errorf("journal has %d rows, want %d", len(rows), pool)
	}
	fences := make([]int64, 0, len(byFence))
	for f := range byFence {
		fences = append(fences, f)
	}
	sort.Slice(fences, func(i, j int) bool { return fences[i] < fences[j] })
	t.Logf("journal: %d rows, all held, distinct hashes; fences %d..%d", len(rows), fences[0], fences[len(fences)-1])

	// Nothing is left to take: a further reserve on every API is refused.
	for _, a := range s.apis {
		if r := reserve(ctx, a, reserveReq{Pool: s.pool, Count: 1, TTLSeconds: 60}); r.Status != http.StatusConflict {
			t.Errorf("reserve on an exhausted pool via %s: %s", a, r)
		}
	}
}
