package leader_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/lockmgr/leader"
	"github.com/bufferd/bufferd/testenv"
)

// epochCounter mints epochs in memory (bufferd mints them in PostgreSQL).
type epochCounter struct {
	mu sync.Mutex
	n  int64
}

func (c *epochCounter) NewTerm(context.Context, string, string) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n, nil
}

type termLog struct {
	mu      sync.Mutex
	leading atomic.Int32
	overlap atomic.Bool
	starts  []leader.Term
	started chan leader.Term
}

// lead is the job: it records its term and runs until the term ends.
func (l *termLog) lead(ctx context.Context, t leader.Term) {
	if l.leading.Add(1) > 1 {
		l.overlap.Store(true)
	}
	l.mu.Lock()
	l.starts = append(l.starts, t)
	l.mu.Unlock()
	l.started <- t
	<-ctx.Done()
	l.leading.Add(-1)
}

func TestOneLeaderAndFastHandover(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	rs := redsync.New(goredis.NewPool(rdb))
	epochs := &epochCounter{}
	log := &termLog{started: make(chan leader.Term, 10)}
	const ttl = 1500 * time.Millisecond
	ctxs := map[string]context.CancelFunc{}
	var wg sync.WaitGroup
	for _, id := range []string{"a", "b", "c"} {
		ctx, cancel := context.WithCancel(context.Background())
		ctxs[id] = cancel
		e := &leader.Elector{Mutexes: rs, Job: "sync", Prefix: prefix, LeaderID: id, TTL: ttl, Epochs: epochs}
		wg.Add(1)
		go func() { defer wg.Done(); _ = e.Run(ctx, log.lead) }()
	}
	defer func() {
		for _, c := range ctxs {
			c()
		}
		wg.Wait()
	}()
	first := <-log.started
	// Several renewals pass with one leader.
	time.Sleep(2 * ttl)
	select {
	case t2 := <-log.started:
		t.Fatalf("a second term %+v began while %+v led", t2, first)
	default:
	}
	// The leader stops: it releases the mutex and a standby leads soon, well
	// before the TTL would have run out.
	stopped := time.Now()
	ctxs[first.LeaderID]()
	next := <-log.started
	took := time.Since(stopped)
	t.Logf("handover from %s to %s took %s", first.LeaderID, next.LeaderID, took.Round(time.Millisecond))
	if next.LeaderID == first.LeaderID || next.Epoch <= first.Epoch {
		t.Fatalf("next term %+v after %+v", next, first)
	}
	if took > ttl/2 {
		t.Fatalf("handover took %s, want well under the %s TTL", took, ttl)
	}
	if log.overlap.Load() {
		t.Fatal("two leaders at once")
	}
}

func TestLeaderStopsWhenItCannotRenew(t *testing.T) {
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	const ttl = 1500 * time.Millisecond
	e := &leader.Elector{Mutexes: redsync.New(goredis.NewPool(rdb)), Job: "sync", LeaderID: "a", TTL: ttl, Epochs: &epochCounter{}}
	log := &termLog{started: make(chan leader.Term, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended := make(chan time.Time, 10)
	go func() {
		_ = e.Run(ctx, func(ctx context.Context, t leader.Term) {
			log.lead(ctx, t)
			ended <- time.Now()
		})
	}()
	<-log.started
	time.Sleep(ttl / 2)
	paused := time.Now()
	srv.Stop() // SIGSTOP: renewals hang, then fail
	defer srv.Cont()
	select {
	case at := <-ended:
		took := at.Sub(paused)
		t.Logf("leader stopped %s after Redis was paused (ttl %s)", took.Round(time.Millisecond), ttl)
		if took > ttl {
			t.Fatalf("leader kept leading %s after it could no longer renew (ttl %s)", took, ttl)
		}
	case <-time.After(3 * ttl):
		t.Fatal("leader never stopped while Redis was paused")
	}
}
