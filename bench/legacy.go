package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Scenario d: the legacy frontend.
const (
	// clientsD is how many frontends run the legacy flow at once.
	clientsD = 32
	// DefaultLegacyPoolSize is the UTXOs of scenario d's pool.
	DefaultLegacyPoolSize = 200
	// legacyAmounts spreads the pool's amounts over 1..legacyAmounts units.
	legacyAmounts = 10_000
	// recycleEvery is how often the recycler ends the holds won since.
	recycleEvery = 10 * time.Millisecond
	// goalLegacyRate and goalLegacyWins are the targets of scenario d.
	goalLegacyRate = 2000
	goalLegacyWins = 0.8
)

// legacyWants are the amounts scenario d's users ask for: the users of one
// DApp ask for a few typical amounts, so many want the same one at once.
var legacyWants = []uint64{1000, 2500, 5000, 7500}

// legacyEntry is one UTXO of a list-utxos answer.
type legacyEntry struct {
	Hash   string `json:"hash"`
	Amount uint64 `json:"amount"`
}

// legacyList is the answer of /dapp/list-utxos.
type legacyList struct {
	Code   int    `json:"code"`
	Msg    string `json:"msg"`
	Result struct {
		Data []legacyEntry `json:"data"`
	} `json:"result"`
}

// frontendPick is how the Bytom DApp frontend chooses from a list sorted by
// amount, largest first: the first UTXO of exactly want wins; otherwise the
// smallest one still worth at least want; if none is, the largest. It
// returns -1 for an empty list.
func frontendPick(list []legacyEntry, want uint64) int {
	if len(list) == 0 {
		return -1
	}
	best := -1
	for i, e := range list {
		if e.Amount == want {
			return i
		}
		if e.Amount >= want && (best < 0 || e.Amount < list[best].Amount) {
			best = i
		}
	}
	if best < 0 {
		best = 0
		for i, e := range list {
			if e.Amount > list[best].Amount {
				best = i
			}
		}
	}
	return best
}

// scenarioLegacy is d: list-utxos by amount (the first page), the frontend's
// pick, update-utxo. A won UTXO is given back soon after, as the chain
// settling the user's transaction would: the recycler releases the hold
// through DELETE /v1/reservations/{id}, finding its id in the journal.
func (r *runner) scenarioLegacy(ctx context.Context) error {
	if r.t.DatabaseURL == "" {
		r.log.Warn("scenario d needs --database-url to give won UTXOs back; skipped")
		res := r.newResult("d", "legacy frontend", clientsD)
		res.Notes = append(res.Notes, "not run: it needs --database-url to find the legacy holds to give back")
		return nil
	}
	amounts := make([]uint64, r.o.LegacyPoolSize)
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	for i := range amounts {
		amounts[i] = 1 + rng.Uint64N(legacyAmounts)
	}
	p, err := r.newPool(ctx, amounts)
	if err != nil {
		return err
	}
	defer r.retire(ctx, p)
	res := r.newResult("d", "legacy frontend: list-utxos (first page, by amount, largest first), the frontend's pick, update-utxo", clientsD)
	res.Pools, res.Unit = []int64{p.ID}, "flow"
	rc, err := newRecycler(ctx, r.t.DatabaseURL, r.apis[0], p.ID)
	if err != nil {
		return err
	}
	var emptyLists atomic.Int64
	list := map[string]any{"asset": p.Asset, "program": p.Program, "sort": map[string]string{"by": "amount", "order": "desc"}}
	r.log.Info("scenario d: legacy flow", "clients", clientsD, "pool", len(amounts), "duration", r.o.Duration)
	rcDone := make(chan struct{})
	go func() {
		defer close(rcDone)
		rc.run(ctx)
	}()
	rec, w := r.closedLoop(ctx, clientsD, func(ctx context.Context, c *client) bool {
		r.legacyFlow(ctx, c, p, list, rc, &emptyLists)
		return true
	})
	rc.stop()
	<-rcDone
	r.finish(res, rec, w)
	u := rec.op(opUpdate)
	picks := u.OK() + u.RejectedCount()
	winRate := 0.0
	if picks > 0 {
		winRate = float64(u.OK()) / float64(picks)
	}
	res.Notes = append(res.Notes,
		fmt.Sprintf("a flow is one list-utxos and, when the list is not empty, one update-utxo of the UTXO the frontend's rule picks "+
			"(an exact amount, else the smallest worth at least the wanted amount, else the largest) for a wanted amount drawn "+
			"from %v, as the users of one DApp ask for a few typical amounts; the pool starts with %d UTXOs of amounts drawn "+
			"from 1..%d", legacyWants, len(amounts), legacyAmounts),
		fmt.Sprintf("picks that won: %d of %d (%.1f%%); lists that came back empty: %d", u.OK(), picks, 100*winRate, emptyLists.Load()),
		fmt.Sprintf("won UTXOs are given back within about %s, as the chain settling each user's transaction would (the "+
			"recycler reads the new legacy holds from the journal and releases them through DELETE /v1/reservations/{id}): "+
			"%d given back, %d failed", recycleEvery, rc.freed.Load(), rc.failed.Load()))
	res.LegacyWins = &winRate
	return nil
}

