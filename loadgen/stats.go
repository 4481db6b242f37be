package loadgen

import (
	"slices"
	"sync"
	"time"
)

// Latencies collects request latencies; safe for concurrent use.
type Latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

// Add records one latency.
func (l *Latencies) Add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// Summary is the distribution of a set of latencies.
type Summary struct {
	Count          int
	P50, P99, P999 time.Duration
	Max            time.Duration
}

// Summary sorts the latencies and returns their quantiles (nearest rank).
func (l *Latencies) Summary() Summary {
	l.mu.Lock()
	d := slices.Clone(l.d)
	l.mu.Unlock()
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	q := func(p float64) time.Duration {
		i := int(p*float64(len(d))+0.999999) - 1
		return d[min(max(i, 0), len(d)-1)]
	}
	return Summary{Count: len(d), P50: q(0.50), P99: q(0.99), P999: q(0.999), Max: d[len(d)-1]}
}
