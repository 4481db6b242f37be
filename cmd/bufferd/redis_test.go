package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-redsync/redsync/v4"
	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/config"
	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
)

// connectRedis runs newRedis on url and closes the connections when the test ends.
func connectRedis(t *testing.T, url string) *redisConns {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conns, err := newRedis(ctx, &config.Config{RedisURL: url})
	if err != nil {
		t.Fatalf("newRedis(%s): %v", url, err)
	}
	t.Cleanup(conns.Close)
	return conns
}

// newRedisFails runs newRedis on url and returns its error, failing the test
// when it connects.
func newRedisFails(t *testing.T, url string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conns, err := newRedis(ctx, &config.Config{RedisURL: url})
	if err == nil {
		conns.Close()
		t.Fatalf("newRedis(%s) connected, want an error", url)
	}
	return err
}

// reserveInPools loads three UTXOs into each of pools 1 to 3 (three hash
// tags: on a cluster, several slots) through the reservation scripts,
// reserves one of each pool, and takes and releases a leadership mutex.
func reserveInPools(t *testing.T, conns *redisConns) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := lockmgr.New(conns.data, lockmgr.Options{Prefix: testenv.RandomName("t") + ":"})
	for pool := int64(1); pool <= 3; pool++ {
		items := []lockmgr.Item{{Hash: fmt.Sprintf("%064x", pool*10+1), Amount: 1}, {Hash: fmt.Sprintf("%064x", pool*10+2), Amount: 2},
			{Hash: fmt.Sprintf("%064x", pool*10+3), Amount: 3}}
		if err := m.LoadAvailable(ctx, pool, items); err != nil {
			t.Fatalf("load pool %d: %v", pool, err)
		}
		r, err := m.Reserve(ctx, lockmgr.Request{PoolID: pool, Amount: 2})
		if err != nil {
			t.Fatalf("reserve in pool %d: %v", pool, err)
		}
		if len(r.Items) != 1 || r.Items[0].Amount != 2 {
			t.Fatalf("pool %d: reserved %+v, want the UTXO of amount 2", pool, r.Items)
		}
		if free, held, err := m.PoolCounts(ctx, pool); err != nil || free != 2 || held != 1 {
			t.Fatalf("pool %d: free %d held %d (%v), want 2 and 1", pool, free, held, err)
		}
	}
	mu := conns.Mutexes().NewMutex(testenv.RandomName("mutex-"), redsync.WithExpiry(5*time.Second))
	if err := mu.LockContext(ctx); err != nil {
		t.Fatalf("leadership mutex: %v", err)
	}
	if ok, err := mu.UnlockContext(ctx); !ok || err != nil {
		t.Fatalf("unlock the leadership mutex: %v, %v", ok, err)
	}
}

// A Redis Cluster whose nodes need a password: newRedis reads the seeds' URLs
// with redis.ParseClusterURL, so the cluster client authenticates (the
// client built from bare addresses failed with NOAUTH), and the reservation
// scripts run on keys of several slots.
func TestRedisClusterWithPassword(t *testing.T) {
	t.Parallel()
	const pw = "cluster-s3cret"
	c := testenv.StartRedisCluster(t, 3, "--requirepass", pw, "--masterauth", pw)
	urls := func(userinfo string) string {
		var us []string
		for _, a := range c.Addrs() {
			us = append(us, "redis://"+userinfo+a+"/0")
		}
		return strings.Join(us, ",")
	}
	conns := connectRedis(t, urls(":"+pw+"@"))
	if _, ok := conns.data.(*redis.ClusterClient); !ok || len(conns.quorum) != 1 {
		t.Fatalf("data %T with %d quorum members, want a cluster client alone", conns.data, len(conns.quorum))
	}
	reserveInPools(t, conns)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 20; i++ {
		key := fmt.Sprintf("k%d", i)
		if err := conns.data.Set(ctx, key, i, time.Minute).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
	}
	for _, n := range c.Nodes() {
		if size, err := n.Client().DBSize(ctx).Result(); err != nil || size == 0 {
			t.Errorf("node %s holds %d keys (%v): the keys are not spread", n.Addr(), size, err)
		}
	}

	if err := newRedisFails(t, urls("")); !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("without the password: %v, want NOAUTH", err)
	}
	mixed := urls(":"+pw+"@") + ",redis://:other@" + c.Addrs()[0]
	if err := newRedisFails(t, mixed); !errors.Is(err, errRedisURL) {
		t.Errorf("seeds with different passwords: %v, want errRedisURL", err)
	}
	db2 := urls(":"+pw+"@") + ",redis://:" + pw + "@" + c.Addrs()[1] + "/2"
	if err := newRedisFails(t, db2); !errors.Is(err, errRedisURL) {
		t.Errorf("a seed naming database 2: %v, want errRedisURL", err)
	}
}