// legacyFlow is one flow of scenario d.
func (r *runner) legacyFlow(ctx context.Context, c *client, p *pool, list map[string]any, rc *recycler, empty *atomic.Int64) {
	t0 := time.Now()
	a, err := c.api.call(ctx, http.MethodPost, "/dapp/list-utxos", list)
	var env legacyList
	if err == nil {
		err = a.decode(&env)
	}
	switch {
	case err != nil:
		c.rec.failed(opList, t0, errReason(err))
		return
	case env.Code != 200:
		c.rec.failed(opList, t0, fmt.Sprintf("code %d: %s", env.Code, env.Msg))
		return
	}
	c.rec.ok(opList, t0, time.Since(t0))
	i := frontendPick(env.Result.Data, legacyWants[c.rng.IntN(len(legacyWants))])
	if i < 0 {
		empty.Add(1)
		c.rec.cycle(t0)
		pause(ctx, time.Millisecond)
		return
	}
	hash := env.Result.Data[i].Hash
	t1 := time.Now()
	a, err = c.api.call(ctx, http.MethodPost, "/dapp/update-utxo", map[string]string{"hash": hash})
	got := time.Now()
	var up struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	}
	if err == nil {
		err = a.decode(&up)
	}
	switch {
	case err != nil:
		c.rec.failed(opUpdate, t1, errReason(err))
	case up.Code == 200:
		c.rec.ok(opUpdate, t1, got.Sub(t1))
		g := &Grant{Scenario: "d", Client: c.id, Pool: p.ID, Hash: hash, From: got, Until: t1.Add(legacyMinHold - expirySlack)}
		c.rec.grant(g)
		rc.add(g)
	case up.Msg == "utxo is locked":
		c.rec.rejected(opUpdate, t1, up.Msg)
	default:
		c.rec.failed(opUpdate, t1, fmt.Sprintf("code %d: %s", up.Code, up.Msg))
	}
	c.rec.cycle(t0)
}

// recycler gives the UTXOs scenario d won back to the pool: every
// recycleEvery it reads the pool's new held legacy reservations from the
// journal (by fence, on the pool's (pool_id, fence) index) and releases them
// through the API.
type recycler struct {
	conn     *pgx.Conn
	api      *peer
	pool     int64
	mu       sync.Mutex
	grants   map[string][]*Grant    // per hash, the grants no release ended yet, in order
	releases map[string][]time.Time // per hash, the releases no grant took yet, in order
	done     chan struct{}
	once     sync.Once
	fence    int64               // the highest fence read
	released map[string]struct{} // ids released, of the last fences
	freed    atomic.Int64
	failed   atomic.Int64
}

// recycleLag is how far below the highest fence read the next read starts:
// grants reach the journal out of fence order.
const recycleLag = 500

func newRecycler(ctx context.Context, databaseURL string, api *peer, pool int64) (*recycler, error) {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("bench: recycler: %w", err)
	}
	return &recycler{conn: conn, api: api, pool: pool, grants: map[string][]*Grant{}, releases: map[string][]time.Time{},
		released: map[string]struct{}{}, done: make(chan struct{})}, nil
}

// add notes a grant its client recorded. The grants of one UTXO follow each
// other, and so do its releases: the k-th release ends the k-th grant,
// whichever the recycler or the client saw first.
func (rc *recycler) add(g *Grant) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rs := rc.releases[g.Hash]; len(rs) > 0 {
		g.endBy(rs[0])
		rc.releases[g.Hash] = rs[1:]
		return
	}
	rc.grants[g.Hash] = append(rc.grants[g.Hash], g)
}

// release notes that the next grant of hash ended at t.
func (rc *recycler) release(hash string, t time.Time) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if gs := rc.grants[hash]; len(gs) > 0 {
		gs[0].endBy(t)
		rc.grants[hash] = gs[1:]
		return
	}
	rc.releases[hash] = append(rc.releases[hash], t)
}

func (rc *recycler) stop() { rc.once.Do(func() { close(rc.done) }) }

// run recycles until stop, then once more, and closes the connection.
func (rc *recycler) run(ctx context.Context) {
	defer func() { _ = rc.conn.Close(context.WithoutCancel(ctx)) }()
	t := time.NewTicker(recycleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rc.done:
			rc.recycle(ctx)
			return
		case <-t.C:
			rc.recycle(ctx)
		}
	}
}

func (rc *recycler) recycle(ctx context.Context) {
	type hold struct {
		id, hash string
		fence    int64
	}
	rows, err := rc.conn.Query(ctx, `SELECT id, hashes, fence FROM reservations
		WHERE pool_id = $1 AND fence > $2 AND owner = 'legacy' AND state = 'held'`, pgx.QueryExecModeExec,
		rc.pool, max(rc.fence-recycleLag, 0))
	if err != nil {
		rc.failed.Add(1)
		return
	}
	holds, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (hold, error) {
		var h hold
		return h, row.Scan(&h.id, &h.hash, &h.fence)
	})
	if err != nil {
		rc.failed.Add(1)
		return
	}
	var wg sync.WaitGroup
	for _, h := range holds {
		rc.fence = max(rc.fence, h.fence)
		if _, done := rc.released[h.id]; done {
			continue
		}
		rc.released[h.id] = struct{}{}
		wg.Go(func() {
			rc.release(h.hash, time.Now())
			a, err := rc.api.call(ctx, http.MethodDelete, "/v1/reservations/"+h.id, nil)
			if err != nil || a.status != http.StatusOK {
				rc.failed.Add(1)
				return
			}
			rc.freed.Add(1)
		})
	}
	wg.Wait()
	if len(rc.released) > 4*recycleLag {
		rc.released = map[string]struct{}{} // the ids of old fences are not read again
	}
}
