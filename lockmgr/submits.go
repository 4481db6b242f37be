package lockmgr

import (
	"context"
	"strconv"
	"strings"
)

// WatchSubmits reports the pools in which a reservation was submitted, so the
// leading syncer can sync them at once instead of at its next tick. The channel
// is closed when ctx ends. A slow reader misses nothing that matters: a pool
// already queued is not queued twice.
func (m *Pools) WatchSubmits(ctx context.Context) <-chan int64 {
	out := make(chan int64, 64)
	ps := m.rdb.PSubscribe(ctx, m.prefix+"*:submitted")
	go func() {
		defer close(out)
		defer func() { _ = ps.Close() }()
		msgs := ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case msg, ok := <-msgs:
				if !ok {
					return
				}
				if pool, ok := poolOfChannel(m.prefix, msg.Channel); ok {
					select {
					case out <- pool:
					default:
					}
				}
			}
		}
	}()
	return out
}

// poolOfChannel reads the pool id out of "<prefix>{p<id>}:<event>".
func poolOfChannel(prefix, channel string) (int64, bool) {
	rest, ok := strings.CutPrefix(channel, prefix+"{p")
	if !ok {
		return 0, false
	}
	id, _, ok := strings.Cut(rest, "}")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(id, 10, 64)
	return n, err == nil && n > 0
}
