package client

// LoopDone returns a channel closed once the lease's extending goroutine has
// returned; nil if it never started.
func LoopDone(l *Lease) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loopDone
}
