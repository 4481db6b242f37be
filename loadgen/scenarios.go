package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// reserveRelease is scenario a: reserve one UTXO of a large pool and release
// it, over and over.
func (r *runner) reserveRelease(ctx context.Context, p pool, clients int) *Scenario {
	s := &Scenario{Key: "a", Title: "reserve + release, large pool", Clients: clients, PoolID: p.ID, Extra: map[string]Summary{}}
	var ans answers
	var reserveLat, releaseLat, all Latencies
	var holds Holds
	var cycles int64
	var mu sync.Mutex
	s.Elapsed = r.clients(ctx, clients, func(ctx context.Context, c int) {
		start := time.Now()
		res, _ := r.reserve(ctx, map[string]any{"pool": p.ID, "count": 1, "ttl_seconds": 60}, &ans, &reserveLat)
		if res == nil {
			return
		}
		all.Add(time.Since(start))
		g := holds.Grant(res.UTXOs[0].Hash, res.ID, time.Now())
		holds.Release(g, time.Now())
		t := time.Now()
		r.release(ctx, res.ID, &ans, &releaseLat)
		all.Add(time.Since(t))
		mu.Lock()
		cycles++
		mu.Unlock()
	})
	s.Requests, s.Cycles, s.Answers = ans.n.Load(), cycles, ans.snapshot()
	s.Latency = all.Summary()
	s.Extra["reserve"] = reserveLat.Summary()
	s.Extra["release"] = releaseLat.Summary()
	s.Grants, s.Duplicates = holds.Len(), holds.Duplicates()
	return s
}

// halfLoad offers reserve+release cycles at rate a second (open loop: a cycle
// starts on schedule whether or not earlier ones are done) and measures the
// reserve latency, for the p99 at half of the maximum throughput.
func (r *runner) halfLoad(ctx context.Context, p pool, rate float64) *Scenario {
	s := &Scenario{Key: "half", Title: fmt.Sprintf("reserve + release at %.0f cycles/s (half of a's maximum), open loop", rate),
		PoolID: p.ID, Extra: map[string]Summary{}}
	var ans answers
	var reserveLat Latencies
	var holds Holds
	var wg sync.WaitGroup
	sem := make(chan struct{}, 512)
	late := 0
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if time.Since(start) >= r.o.Duration || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Until(at))
		select {
		case sem <- struct{}{}:
		default:
			late++
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res, _ := r.reserve(context.WithoutCancel(ctx), map[string]any{"pool": p.ID, "count": 1, "ttl_seconds": 60}, &ans, &reserveLat)
			if res == nil {
				return
			}
			g := holds.Grant(res.UTXOs[0].Hash, res.ID, time.Now())
			holds.Release(g, time.Now())
			r.release(ctx, res.ID, &ans, nil)
		}()
	}
	wg.Wait()
	s.Elapsed = time.Since(start)
	s.Requests, s.Cycles, s.Answers = ans.n.Load(), int64(holds.Len()), ans.snapshot()
	s.Latency = reserveLat.Summary()
	s.Grants, s.Duplicates = holds.Len(), holds.Duplicates()
	if late > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("%d cycles skipped: 512 already in flight", late))
	}
	return s
}

// contention is scenario b: many clients fight over a handful of UTXOs; a
// granted one is released at once.
func (r *runner) contention(ctx context.Context, p pool, clients int) *Scenario {
	s := &Scenario{Key: "b", Title: fmt.Sprintf("contention: %d clients, %d UTXOs", clients, len(p.Hashes)), Clients: clients, PoolID: p.ID}
	var ans answers
	var lat Latencies
	var holds Holds
	s.Elapsed = r.clients(ctx, clients, func(ctx context.Context, c int) {
		res, status := r.reserve(ctx, map[string]any{"pool": p.ID, "count": 1, "ttl_seconds": 60}, &ans, &lat)
		if res == nil {
			if status != http.StatusConflict {
				time.Sleep(5 * time.Millisecond)
			}
			return
		}
		g := holds.Grant(res.UTXOs[0].Hash, res.ID, time.Now())
		holds.Release(g, time.Now())
		r.release(ctx, res.ID, &ans, nil)
	})
	s.Requests, s.Cycles, s.Answers = ans.n.Load(), int64(holds.Len()), ans.snapshot()
	s.Latency = lat.Summary()
	s.Grants, s.Duplicates = holds.Len(), holds.Duplicates()
	return s
}

