package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/storage"
)

// syncerProc is one `bufferd syncer` of the leadership test and its metrics URL.
type syncerProc struct {
	*proc
	metrics string
}

// metricValue reads one sample of the syncer's /metrics, 0 when absent.
func (s *syncerProc) metricValue(t *testing.T, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(scrapeMetrics(t, s.metrics))
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Three syncers: exactly one leads. kill -9 of the leader: another leads
// within TTL + 1 s with a higher epoch. A leader paused (SIGSTOP) in the middle
// of a write and past its TTL is replaced; after SIGCONT the write it had in
// flight is refused by PostgreSQL (counted in its metrics) and it steps down.
func TestSyncLeaderKilledOrPausedIsReplacedAndFenced(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several processes")
	}
	const ttl = 2 * time.Second
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	lease := prefix + "leader:sync"
	env, dbURL := leaderEnv(t, testenv.RedisURL(), prefix, ttl)
	store, err := storage.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	syncers := startSyncers(t, env, "s1", "s2", "s3")
	// term waits for a term other than the one led by notBy and returns it.
	term := func(notBy string, within time.Duration) storage.LeaderTerm {
		t.Helper()
		var tm storage.LeaderTerm
		testenv.Eventually(t, within, func() (err error) {
			if tm, err = store.CurrentTerm(ctx, "sync"); err == nil && tm.LeaderID == notBy {
				err = fmt.Errorf("no new leader (current %+v)", tm)
			}
			return err
		})
		return tm
	}
	// leaders counts the syncers whose bufferd_sync_leader is 1.
	leaders := func(skip ...string) []string {
		var out []string
	next:
		for id, s := range syncers {
			for _, k := range skip {
				if id == k {
					continue next
				}
			}
			if s.metricValue(t, "bufferd_sync_leader") == 1 {
				out = append(out, id)
			}
		}
		return out
	}

	first := term("", 20*time.Second)
	waitRenewals(t, rdb, lease, 2)
	if l := leaders(); len(l) != 1 || l[0] != first.LeaderID {
		t.Fatalf("leaders %v, want exactly [%s]", l, first.LeaderID)
	}

	// kill -9: no unlock; a standby takes over once the lease runs out.
	_ = syncers[first.LeaderID].cmd.Process.Kill()
	if err := <-syncers[first.LeaderID].exited; err == nil {
		t.Fatal("the killed leader exited cleanly")
	}
	second := term(first.LeaderID, 20*time.Second)
	t.Logf("leader %s (epoch %d) killed; %s leads with epoch %d", first.LeaderID, first.Epoch, second.LeaderID, second.Epoch)
	if second.Epoch <= first.Epoch {
		t.Fatalf("epoch went from %d to %d", first.Epoch, second.Epoch)
	}
	delete(syncers, first.LeaderID)
	paused := syncers[second.LeaderID]
	waitFor(t, "the new leader's metrics", 5*time.Second, func() bool { return paused.metricValue(t, "bufferd_sync_leader") == 1 })

	// Hold the leader's next write in PostgreSQL: its tick expires
	// reservations first, an UPDATE that this share lock blocks.
	lockTx := store.DB().Begin()
	if err := lockTx.Exec(`LOCK TABLE reservations IN SHARE MODE`).Error; err != nil {
		t.Fatal(err)
	}
	defer lockTx.Rollback()
	waitFor(t, "the leader's write to wait on the lock", 5*time.Second, func() bool {
		var n int64
		store.DB().Raw(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query LIKE 'UPDATE reservations%'`).Scan(&n)
		return n == 1
	})
	before := paused.metricValue(t, `bufferd_sync_stale_epoch_writes_total{backend="postgres"}`)
	if err := paused.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	third := term(second.LeaderID, 20*time.Second)
	if third.Epoch <= second.Epoch {
		t.Fatalf("epoch went from %d to %d", second.Epoch, third.Epoch)
	}
	t.Logf("leader %s (epoch %d) paused; %s leads with epoch %d", second.LeaderID, second.Epoch, third.LeaderID, third.Epoch)
	// Let the paused leader's write through, then wake it up.
	if err := lockTx.Commit().Error; err != nil {
		t.Fatal(err)
	}
	if err := paused.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the paused leader to step down", 10*time.Second, func() bool {
		return paused.metricValue(t, "bufferd_sync_leader") == 0
	})
	refused := paused.metricValue(t, `bufferd_sync_stale_epoch_writes_total{backend="postgres"}`) - before
	t.Logf("the paused leader's late writes refused: %v", refused)
	if refused < 1 {
		t.Fatalf("the paused leader's late write was not refused:\n%s", paused.output())
	}
	// The newer term keeps leading, alone, over a few renewals; the deposed
	// one stays a standby.
	waitRenewals(t, rdb, lease, 2)
	if tm, err := store.CurrentTerm(ctx, "sync"); err != nil || tm.Epoch != third.Epoch {
		t.Fatalf("term after the pause: %+v, %v; want epoch %d", tm, err, third.Epoch)
	}
	if l := leaders(); len(l) != 1 || l[0] != third.LeaderID {
		t.Fatalf("leaders %v, want exactly [%s]", l, third.LeaderID)
	}
}

// startSyncers starts one `bufferd syncer` per id, each with its own
// metrics address, and waits until they all answer.
func startSyncers(t *testing.T, env []string, ids ...string) map[string]*syncerProc {
	t.Helper()
	syncers := map[string]*syncerProc{}
	for _, id := range ids {
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		p := start(t, append(env, "BUFFERD_INSTANCE_ID="+id, "BUFFERD_METRICS_ADDR="+addr), "syncer")
		syncers[id] = &syncerProc{proc: p, metrics: "http://" + addr}
	}
	for _, s := range syncers {
		waitHTTP(t, s.metrics+"/livez", 20*time.Second)
	}
	return syncers
}

// waitFor waits up to within for cond to hold.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, within, func() error {
		if !cond() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
}

// waitRenewals waits until the leadership lease at key has been renewed n
// times: its expiry in Redis moved later n times since the first look.
func waitRenewals(t *testing.T, rdb *redis.Client, key string, n int) {
	t.Helper()
	var last int64
	renewed := -1
	testenv.Eventually(t, 30*time.Second, func() error {
		exp, err := rdb.Do(context.Background(), "PEXPIRETIME", key).Int64()
		if err != nil || exp <= 0 {
			return fmt.Errorf("lease %s: expiry %d, %v", key, exp, err)
		}
		if exp > last {
			last, renewed = exp, renewed+1
		}
		if renewed < n {
			return fmt.Errorf("lease %s renewed %d times, want %d", key, renewed, n)
		}
		return nil
	})
}
