package syncer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestBackfillLogsItsProgress(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	prog := program("progress")
	if _, err := f.chain.AddUTXOs(asset, prog, amounts(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(12); err != nil {
		t.Fatal(err)
	}
	store := freshStore(t)
	rdb, prefix := testenv.Redis(t)
	locks := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix})
	pool, _, err := store.EnsurePool(ctx, asset, prog, storage.PoolOptions{FromHeight: 1})
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	r := syncer.Jobs{Store: store, Locks: locks, Chain: chain.NewBytomd(f.url),
		Rebuild:  syncer.NewRebuilder(store, locks, rdb, prefix, nil),
		Interval: time.Hour, MaxBackoff: time.Hour, Log: slog.New(slog.NewJSONHandler(&logs, nil))}.ForTerm(0)
	r.ChainIndex().Batch, r.ChainIndex().ProgressEvery = 3, time.Nanosecond
	for i := 0; ; i++ {
		if _, err := r.ChainIndex().Pass(ctx); err != nil {
			t.Fatal(err)
		}
		if p, err := store.GetPool(ctx, pool.ID); err != nil {
			t.Fatal(err)
		} else if p.SyncedAt != nil {
			break
		}
		if i == 20 {
			t.Fatal("the backfill does not reach the tip")
		}
	}
	var progress []string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == "index backfill" {
			if rec["progress"] == nil || rec["tip"] == nil || rec["behind"] == nil {
				t.Errorf("progress line without progress, tip or behind: %s", line)
			}
			progress = append(progress, rec["progress"].(string))
		}
	}
	if len(progress) < 3 || progress[len(progress)-1] != "100.0%" {
		t.Fatalf("progress lines %v, want one a batch ending at 100%%:\n%s", progress, logs.String())
	}
}

func TestRebuildWatchLogsItsProgress(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFixture(t)
	pools := []int64{f.syncedPool(t, "watch-progress-1", 2).ID, f.syncedPool(t, "watch-progress-2", 2).ID}
	iter := f.rdb.Scan(ctx, 0, f.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		f.rdb.Del(ctx, iter.Val())
	}
	var logs lockedBuffer
	rb := syncer.NewRebuilder(f.store, f.locks, f.rdb, f.prefix, slog.New(slog.NewJSONHandler(&logs, nil)))
	rb.SetProgressEvery(time.Nanosecond)
	go rb.Watch(ctx, time.Hour)
	testenv.Eventually(t, 20*time.Second, func() error {
		if !strings.Contains(logs.String(), `"progress":"2/2 pools","rebuilt":2`) {
			return fmt.Errorf("no progress line for the 2 pools rebuilt:\n%s", logs.String())
		}
		return nil
	})
	for _, id := range pools {
		if loaded, err := f.locks.Loaded(ctx, id); err != nil || !loaded {
			t.Fatalf("pool %d not rebuilt: %v", id, err)
		}
	}
	if n := strings.Count(logs.String(), `"msg":"rebuilding pool state in redis"`); n != 2 {
		t.Fatalf("%d start lines, want one a pool:\n%s", n, logs.String())
	}
}
