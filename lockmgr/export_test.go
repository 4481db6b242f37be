package lockmgr

import "time"

// SetWaitPoll makes ReserveWait poll every d and returns what restores the
// default; tests that call it must not run in parallel.
func SetWaitPoll(d time.Duration) func() {
	old := waitPoll
	waitPoll = d
	return func() { waitPoll = old }
}

// Waiters is how many ReserveWait calls of m wait on pool.
func Waiters(m *Manager, pool int64) int {
	m.hub.mu.Lock()
	defer m.hub.mu.Unlock()
	return len(m.hub.waiters[m.keys(pool).Freed])
}

// FreedChannel is the channel a release in pool publishes on.
func FreedChannel(m *Manager, pool int64) string { return m.keys(pool).Freed }
