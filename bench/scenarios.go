package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

const (
	// cycleTTL is the TTL of reservations that are released at once.
	cycleTTL = 60
	// expirySlack is taken off a reservation's expiry for the end of its
	// certain hold (the expiry is on the server's clock).
	expirySlack = 100 * time.Millisecond
	// legacyMinHold is the shortest a legacy hold can last: list-utxos may
	// cut the oldest one to a minute when the pool has nothing free.
	legacyMinHold = 60 * time.Second
	// dappPrice is what each DApp cycle pays out of the pool UTXO it spends.
	dappPrice = 1000
	// pollEvery is how often a DApp client tries to reserve the change.
	pollEvery = 5 * time.Millisecond
	// reservableTimeout is how long a DApp client waits for its change.
	reservableTimeout = 10 * time.Second
	// memoryTTL keeps the memory scenario's reservations live for its measurement.
	memoryTTL = 600
	// memoryTimeout bounds the memory scenario's reserves.
	memoryTimeout = 10 * time.Minute
)

// Operation names in the report.
const (
	opReserve     = "reserve"
	opReserveSvc  = "reserve (service time)"
	opRelease     = "release"
	opSpend       = "sim spend"
	opSubmit      = "submit"
	opPoll        = "reserve change (poll)"
	opReservable  = "submit -> change reservable"
	opList        = "list-utxos"
	opUpdate      = "update-utxo"
	opFloor       = "floor EVALSHA"
	reasonTimeout = "timeout"
)

// grantAll remembers each UTXO of res as a grant whose answer arrived at got.
func (c *client) grantAll(scenario string, res *reservation, got time.Time) []*Grant {
	gs := make([]*Grant, len(res.UTXOs))
	for i, u := range res.UTXOs {
		gs[i] = &Grant{Scenario: scenario, Client: c.id, Pool: res.Pool, Hash: u.Hash, ID: res.ID, Fence: res.Fence,
			From: got, Until: res.ExpiresAt.Add(-expirySlack)}
		c.rec.grant(gs[i])
	}
	return gs
}

// reserve sends one reserve; the reservation is nil when it was refused or
// failed (already recorded under op). The latency counts from scheduled when
// it is set (an open loop's planned start), else from the request.
func (c *client) reserve(ctx context.Context, scenario, op string, body reserveBody, scheduled time.Time) (*reservation, []*Grant, answer) {
	t0 := time.Now()
	from := scheduled
	if from.IsZero() {
		from = t0
	}
	a, err := c.api.call(ctx, http.MethodPost, "/v1/reservations", body)
	got := time.Now()
	switch {
	case err != nil:
		c.rec.failed(op, from, errReason(err))
		return nil, nil, a
	case a.status == http.StatusConflict || a.status == http.StatusNotFound && a.code() == "404 utxo_not_found":
		c.rec.rejected(op, from, a.code())
		return nil, nil, a
	case a.status != http.StatusCreated:
		c.rec.failed(op, from, a.code())
		return nil, nil, a
	}
	var res reservation
	if err := a.decode(&res); err != nil {
		c.rec.failed(op, from, "bad answer")
		return nil, nil, a
	}
	c.rec.ok(op, from, got.Sub(from))
	if !scheduled.IsZero() {
		c.rec.ok(opReserveSvc, from, got.Sub(t0))
	}
	return &res, c.grantAll(scenario, &res, got), a
}

// release ends res, first marking the end of its grants' certain hold.
func (c *client) release(ctx context.Context, res *reservation, gs []*Grant, from time.Time) {
	t0 := time.Now()
	for _, g := range gs {
		g.endBy(t0)
	}
	if from.IsZero() {
		from = t0
	}
	a, err := c.api.call(ctx, http.MethodDelete, "/v1/reservations/"+res.ID, nil)
	d := time.Since(t0)
	// A release answers 200 with the reservation, released (it used to
	// answer 204 without a body).
	var ended reservation
	if err == nil && a.status == http.StatusOK && (a.decode(&ended) != nil || ended.ID != res.ID || ended.State != "released") {
		c.rec.failed(opRelease, from, "200 without the released reservation")
		return
	}
	c.rec.answered(opRelease, from, d, a, err, http.StatusOK)
}

