package lockmgr_test

import (
	"context"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
)

// sizeHook records the largest Redis call made while it is on: the elements
// sent (arguments) plus the elements answered, a MULTI ... EXEC block counted
// as one call (Redis runs it at once).
type sizeHook struct {
	mu      sync.Mutex
	on      bool
	largest int
	name    string
}

func (h *sizeHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *sizeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.note(cmd.Name(), callSize(cmd))
		return err
	}
}

func (h *sizeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if len(cmds) > 0 && cmds[0].Name() == "multi" {
			total := 0
			for _, c := range cmds {
				total += callSize(c)
			}
			h.note("multi", total)
		} else {
			for _, c := range cmds {
				h.note(c.Name(), callSize(c))
			}
		}
		return err
	}
}

func (h *sizeHook) note(name string, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.on && n > h.largest {
		h.largest, h.name = n, name
	}
}

// measure returns the largest call f made.
func (h *sizeHook) measure(f func()) (int, string) {
	h.mu.Lock()
	h.on, h.largest, h.name = true, 0, ""
	h.mu.Unlock()
	f()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.on = false
	return h.largest, h.name
}

// callSize is a call's arguments and answer, in elements.
func callSize(cmd redis.Cmder) int {
	n := len(cmd.Args())
	switch c := cmd.(type) {
	case *redis.MapStringStringCmd:
		n += 2 * len(c.Val())
	case *redis.ScanCmd:
		keys, _ := c.Val()
		n += len(keys)
	case *redis.StringSliceCmd:
		n += len(c.Val())
	case *redis.Cmd:
		if s, ok := c.Val().([]any); ok {
			n += len(s)
		}
	default:
		n++
	}
	return n
}

// Redis serves nobody else while it runs one command, so the syncer's work
// on a large pool (its chain changes, a rebuild's staging, the sweep's reads
// of what Redis offers and holds) goes in calls of at most 500 UTXOs, each
// about a millisecond of Redis, whatever the pool's size. They were calls of
// up to 5,000 UTXOs, and whole-hash reads: 40-50 ms of Redis on a pool of
// 100,000 (BENCHMARKS.md).
func TestBulkWorkGoesInShortCalls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	hook := &sizeHook{}
	rdb.AddHook(hook)
	m := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix})
	const n, most = 3000, 2500
	its := items(n)
	check := func(what string, f func()) {
		t.Helper()
		if size, name := hook.measure(f); size > most {
			t.Errorf("%s: a call (%s) of %d elements; want at most %d", what, name, size, most)
		}
	}
	check("the chain's changes", func() {
		if err := m.ApplyChain(ctx, 1, its, nil); err != nil {
			t.Fatal(err)
		}
	})
	check("a load", func() {
		if err := m.LoadAvailable(ctx, 1, its); err != nil {
			t.Fatal(err)
		}
	})
	r, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1500})
	if err != nil {
		t.Fatal(err)
	}
	check("what Redis offers", func() {
		offered, err := m.Offered(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(offered) != n {
			t.Errorf("offered %d UTXOs; want %d", len(offered), n)
		}
	})
	check("what Redis holds", func() {
		holds, err := m.Holds(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := holds[r.ID]; len(holds) != 1 || !ok {
			t.Errorf("holds %v; want %s alone", holds, r.ID)
		}
	})
	check("the chain's removals", func() {
		hashes := make([]string, n)
		for i, it := range its {
			hashes[i] = it.Hash
		}
		if err := m.ApplyChain(ctx, 1, nil, hashes); err != nil {
			t.Fatal(err)
		}
	})
}