// dappFlow is scenario c: reserve by amount, spend on the simulated chain
// with the change back into the pool, submit, then reserve the change as the
// next client would: the time from submit until the change is granted.
func (r *runner) dappFlow(ctx context.Context, p pool, clients int) *Scenario {
	s := &Scenario{Key: "c", Title: "DApp flow: reserve by amount, spend with change, submit, reserve the change", Clients: clients,
		PoolID: p.ID, Extra: map[string]Summary{}}
	var ans answers
	var reserveLat, toReservable Latencies
	var holds Holds
	var mu sync.Mutex
	var cycles int64
	mineCtx, stopMining := context.WithCancel(ctx)
	defer stopMining()
	go func() { // keep the mempool short, as a chain would
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-mineCtx.Done():
				return
			case <-t.C:
				_, _, _ = r.call(mineCtx, http.MethodPost, r.t.Chain+"/sim/mine", map[string]int{"blocks": 1})
			}
		}
	}()
	s.Elapsed = r.clients(ctx, clients, func(ctx context.Context, c int) {
		res, _ := r.reserve(ctx, map[string]any{"pool": p.ID, "amount": 1000, "ttl_seconds": 60}, &ans, &reserveLat)
		if res == nil {
			time.Sleep(5 * time.Millisecond)
			return
		}
		g := holds.Grant(res.UTXOs[0].Hash, res.ID, time.Now())
		var spent struct {
			TxID    string   `json:"tx_id"`
			Outputs []string `json:"outputs"`
		}
		out := []map[string]any{{"asset": p.Asset, "program": p.Program, "amount": res.UTXOs[0].Amount}}
		if err := r.must(ctx, http.StatusOK, http.MethodPost, r.t.Chain+"/sim/spend",
			map[string]any{"hashes": []string{res.UTXOs[0].Hash}, "outputs": out}, &spent); err != nil {
			r.release(ctx, res.ID, &ans, nil)
			return
		}
		submitted := time.Now()
		status, b, err := r.call(ctx, http.MethodPost, r.api()+"/v1/reservations/"+res.ID+"/submit", map[string]string{"tx_id": spent.TxID})
		ans.add(status, b, err)
		holds.Release(g, submitted) // the chain spends it: it never comes back
		// The next client polls for the change.
		for ctx.Err() == nil || time.Since(submitted) < 10*time.Second {
			next, status := r.reserve(context.WithoutCancel(ctx), map[string]any{"pool": p.ID, "hashes": spent.Outputs, "ttl_seconds": 60}, &ans, nil)
			if next != nil {
				toReservable.Add(time.Since(submitted))
				g := holds.Grant(next.UTXOs[0].Hash, next.ID, time.Now())
				holds.Release(g, time.Now())
				r.release(ctx, next.ID, &ans, nil)
				mu.Lock()
				cycles++
				mu.Unlock()
				return
			}
			if status != http.StatusConflict && status != http.StatusNotFound && status != http.StatusUnprocessableEntity {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	s.Requests, s.Cycles, s.Answers = ans.n.Load(), cycles, ans.snapshot()
	s.Latency = toReservable.Summary()
	s.Extra["reserve by amount"] = reserveLat.Summary()
	s.Grants, s.Duplicates = holds.Len(), holds.Duplicates()
	s.Notes = append(s.Notes, "latency = submit -> change output reserved by the next client (polled every 2 ms)")
	return s
}

// legacyFlow is scenario d: the original frontend: list the pool's UTXOs,
// pick one, lock it with update-utxo (legacy holds are never released; the
// journal check covers them).
func (r *runner) legacyFlow(ctx context.Context, p pool, clients int) *Scenario {
	s := &Scenario{Key: "d", Title: "legacy flow: list-utxos, pick, update-utxo", Clients: clients, PoolID: p.ID, Extra: map[string]Summary{}}
	var ans answers
	var flow, update Latencies
	var mu sync.Mutex
	var cycles, taken int64
	s.Elapsed = r.clients(ctx, clients, func(ctx context.Context, c int) {
		start := time.Now()
		status, b, err := r.call(ctx, http.MethodPost, r.api()+"/dapp/list-utxos", map[string]string{"asset": p.Asset, "program": p.Program})
		if ctx.Err() != nil {
			return
		}
		ans.add(status, b, err)
		var list struct {
			Code   int `json:"code"`
			Result struct {
				Data []struct {
					Hash string `json:"hash"`
				} `json:"data"`
			} `json:"result"`
		}
		if err != nil || json.Unmarshal(b, &list) != nil || len(list.Result.Data) == 0 {
			time.Sleep(5 * time.Millisecond)
			return
		}
		pick := list.Result.Data[rand.IntN(len(list.Result.Data))].Hash
		t := time.Now()
		status, b, err = r.call(ctx, http.MethodPost, r.api()+"/dapp/update-utxo", map[string]string{"hash": pick})
		if ctx.Err() != nil {
			return
		}
		update.Add(time.Since(t))
		ans.add(status, b, err)
		var env struct {
			Code int `json:"code"`
		}
		mu.Lock()
		defer mu.Unlock()
		if err == nil && json.Unmarshal(b, &env) == nil && env.Code == 200 {
			flow.Add(time.Since(start))
			cycles++
		} else {
			taken++
		}
	})
	s.Requests, s.Cycles, s.Answers = ans.n.Load(), cycles, ans.snapshot()
	s.Latency = flow.Summary()
	s.Extra["update-utxo"] = update.Summary()
	s.Grants = int(cycles)
	s.Notes = append(s.Notes, fmt.Sprintf("%d picks were taken by another client first (code 300)", taken),
		"latency = list-utxos + update-utxo; duplicates are checked against the journal only")
	return s
}

// floor is scenario e: the same clients on the floor server.
func (r *runner) floor(ctx context.Context, clients int) *Scenario {
	s := &Scenario{Key: "e", Title: "floor: one EVALSHA of SET NX PX per request, same HTTP stack", Clients: clients}
	var ans answers
	var lat Latencies
	s.Elapsed = r.clients(ctx, clients, func(ctx context.Context, c int) {
		start := time.Now()
		status, b, err := r.call(ctx, http.MethodPost, r.t.Floor+"/floor", nil)
		if ctx.Err() != nil {
			return
		}
		lat.Add(time.Since(start))
		ans.add(status, b, err)
	})
	s.Requests, s.Cycles, s.Answers = ans.n.Load(), ans.n.Load(), ans.snapshot()
	s.Latency = lat.Summary()
	return s
}

// holdMany is the memory scenario: n live reservations of one UTXO each.
func (r *runner) holdMany(ctx context.Context, p pool, clients int) (int, error) {
	var ans answers
	var next, held int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if int(i) >= len(p.Hashes) {
					return
				}
				if res, _ := r.reserve(ctx, map[string]any{"pool": p.ID, "hashes": []string{p.Hashes[i]}, "ttl_seconds": 3600}, &ans, nil); res != nil {
					mu.Lock()
					held++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if int(held) != len(p.Hashes) {
		return int(held), fmt.Errorf("%w: %d of %d reservations granted (%v)", ErrTarget, held, len(p.Hashes), ans.snapshot())
	}
	return int(held), ctx.Err()
}