// newResult starts the result of a scenario.
func (r *runner) newResult(name, title string, clients int) *scenarioResult {
	res := &scenarioResult{Name: name, Title: title, Clients: clients}
	r.rep.results = append(r.rep.results, res)
	return res
}

// finish fills res from the merged outcomes and checks its grants.
func (r *runner) finish(res *scenarioResult, rec *recorder, w window) {
	res.Window, res.CPU, r.cpu = w.length(), r.cpu, nil
	res.Server, r.server = r.server, nil
	res.Ops = rec.ops
	res.Cycles = rec.cycles
	res.Grants = len(rec.grants)
	res.ClientDuplicates = CheckGrants(rec.grants)
	r.log.Info("scenario done", "scenario", res.Name, "cycles", res.Cycles, "per_second", fmt.Sprintf("%.0f", res.CycleRate()),
		"requests_per_second", fmt.Sprintf("%.0f", res.RequestRate()), "duplicates", len(res.ClientDuplicates))
}

// scenarioFloor is e: one EVALSHA of SET NX PX per request, 64 clients.
func (r *runner) scenarioFloor(ctx context.Context) error {
	res := r.newResult("e", "floor: fiber + go-redis, one EVALSHA (SET NX PX) per request", clientsE)
	res.Unit = "request"
	if r.floor == nil {
		res.Notes = append(res.Notes, "skipped: no floor server (give --floor, or --redis-url to start one)")
		return nil
	}
	r.log.Info("scenario e: floor", "clients", clientsE, "duration", r.o.Duration)
	rec, w := r.closedLoop(ctx, clientsE, func(ctx context.Context, c *client) bool {
		t0 := time.Now()
		a, err := r.floor.call(ctx, http.MethodPost, floorPath, nil)
		if c.rec.answered(opFloor, t0, time.Since(t0), a, err, http.StatusCreated) {
			c.rec.cycle(t0)
		}
		return true
	})
	r.finish(res, rec, w)
	return nil
}

// scenarioCycles is a (closed loop) and half (open loop at half of a's
// throughput) on one large pool, or on Options.Pools pools sharing its
// UTXOs, each client on one of them.
func (r *runner) scenarioCycles(ctx context.Context) error {
	n := max(r.o.Pools, 1)
	pools := make([]*pool, n)
	ids := make([]int64, n)
	for i := range pools {
		p, err := r.newPool(ctx, amountsFrom(r.o.PoolSize/n, 1000))
		if err != nil {
			return err
		}
		defer r.retire(ctx, p) //nolint:revive,gocritic // every pool is retired when the scenario ends, not per iteration
		pools[i], ids[i] = p, p.ID
	}
	poolOf := func(c *client) int64 { return pools[c.id%n].ID }
	title := fmt.Sprintf("pool of %d UTXOs", r.o.PoolSize)
	if n > 1 {
		title = fmt.Sprintf("%d pools of %d UTXOs, each client on one", n, r.o.PoolSize/n)
	}
	var maxRate float64
	if r.want("a") {
		res := r.newResult("a", "reserve + release cycles, closed loop, "+title, clientsA)
		res.Pools, res.Unit = ids, "cycle"
		r.log.Info("scenario a: reserve+release", "clients", clientsA, "pools", n, "duration", r.o.Duration)
		rec, w := r.closedLoop(ctx, clientsA, func(ctx context.Context, c *client) bool {
			r.cycle(ctx, c, "a", reserveBody{Pool: poolOf(c), Count: 1, TTLSeconds: cycleTTL}, time.Time{})
			return true
		})
		r.finish(res, rec, w)
		maxRate = res.CycleRate()
	}
	if !r.want("half") {
		return nil
	}
	rate := r.o.Rate
	if rate <= 0 {
		rate = maxRate / 2
	}
	res := r.newResult("half", "reserve + release cycles, open loop at half of a's throughput, "+title, clientsHalf)
	res.Pools, res.Unit, res.Rate = ids, "cycle", rate
	if rate <= 0 {
		res.Notes = append(res.Notes, "skipped: no rate (run a, or give --rate)")
		return nil
	}
	r.log.Info("scenario half: open loop", "rate", fmt.Sprintf("%.0f/s", rate), "duration", r.o.Duration)
	rec, w := r.openLoop(ctx, rate, clientsHalf, func(ctx context.Context, c *client, at time.Time) {
		r.cycle(ctx, c, "half", reserveBody{Pool: poolOf(c), Count: 1, TTLSeconds: cycleTTL}, at)
	})
	r.finish(res, rec, w)
	res.Notes = append(res.Notes, "latencies are measured from each cycle's scheduled start, so waiting for a free worker counts; "+
		"\"reserve (service time)\" is from the moment the request was sent")
	return nil
}