// One URL is one server (its password used); several independent servers are
// the Redlock quorum, the first holding the reservations.
func TestRedisStandaloneAndQuorum(t *testing.T) {
	t.Parallel()
	const pw = "single-s3cret"
	one := testenv.StartRedis(t, "--requirepass", pw)
	conns := connectRedis(t, "redis://:"+pw+"@"+one.Addr()+"/0")
	if len(conns.quorum) != 1 || conns.quorum[0] != conns.data {
		t.Fatalf("one server: %d quorum members", len(conns.quorum))
	}
	reserveInPools(t, conns)

	servers := []*testenv.RedisServer{testenv.StartRedis(t), testenv.StartRedis(t), testenv.StartRedis(t)}
	quorum := connectRedis(t, servers[0].URL()+","+servers[1].URL()+","+servers[2].Addr())
	if len(quorum.quorum) != 3 || quorum.quorum[0] != quorum.data {
		t.Fatalf("three servers: %d quorum members, want 3 with the data client first", len(quorum.quorum))
	}
	reserveInPools(t, quorum)
	ctx := context.Background()
	for i, s := range servers {
		if n, err := s.Client().DBSize(ctx).Result(); err != nil || (i == 0) != (n > 1) {
			t.Errorf("server %d holds %d keys (%v): only the first holds the reservations", i, n, err)
		}
	}
}

// Redis Sentinel: newRedis finds the master through the sentinel (each with
// its own password), writes reach the master and its replica, and after a
// failover the same connections write to the promoted replica.
func TestRedisSentinel(t *testing.T) {
	t.Parallel()
	const pw, sentinelPW, name = "data-s3cret", "sentinel-s3cret", "bufferd-master"
	auth := []string{"--requirepass", pw, "--masterauth", pw}
	// The master sends its first copy to the replica at once, not after 5 s.
	master := testenv.StartRedis(t, append(auth, "--repl-diskless-sync-delay", "0")...)
	replica := testenv.StartRedis(t, append(auth, "--replicaof", "127.0.0.1", fmt.Sprint(master.Port()))...)
	sentinel := testenv.StartRedisSentinel(t, master, name, "--requirepass", sentinelPW)
	url := fmt.Sprintf("redis+sentinel://:%s@%s/%s/0?sentinel_password=%s", pw, sentinel.Addr(), name, sentinelPW)

	conns := connectRedis(t, url)
	if len(conns.quorum) != 1 || conns.quorum[0] != conns.data {
		t.Fatalf("%d quorum members, want the failover client alone", len(conns.quorum))
	}
	reserveInPools(t, conns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conns.data.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := master.Client().Get(ctx, "before").Result(); err != nil || v != "1" {
		t.Fatalf("the master has before=%q (%v), want 1", v, err)
	}
	waitFor(t, "the write to reach the replica", 8*time.Second, func() bool {
		return replica.Client().Get(ctx, "before").Val() == "1"
	})

	if err := newRedisFails(t, strings.Replace(url, sentinelPW, "wrong", 1)); err == nil {
		t.Error("a wrong sentinel password was accepted")
	}

	// Failover: the sentinel promotes the replica once it has seen it.
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr(), Password: sentinelPW})
	t.Cleanup(func() { _ = sc.Close() })
	waitFor(t, "the sentinel to see the replica", 10*time.Second, func() bool {
		r, err := sc.Replicas(ctx, name).Result()
		return err == nil && len(r) == 1
	})
	if err := sc.Failover(ctx, name).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	waitFor(t, "the replica to be promoted", 10*time.Second, func() bool {
		role, err := replica.Client().Do(ctx, "ROLE").Slice()
		return err == nil && role[0] == "master"
	})
	// With the old master gone, a write can only land on the new one.
	master.Kill()
	waitFor(t, "a write through the same connections after the failover", 5*time.Second, func() bool {
		return conns.data.Set(ctx, "after", "2", 0).Err() == nil
	})
	if v, err := replica.Client().Get(ctx, "after").Result(); err != nil || v != "2" {
		t.Fatalf("the new master has after=%q (%v), want 2", v, err)
	}
}

// The sentinel URL form: addresses (26379 by default), master name, database,
// the data and sentinel credentials, and clear errors for what does not fit.
func TestParseSentinelURL(t *testing.T) {
	opt, err := parseSentinelURL("rediss+sentinel://u:p%40ss@s1,[::1]:26380 , s3:1234/mymaster/2?sentinel_password=sp&dial_timeout=3s")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"s1:26379", "[::1]:26380", "s3:1234"}
	if fmt.Sprint(opt.SentinelAddrs) != fmt.Sprint(want) || opt.MasterName != "mymaster" || opt.DB != 2 ||
		opt.Username != "u" || opt.Password != "p@ss" || opt.SentinelPassword != "sp" || opt.SentinelUsername != "" ||
		opt.TLSConfig == nil || opt.DialTimeout != 3*time.Second {
		t.Fatalf("parsed %+v", opt)
	}
	opt, err = parseSentinelURL("redis+sentinel://127.0.0.1:26379/m")
	if err != nil || opt.MasterName != "m" || opt.DB != 0 || opt.Password != "" || opt.TLSConfig != nil {
		t.Fatalf("parsed %+v, %v", opt, err)
	}
	for _, bad := range []string{
		"redis+sentinel://s1:26379",           // no master
		"redis+sentinel://s1:26379/",          // no master
		"redis+sentinel://s1:26379/m/x",       // db not a number
		"redis+sentinel://s1:26379/m/0/extra", // too long a path
		"redis+sentinel://s1:port/m",          // bad port
		"redis+sentinel://s1:26379,,s2/m",     // empty address
		"redis+sentinel://s1:26379/m?nosuchoption=1",
	} {
		if _, err := parseSentinelURL(bad); !errors.Is(err, errRedisURL) {
			t.Errorf("parseSentinelURL(%q): %v, want errRedisURL", bad, err)
		}
	}
	if !isSentinelURL("redis+sentinel://h/m") || !isSentinelURL("rediss+sentinel://h/m") || isSentinelURL("redis://h") {
		t.Error("isSentinelURL")
	}
}
