package testenv

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// CallSizes is a go-redis hook that records the largest call a client makes
// during Measure: the elements sent (arguments) plus the elements answered, a
// MULTI ... EXEC block counted as one call (Redis runs it at once). Redis
// serves nobody else while it runs one call, so tests of bulk work bound it.
// Add it with the client's AddHook.
type CallSizes struct {
	mu      sync.Mutex
	on      bool
	largest int
	name    string
}

// DialHook is go-redis's hook of new connections (unchanged).
func (h *CallSizes) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook records single calls.
func (h *CallSizes) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.note(cmd.Name(), callSize(cmd))
		return err
	}
}

// ProcessPipelineHook records the calls of a pipeline, or a transaction.
func (h *CallSizes) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
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

func (h *CallSizes) note(name string, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.on && n > h.largest {
		h.largest, h.name = n, name
	}
}

// Measure runs f and returns the size and the name of the largest call made
// meanwhile.
func (h *CallSizes) Measure(f func()) (int, string) {
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
	case *redis.ZSliceCmd:
		n += 2 * len(c.Val())
	case *redis.Cmd:
		if s, ok := c.Val().([]any); ok {
			n += len(s)
		}
	default:
		n++
	}
	return n
}