// cycle reserves and releases at once; scheduled is an open loop's planned
// start (zero in a closed loop).
func (r *runner) cycle(ctx context.Context, c *client, scenario string, body reserveBody, scheduled time.Time) bool {
	from := scheduled
	if from.IsZero() {
		from = time.Now()
	}
	res, gs, _ := c.reserve(ctx, scenario, opReserve, body, scheduled)
	if res == nil {
		return false
	}
	c.release(ctx, res, gs, from)
	c.rec.cycle(from)
	return true
}

// scenarioContention is b: 200 clients for 10 UTXOs.
func (r *runner) scenarioContention(ctx context.Context) error {
	p, err := r.newPool(ctx, amountsFrom(utxosB, 1000))
	if err != nil {
		return err
	}
	res := r.newResult("b", fmt.Sprintf("contention: %d clients, %d UTXOs, reserve + release", clientsB, utxosB), clientsB)
	res.Pools, res.Unit = []int64{p.ID}, "cycle"
	wait := int((r.o.ContentionWait + time.Second - 1) / time.Second)
	if wait > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("reserves wait up to %d s for a free UTXO (wait_seconds)", wait))
	} else {
		res.Notes = append(res.Notes, "a refused client tries again after a random pause of 1-5 ms")
	}
	r.log.Info("scenario b: contention", "clients", clientsB, "utxos", utxosB, "duration", r.o.Duration)
	rec, w := r.closedLoop(ctx, clientsB, func(ctx context.Context, c *client) bool {
		if !r.cycle(ctx, c, "b", reserveBody{Pool: p.ID, Count: 1, TTLSeconds: cycleTTL, Wait: wait}, time.Time{}) && wait == 0 {
			pause(ctx, time.Millisecond+time.Duration(c.rng.Int64N(int64(4*time.Millisecond))))
		}
		return true
	})
	r.finish(res, rec, w)
	return nil
}

// scenarioDApp is c: reserve by amount, spend with change, submit, and the
// change is reserved by the next client.
func (r *runner) scenarioDApp(ctx context.Context) error {
	amounts := make([]uint64, 2*clientsC)
	for i := range amounts {
		amounts[i] = 1_000_000_000_000
	}
	p, err := r.newPool(ctx, amounts)
	if err != nil {
		return err
	}
	res := r.newResult("c", "DApp flow: reserve by amount, spend with change, submit; the change reserved again", clientsC)
	res.Pools, res.Unit = []int64{p.ID}, "cycle"
	res.Notes = append(res.Notes,
		fmt.Sprintf("the pool starts with %d UTXOs; a block is mined every second", len(amounts)),
		fmt.Sprintf("after its submit a client tries to reserve the change every %s: the latency is from the submit's answer "+
			"to the first grant of the change (its own, or another client's reserve by amount that took it first, "+
			"also when that client spent it before this one polled again)", pollEvery))
	payee := randomProgram()
	mctx, stopMining := context.WithCancel(ctx)
	var mining sync.WaitGroup
	mining.Go(func() {
		for mctx.Err() == nil {
			pause(mctx, time.Second)
			_, _ = r.chain.call(mctx, http.MethodPost, "/sim/mine", map[string]int{"blocks": 1})
		}
	})
	r.log.Info("scenario c: DApp flow", "clients", clientsC, "duration", r.o.Duration)
	granted := &grantTimes{first: map[string]time.Time{}}
	rec, w := r.closedLoop(ctx, clientsC, func(ctx context.Context, c *client) bool {
		r.dappCycle(ctx, c, p, payee, granted)
		return true
	})
	stopMining()
	mining.Wait()
	r.finish(res, rec, w)
	return nil
}

