package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/storage"
)

// With three independent Redis servers in BUFFERD_REDIS_URL the sync
// leadership is a Redlock quorum: someone leads while one server is down,
// nobody leads when a majority is gone, and a leader is elected again with a
// higher epoch once a majority is back. (With one server down the term may
// still change hands: a leader holding the lock on exactly two servers loses
// its renewal when the standby's attempt holds the third one for a moment,
// and a leader steps down on its first failed renewal.)
func TestSyncLeadershipNeedsARedisQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several processes")
	}
	const ttl = 2 * time.Second
	ctx := context.Background()
	servers := []*testenv.RedisServer{testenv.StartRedis(t), testenv.StartRedis(t), testenv.StartRedis(t)}
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.URL()
	}
	env, dbURL := leaderEnv(t, strings.Join(urls, ","), "", ttl)
	store, err := storage.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	syncers := startSyncers(t, env, "q1", "q2")
	for _, s := range syncers {
		s.waitLine(t, "Redlock quorum", 20*time.Second)
	}
	leading := func() []string {
		var out []string
		for id, s := range syncers {
			if s.metricValue(t, "bufferd_sync_leader") == 1 {
				out = append(out, id)
			}
		}
		return out
	}
	waitFor(t, "a leader", 20*time.Second, func() bool { return len(leading()) == 1 })
	first, err := store.CurrentTerm(ctx, "sync")
	if err != nil {
		t.Fatal(err)
	}

	// One of three down: a majority is still there to lead with.
	servers[2].Kill()
	// The lease (under bufferd's default key prefix) is renewed on the two left.
	lease, err := servers[0].Client().Keys(ctx, "*leader:sync").Result()
	if err != nil || len(lease) != 1 {
		t.Fatalf("leases on the first server: %v, %v", lease, err)
	}
	waitRenewals(t, servers[0].Client(), lease[0], 2)
	waitFor(t, "one leader with 2 of 3 servers", 20*time.Second, func() bool { return len(leading()) == 1 })
	if tm, _ := store.CurrentTerm(ctx, "sync"); tm.Epoch != first.Epoch {
		t.Logf("the term changed hands with 2 of 3 servers: %s/%d -> %s/%d", first.LeaderID, first.Epoch, tm.LeaderID, tm.Epoch)
		first = tm
	}

	// Two of three down: no majority, nobody may lead.
	servers[1].Kill()
	waitFor(t, "the leader to step down without a majority", 20*time.Second, func() bool { return len(leading()) == 0 })
	time.Sleep(ttl) // a lease's time in which a leader without a majority would show: nothing to wait on
	if l := leading(); len(l) != 0 {
		t.Fatalf("with 1 of 3 servers: leaders %v, want none", l)
	}

	// A majority again: a new term.
	servers[1].Restart()
	waitFor(t, "a leader once a majority is back", 4*ttl, func() bool { return len(leading()) == 1 })
	next, err := store.CurrentTerm(ctx, "sync")
	if err != nil || next.Epoch <= first.Epoch {
		t.Fatalf("term after the majority came back: %+v, %v; want epoch > %d", next, err, first.Epoch)
	}
	t.Logf("terms: %s/%d, then %s/%d after the quorum came back", first.LeaderID, first.Epoch, next.LeaderID, next.Epoch)
}
