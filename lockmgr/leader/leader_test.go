package leader_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr/leader"
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

// leaseEvents subscribes to the key events of srv's database 0 (started with
// --notify-keyspace-events) and returns the next event on key: "expire" when
// the lease is taken or renewed, "del" when released, "expired" when it ran out.
func leaseEvents(t *testing.T, srv *testenv.RedisServer, key string) func() string {
	t.Helper()
	ps := srv.Client().PSubscribe(context.Background(), "__keyevent@0__:*")
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(context.Background()); err != nil { // the subscription is in place
		t.Fatal(err)
	}
	ch := ps.Channel()
	return func() string {
		t.Helper()
		for {
			select {
			case msg := <-ch:
				if msg.Payload == key {
					return strings.TrimPrefix(msg.Channel, "__keyevent@0__:")
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no event on %s within 10s", key)
			}
		}
	}
}

// nextTerm is the next term begun, failing the test if none begins soon.
func (l *termLog) nextTerm(t *testing.T) leader.Term {
	t.Helper()
	select {
	case term := <-l.started:
		return term
	case <-time.After(10 * time.Second):
		t.Fatal("no term began within 10s")
		return leader.Term{}
	}
}

func TestOneLeaderAndFastHandover(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t, "--notify-keyspace-events", "Egx")
	const lease = "leader:sync"
	next := leaseEvents(t, srv, lease)
	rs := redsync.New(goredis.NewPool(srv.Client()))
	epochs := &epochCounter{}
	log := &termLog{started: make(chan leader.Term, 10)}
	const ttl = 1500 * time.Millisecond
	ctxs := map[string]context.CancelFunc{}
	done := map[string]chan struct{}{}
	for _, id := range []string{"a", "b", "c"} {
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan struct{})
		ctxs[id], done[id] = cancel, ran
		e := &leader.Elector{Mutexes: rs, Job: "sync", LeaderID: id, TTL: ttl, Epochs: epochs}
		go func() { defer close(ran); _ = e.Run(ctx, log.lead) }()
	}
	defer func() {
		for id, c := range ctxs {
			c()
			<-done[id]
		}
	}()
	first := log.nextTerm(t)
	// The lease is taken, then renewed twice, with one leader all along.
	for i := 0; i < 3; i++ {
		if ev := next(); ev != "expire" {
			t.Fatalf("lease event %d of the first term: %s, want expire (taken or renewed)", i, ev)
		}
	}
	select {
	case t2 := <-log.started:
		t.Fatalf("a second term %+v began while %+v led", t2, first)
	default:
	}
	// The leader stops: it releases the lease (del, not expired: no standby
	// waits for the TTL) and a standby takes it.
	ctxs[first.LeaderID]()
	<-done[first.LeaderID]
	if ev := next(); ev != "del" {
		t.Fatalf("the stopped leader's lease: %s, want del (released)", ev)
	}
	second := log.nextTerm(t)
	if second.LeaderID == first.LeaderID || second.Epoch <= first.Epoch {
		t.Fatalf("next term %+v after %+v", second, first)
	}
	if log.overlap.Load() {
		t.Fatal("two leaders at once")
	}
}

func TestLeaderStopsWhenItCannotRenew(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t, "--notify-keyspace-events", "Egx")
	const lease = "leader:sync"
	next := leaseEvents(t, srv, lease)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	const ttl = 1500 * time.Millisecond
	e := &leader.Elector{Mutexes: redsync.New(goredis.NewPool(rdb)), Job: "sync", LeaderID: "a", TTL: ttl, Epochs: &epochCounter{}}
	log := &termLog{started: make(chan leader.Term, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	defer func() { cancel(); <-ran }()
	ended := make(chan time.Time, 10)
	go func() {
		defer close(ran)
		_ = e.Run(ctx, func(ctx context.Context, t leader.Term) {
			log.lead(ctx, t)
			ended <- time.Now()
		})
	}()
	log.nextTerm(t)
	// Right after a renewal, note when the lease runs out (Redis's clock) and
	// pause Redis: renewals hang, then fail.
	for i := 0; i < 2; i++ {
		if ev := next(); ev != "expire" {
			t.Fatalf("lease event %d: %s, want expire (taken or renewed)", i, ev)
		}
	}
	ms, err := srv.Client().Do(context.Background(), "PEXPIRETIME", lease).Int64()
	if err != nil || ms <= 0 {
		t.Fatalf("PEXPIRETIME %s: %d, %v", lease, ms, err)
	}
	expires := time.UnixMilli(ms)
	srv.Stop() // SIGSTOP
	defer srv.Cont()
	select {
	case at := <-ended:
		// The term ends before its lease could pass to another process.
		if !at.Before(expires) {
			t.Fatalf("term ended at %s, its lease ran out at %s", at.Format(time.StampMilli), expires.Format(time.StampMilli))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("leader never stopped while Redis was paused")
	}
}