// grantTimes is when each UTXO of scenario c was first granted, to any client.
type grantTimes struct {
	mu    sync.Mutex
	first map[string]time.Time
}

func (g *grantTimes) note(gs []*Grant) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, x := range gs {
		if _, ok := g.first[x.Hash]; !ok {
			g.first[x.Hash] = x.From
		}
	}
}

// of returns when hash was first granted, if it was.
func (g *grantTimes) of(hash string) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.first[hash]
	return t, ok
}

func (r *runner) dappCycle(ctx context.Context, c *client, p *pool, payee string, granted *grantTimes) {
	t0 := time.Now()
	res, gs, _ := c.reserve(ctx, "c", opReserve, reserveBody{Pool: p.ID, Amount: dappPrice, TTLSeconds: cycleTTL}, time.Time{})
	if res == nil {
		pause(ctx, pollEvery)
		return
	}
	granted.note(gs)
	in := res.UTXOs[0]
	t1 := time.Now()
	a, err := r.chain.call(ctx, http.MethodPost, "/sim/spend", map[string]any{
		"hashes": []string{in.Hash},
		"outputs": []map[string]any{
			{"asset": p.Asset, "program": p.Program, "amount": in.Amount - dappPrice},
			{"asset": p.Asset, "program": payee, "amount": dappPrice},
		}})
	var spent struct {
		TxID    string   `json:"tx_id"`
		Outputs []string `json:"outputs"`
	}
	if err == nil && a.status != http.StatusOK {
		err = fmt.Errorf("%s", a.code())
	}
	if err == nil {
		err = a.decode(&spent)
	}
	if err != nil || len(spent.Outputs) == 0 {
		c.rec.failed(opSpend, t1, fmt.Sprint(err))
		c.release(ctx, res, gs, time.Time{})
		return
	}
	c.rec.ok(opSpend, t1, time.Since(t1))

	t2 := time.Now()
	a, err = c.api.call(ctx, http.MethodPost, "/v1/reservations/"+res.ID+"/submit", map[string]string{"tx_id": spent.TxID})
	submitted := time.Now()
	if !c.rec.answered(opSubmit, t2, submitted.Sub(t2), a, err, http.StatusOK) {
		return
	}
	var after reservation
	if a.decode(&after) == nil {
		for _, g := range gs { // a submitted reservation holds until it is settled
			g.Until = after.ExpiresAt.Add(-expirySlack)
		}
	}

	change := spent.Outputs[0]
	for {
		// Another client's reserve by amount may have taken the change,
		// spent it and had it settled between two polls: it was reservable.
		if at, ok := granted.of(change); ok {
			c.rec.ok(opReservable, submitted, at.Sub(submitted))
			c.rec.cycle(t0)
			return
		}
		if time.Since(submitted) > reservableTimeout {
			c.rec.failed(opReservable, submitted, reasonTimeout)
			return
		}
		next, ngs, a := c.reserve(ctx, "c", opPoll, reserveBody{Pool: p.ID, Hashes: []string{change}, TTLSeconds: cycleTTL}, time.Time{})
		granted.note(ngs)
		if next != nil || a.status == http.StatusConflict {
			// Reserved by this client, or already by another: reservable.
			c.rec.ok(opReservable, submitted, time.Since(submitted))
			if next != nil {
				c.release(ctx, next, ngs, time.Time{})
			}
			c.rec.cycle(t0)
			return
		}
		if ctx.Err() != nil {
			return
		}
		pause(ctx, pollEvery)
	}
}
