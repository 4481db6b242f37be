package bench

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// client is one simulated user: a goroutine with its own API replica,
// randomness and recorder.
type client struct {
	id  int
	api *peer
	rng *rand.Rand
	rec *recorder
}

// window is the measured span of a scenario: from the end of its warm-up
// to the moment clients stop starting new work.
type window struct{ from, until time.Time }

func (w window) length() time.Duration { return w.until.Sub(w.from) }

// newClients makes n clients spread over the API replicas, recording in w.
func (r *runner) newClients(n int, w window) []*client {
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = &client{id: i, api: r.apis[i%len(r.apis)], rng: rand.New(rand.NewPCG(rand.Uint64(), uint64(i))),
			rec: newRecorder(w.from, w.until)}
	}
	return cs
}

// merged returns the recorders of cs merged into one.
func merged(cs []*client, w window) *recorder {
	all := newRecorder(w.from, w.until)
	for _, c := range cs {
		all.merge(c.rec)
	}
	return all
}

// closedLoop runs n clients, each calling step back to back for the warm-up
// and the scenario's duration, or until step says stop. Requests are bound
// to ctx, not to the deadline: work started before it is finished (releases
// included). It returns the merged outcomes and the measured window, which
// ends early if every client stopped early.
func (r *runner) closedLoop(ctx context.Context, n int, step func(ctx context.Context, c *client) bool) (*recorder, window) {
	start := time.Now()
	w := window{from: start.Add(r.o.warmup()), until: start.Add(r.o.warmup() + r.o.Duration)}
	cs := r.newClients(n, w)
	sample := r.sampleFrom(w.from)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last time.Time // the latest time a client stopped
	for _, c := range cs {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(w.until) {
				if !step(ctx, c) {
					break
				}
			}
			now := time.Now()
			mu.Lock()
			if now.After(last) {
				last = now
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if last.Before(w.until) {
		w.until = last
	}
	sample()
	return merged(cs, w), w
}

// openLoop starts job rate times a second, evenly spaced, for the warm-up and
// the duration, on a pool of workers clients; a job whose time has come while
// every worker is busy waits for one, and that wait counts in its latency
// (jobs get their scheduled start, not the moment a worker took them).
func (r *runner) openLoop(ctx context.Context, rate float64, workers int, job func(ctx context.Context, c *client, scheduled time.Time)) (*recorder, window) {
	start := time.Now()
	w := window{from: start.Add(r.o.warmup()), until: start.Add(r.o.warmup() + r.o.Duration)}
	cs := r.newClients(workers, w)
	sample := r.sampleFrom(w.from)
	total := int(rate * (r.o.warmup() + r.o.Duration).Seconds())
	queue := make(chan time.Time, min(max(total, 1), 1<<20))
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			for at := range queue {
				job(ctx, c, at)
			}
		})
	}
	interval := time.Duration(float64(time.Second) / rate)
	for i := 0; i < total && ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		queue <- at
	}
	close(queue)
	wg.Wait()
	sample()
	return merged(cs, w), w
}

// sampleFrom samples the CPU times and the APIs' request-duration histograms
// at from; the returned func samples again and sets what the window used and
// counted: r.cpu (nil when unknown) and r.server (nil when the histograms
// could not be read: an API serving its metrics elsewhere, say).
func (r *runner) sampleFrom(from time.Time) func() {
	type sample struct {
		cpu    cpuSample
		procs  procSnapshot
		server map[string]histogram
	}
	take := func() sample {
		return sample{sampleCPU(), snapshotProcs(r.o.Processes, r.database), r.scrapeServer()}
	}
	first := make(chan sample, 1)
	time.AfterFunc(time.Until(from), func() { first <- take() })
	return func() {
		end := take()
		r.cpu, r.server = nil, nil
		select {
		case start := <-first:
			if u, ok := cpuBetween(start.cpu, end.cpu, r.rep.cpus); ok {
				u.Groups = cpuByGroup(start.procs, end.procs, u.Machine)
				r.cpu = &u
			}
			if start.server != nil && end.server != nil {
				r.server = serverSince(start.server, end.server)
			}
		default:
		}
	}
}

// pause sleeps d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
