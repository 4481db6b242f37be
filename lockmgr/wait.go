package lockmgr

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
)

// MaxWait bounds how long ReserveWait may wait.
const MaxWait = 30 * time.Second

// waitPoll is how often a waiter retries when no notification arrives (a hold
// that expires is only noticed by the next script touching the pool); a
// variable only for tests.
var waitPoll = 500 * time.Millisecond

// ReserveWait is Reserve that, while nothing fits (ErrNoUTXOAvailable or
// ErrLocked), waits up to wait for a UTXO of the pool to be freed and tries
// again. It is woken by Redis pub/sub on the pool's channel, with a slow poll
// as fallback; waiting leaves nothing in Redis.
func (m *Reservations) ReserveWait(ctx context.Context, r Request, wait time.Duration) (*Reservation, error) {
	if wait > MaxWait {
		wait = MaxWait
	}
	deadline := time.Now().Add(wait)
	var sub chan struct{}
	for {
		res, err := m.Reserve(ctx, r)
		if wait <= 0 || !(errors.Is(err, ErrNoUTXOAvailable) || errors.Is(err, ErrLocked)) {
			return res, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, err
		}
		if sub == nil {
			var cancel func()
			sub, cancel = m.subscribe(r.PoolID)
			defer cancel() //nolint:revive,gocritic // runs once: with sub set, this branch is not taken again
			// Retry once now that we listen: a release may have slipped in between.
			continue
		}
		t := time.NewTimer(min(left, waitPoll))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-sub:
		case <-t.C:
		}
		t.Stop()
	}
}

// hub fans the pools' "freed" notifications of one Redis subscription out to
// the local waiters.
type hub struct {
	listening sync.Once
	mu        sync.Mutex
	waiters   map[string]map[chan struct{}]struct{}
	ps        interface{ Close() error }
	// closed is set by Close: a listener starting after it stops at once.
	closed bool
}

// Close stops the notification subscription of ReserveWait, if any, also one
// whose listener has not subscribed yet (waiters fall back to polling), and
// the endings still waiting for their pool to be loaded (those are left to
// the holds' expiry).
func (m *Reservations) Close() error {
	m.reloads.stop()
	m.hub.mu.Lock()
	defer m.hub.mu.Unlock()
	m.hub.closed = true
	if m.hub.ps == nil {
		return nil
	}
	return m.hub.ps.Close()
}

func (m *Reservations) subscribe(pool int64) (chan struct{}, func()) {
	m.hub.listening.Do(func() { go m.listen() })
	ch := make(chan struct{}, 1)
	name := m.keys(pool).Freed
	m.hub.mu.Lock()
	if m.hub.waiters[name] == nil {
		m.hub.waiters[name] = map[chan struct{}]struct{}{}
	}
	m.hub.waiters[name][ch] = struct{}{}
	m.hub.mu.Unlock()
	return ch, func() {
		m.hub.mu.Lock()
		delete(m.hub.waiters[name], ch)
		if len(m.hub.waiters[name]) == 0 {
			delete(m.hub.waiters, name)
		}
		m.hub.mu.Unlock()
	}
}

// listen holds one pattern subscription for the Manager's lifetime; go-redis
// reconnects it when the connection drops (waiters poll meanwhile).
func (m *Reservations) listen() {
	ps := m.rdb.PSubscribe(context.Background(), m.prefix+"*:freed")
	m.hub.mu.Lock()
	if m.hub.closed {
		m.hub.mu.Unlock()
		_ = ps.Close()
		return
	}
	m.hub.ps = ps
	m.hub.mu.Unlock()
	for msg := range ps.Channel() {
		if !strings.HasSuffix(msg.Channel, ":freed") {
			continue
		}
		m.hub.mu.Lock()
		for ch := range m.hub.waiters[msg.Channel] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		m.hub.mu.Unlock()
	}
}
