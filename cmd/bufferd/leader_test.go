package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
)

type statusBody struct {
	Leader *struct {
		ID    string `json:"id"`
		Epoch int64  `json:"epoch"`
	} `json:"leader"`
}

func leaderOf(t *testing.T, api string) (string, int64) {
	t.Helper()
	resp, err := http.Get(api + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	var s statusBody
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("status: %v: %s", err, b)
	}
	if s.Leader == nil {
		return "", 0
	}
	return s.Leader.ID, s.Leader.Epoch
}

// leaderEnv is the environment of syncers electing a leader with the given
// lease on a fresh, migrated database (returned too) and no chain: the jobs
// fail and back off, but each tick still writes (it expires reservations).
func leaderEnv(t *testing.T, redisURL, prefix string, ttl time.Duration) ([]string, string) {
	t.Helper()
	dbURL := testenv.Postgres(t)
	env := []string{
		"BUFFERD_DATABASE_URL=" + dbURL,
		"BUFFERD_REDIS_URL=" + redisURL,
		"BUFFERD_REDIS_PREFIX=" + prefix,
		"BUFFERD_CHAIN_URL=http://127.0.0.1:1",
		"BUFFERD_SYNC_INTERVAL=100ms",
		"BUFFERD_DATABASE_MAX_CONNS=4",
		"BUFFERD_LEADER_TTL=" + ttl.String(),
	}
	cmd := exec.Command(binary, "migrate", "up")
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v %s", err, out)
	}
	return env, dbURL
}

func TestSyncersElectOneLeaderAndHandOverOnShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several processes")
	}
	rdb, prefix := testenv.Redis(t)
	lease := prefix + "leader:sync"
	env, _ := leaderEnv(t, testenv.RedisURL(), prefix, 3*time.Second)
	env = append(env, "BUFFERD_METRICS_ADDR=127.0.0.1:0")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	start(t, env, "api", "--addr", addr)
	api := "http://" + addr
	waitHTTP(t, api+"/readyz", 20*time.Second)
	syncers := map[string]*proc{}
	for _, id := range []string{"s1", "s2"} {
		syncers[id] = start(t, append(env, "BUFFERD_INSTANCE_ID="+id), "syncer")
	}
	var leader string
	var epoch int64
	testenv.Eventually(t, 15*time.Second, testenv.Is(func() bool {
		leader, epoch = leaderOf(t, api)
		return leader != ""
	}))
	if syncers[leader] == nil {
		t.Fatalf("leader %q is none of the syncers", leader)
	}
	// A few renewals later the same term still leads and the standby never led.
	waitRenewals(t, rdb, lease, 2)
	if l, e := leaderOf(t, api); l != leader || e != epoch {
		t.Fatalf("leader changed from %s/%d to %s/%d without a failure", leader, epoch, l, e)
	}
	for id, p := range syncers {
		if n := strings.Count(p.output(), `"msg":"leading"`); (id == leader) != (n == 1) || n > 1 {
			t.Fatalf("syncer %s logged %d terms (leader %s)", id, n, leader)
		}
	}
	// SIGTERM: the leader releases its lease (renewed a second ago, it
	// would still run 2 s) and the standby takes over.
	token, err := rdb.Get(context.Background(), lease).Result()
	if err != nil {
		t.Fatal(err)
	}
	syncers[leader].stop(t)
	if now, err := rdb.Get(context.Background(), lease).Result(); err == nil && now == token {
		t.Fatal("the stopped leader did not release its lease")
	}
	var next string
	var nextEpoch int64
	testenv.Eventually(t, 10*time.Second, testenv.Is(func() bool {
		next, nextEpoch = leaderOf(t, api)
		return next != leader
	}))
	t.Logf("leader %s (epoch %d) stopped; %s leads with epoch %d", leader, epoch, next, nextEpoch)
	if next == leader || syncers[next] == nil || nextEpoch <= epoch {
		t.Fatalf("after the leader stopped: leader %s epoch %d", next, nextEpoch)
	}
}
