package bench

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// simChunk is how many UTXOs one call to the simulated chain creates or spends.
const simChunk = 50_000

// loadTimeout bounds the wait for the syncer to load or empty a pool.
const loadTimeout = 3 * time.Minute

// pool is a contract pool the run registered, with the UTXOs it created.
type pool struct {
	ID             int64
	Asset, Program string
	Hashes         []string
}

// randomProgram returns a fresh control program (a P2WSH-like script).
func randomProgram() string { return "0020" + randomHex(32) }

// newPool registers a fresh pool, creates UTXOs of amounts on the simulated
// chain and waits until the API can hand all of them out.
func (r *runner) newPool(ctx context.Context, amounts []uint64) (*pool, error) {
	p := &pool{Asset: randomHex(32), Program: randomProgram()}
	a, err := r.admin.call(ctx, http.MethodPost, "/v1/pools", map[string]string{"asset": p.Asset, "program": p.Program})
	if err != nil {
		return nil, fmt.Errorf("register pool: %w", err)
	}
	if a.status != http.StatusCreated && a.status != http.StatusOK {
		return nil, fmt.Errorf("register pool: HTTP %s (is the admin token right?)", a.code())
	}
	var created struct {
		ID int64 `json:"id"`
	}
	if err := a.decode(&created); err != nil {
		return nil, err
	}
	p.ID = created.ID
	for start := 0; start < len(amounts); start += simChunk {
		chunk := amounts[start:min(start+simChunk, len(amounts))]
		a, err := r.chain.call(ctx, http.MethodPost, "/sim/utxos", map[string]any{"asset": p.Asset, "program": p.Program, "amounts": chunk})
		if err != nil {
			return nil, fmt.Errorf("create utxos: %w", err)
		}
		var out struct {
			Hashes []string `json:"hashes"`
		}
		if a.status != http.StatusOK {
			return nil, fmt.Errorf("create utxos: HTTP %s", a.code())
		}
		if err := a.decode(&out); err != nil {
			return nil, err
		}
		p.Hashes = append(p.Hashes, out.Hashes...)
	}
	start := time.Now()
	if err := r.waitFree(ctx, p, len(amounts)); err != nil {
		return nil, err
	}
	r.log.Info("pool ready", "pool", p.ID, "utxos", len(amounts), "took", time.Since(start).Round(time.Millisecond))
	return p, nil
}

// freeCount reports whether at least n UTXOs of p are free in Redis, by
// asking the legacy list for the n-th one (n >= 1), or with n = 0 whether
// none is free.
func (r *runner) freeAtLeast(ctx context.Context, p *pool, n int) (bool, error) {
	start := max(n-1, 0)
	a, err := r.admin.call(ctx, http.MethodPost, "/dapp/list-utxos?limit=1&start="+strconv.Itoa(start),
		map[string]any{"asset": p.Asset, "program": p.Program, "sort": map[string]string{"by": "amount", "order": "asc"}})
	if err != nil {
		return false, err
	}
	var env legacyList
	if err := a.decode(&env); err != nil {
		return false, err
	}
	if env.Code != 200 {
		return false, nil // not loaded yet
	}
	return len(env.Result.Data) > 0, nil
}

// waitFree waits until n UTXOs of p are free (n > 0) or none is (n = 0).
func (r *runner) waitFree(ctx context.Context, p *pool, n int) error {
	deadline := time.Now().Add(loadTimeout)
	for {
		some, err := r.freeAtLeast(ctx, p, n)
		if err != nil {
			return fmt.Errorf("pool %d: %w", p.ID, err)
		}
		if some == (n > 0) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pool %d: the syncer did not bring it to %d free UTXOs within %s (is it following %s?)",
				p.ID, n, loadTimeout, r.chain.base)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// retire spends every UTXO the run created for p on the simulated chain and
// waits until the pool has none free, so the syncer's next polls of it are
// cheap. A failure is only logged: the measurements are done.
func (r *runner) retire(ctx context.Context, p *pool) {
	burn := randomProgram()
	for start := 0; start < len(p.Hashes); start += simChunk {
		chunk := p.Hashes[start:min(start+simChunk, len(p.Hashes))]
		a, err := r.chain.call(ctx, http.MethodPost, "/sim/spend", map[string]any{
			"hashes": chunk, "outputs": []map[string]any{{"asset": p.Asset, "program": burn, "amount": len(chunk)}}})
		if err == nil && a.status != http.StatusOK {
			err = fmt.Errorf("HTTP %s", a.code())
		}
		if err != nil {
			r.log.Warn("retire pool", "pool", p.ID, "err", err)
			return
		}
	}
	if _, err := r.chain.call(ctx, http.MethodPost, "/sim/mine", map[string]int{"blocks": 1}); err != nil {
		r.log.Warn("retire pool: mine", "pool", p.ID, "err", err)
	}
	if err := r.waitFree(ctx, p, 0); err != nil {
		r.log.Warn("retire pool", "pool", p.ID, "err", err)
	}
}

// amountsFrom returns n amounts base, base+1, ...
func amountsFrom(n int, base uint64) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = base + uint64(i)
	}
	return out
}
