package lockmgr

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// reloads runs the background work of endOnceLoaded until the Manager is
// closed.
type reloads struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newReloads() *reloads {
	ctx, cancel := context.WithCancel(context.Background())
	return &reloads{ctx: ctx, cancel: cancel}
}

// stop ends the work and waits for it.
func (r *reloads) stop() {
	r.cancel()
	r.wg.Wait()
}

// endOnceLoaded makes Redis end the reservations ids of pool, which the
// journal has ended, once the pool is loaded: a rebuild whose snapshot was
// taken before their ending reached the journal restores them, and sets the
// pool's ready marker in the same script, so ending them once the marker is
// there ends what it restored (nothing when it restored nothing). It runs in
// the background until the Manager is closed, giving up after MaxTTL, by when
// a hold restored from the journal has run out.
func (m *Reservations) endOnceLoaded(pool int64, ids []string) {
	r := m.reloads
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ready := m.keys(pool).Ready
		giveUp := time.Now().Add(MaxTTL)
		for pause := 50 * time.Millisecond; ; pause = min(2*pause, 2*time.Second) {
			ctx, cancel := context.WithTimeout(r.ctx, followTimeout)
			n, err := m.rdb.Exists(ctx, ready).Result()
			if err == nil && n == 1 {
				err = m.endReservations(ctx, pool, 0, ids)
			}
			cancel()
			if err == nil && n == 1 {
				return
			}
			if time.Now().After(giveUp) {
				slog.Warn("lockmgr: gave up ending reservations a rebuild may have restored", "pool", pool, "reservations", len(ids), "err", err)
				return
			}
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(pause):
			}
		}
	}()
}
