package chaos

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// reserveAttempts is how often a client sends a reserve whose outcome it does
// not know (transport error, 5xx, key in use), with the same Idempotency-Key,
// to the next API each time.
const reserveAttempts = 3

// holding is a reservation a client believes it holds.
type holding struct {
	id        string
	pool      int
	hashes    []string
	sum       uint64
	submitted bool
}

// lastReserve is a client's last reserve that got an answer, for the
// idempotent retry operation.
type lastReserve struct {
	key  string
	body map[string]any
	id   string
	ttl  int
}

// client runs one client's steps: reserve by count or amount, extend,
// submit (spending its UTXOs on the simulated chain), release, abandon, and
// retry its last reserve with the same Idempotency-Key.
type client struct {
	n     int
	d     *deployment
	rec   *recorder
	seed  uint64
	holds []*holding
	last  *lastReserve
}

// run carries out steps in order, each after its delay, until ctx ends.
func (c *client) run(ctx context.Context, steps []step) {
	for _, s := range steps {
		if !pause(ctx, s.Delay) {
			return
		}
		c.rec.step(s, c.do(ctx, s))
	}
}

// pause waits d; false when ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (c *client) do(ctx context.Context, s step) string {
	switch s.Kind {
	case opReserveCount, opReserveAmount:
		return c.reserve(ctx, s)
	case opExtend:
		return c.extend(ctx, s)
	case opSubmit:
		return c.submit(ctx, s)
	case opRelease:
		return c.release(ctx, s)
	case opAbandon:
		return c.abandon(s)
	case opRetry:
		return c.retry(ctx, s)
	}
	return "unknown operation"
}

// unsure reports whether a call's outcome is unknown: it may have taken
// effect without its answer arriving.
func unsure(a answer) bool {
	return a.Err != nil || a.Status >= 500 || a.Status == http.StatusConflict && a.code() == "idempotency_key_in_use"
}

func (c *client) reserve(ctx context.Context, s step) string {
	pool := c.d.pools[s.Pool]
	body := map[string]any{"pool": pool.ID, "ttl_seconds": s.TTL, "owner": fmt.Sprintf("client-%d", c.n)}
	what := fmt.Sprintf("count %d", s.N)
	if s.Kind == opReserveCount {
		body["count"] = s.N
	} else {
		body["amount"] = s.Amount
		what = fmt.Sprintf("amount %d", s.Amount)
	}
	key := fmt.Sprintf("chaos-%d-%d", c.seed, s.Index)
	sent := time.Now()
	var a answer
	var tries []string
	for attempt := 0; attempt < reserveAttempts; attempt++ {
		api := c.d.api(c.n + attempt + int(s.Pick%3))
		a = c.d.web.call(ctx, http.MethodPost, api+"/v1/reservations", body, "Idempotency-Key", key)
		tries = append(tries, a.label())
		if !unsure(a) {
			break
		}
		if !pause(ctx, 150*time.Millisecond) {
			break
		}
	}
	c.rec.outcome("reserve", a.label())
	detail := fmt.Sprintf("pool %d %s ttl %ds -> %v", pool.ID, what, s.TTL, tries)
	switch {
	case a.Status == http.StatusCreated || a.Status == http.StatusOK:
		var res reservationJSON
		if err := a.decode(&res); err != nil {
			return detail + ": " + err.Error()
		}
		c.rec.granted(c.n, res, sent, time.Now())
		c.last = &lastReserve{key: key, body: body, id: res.ID, ttl: s.TTL}
		if res.State == "held" {
			c.holds = append(c.holds, &holding{id: res.ID, pool: s.Pool, hashes: res.hashes(), sum: res.sum()})
		}
		return fmt.Sprintf("%s: %s fence %d %s %v", detail, res.ID, res.Fence, res.State, short(res.hashes()))
	case a.Status == http.StatusUnprocessableEntity:
		c.rec.violation(violation{Kind: kindRetry, Round: s.Round, Pool: pool.ID, Detail: fmt.Sprintf(
			"client %d: a reserve retried with its own Idempotency-Key and the same body was refused as reused (step #%d)", c.n, s.Index)})
	case unsure(a):
		c.rec.unknown(sent.Add(time.Duration(s.TTL) * time.Second))
	}
	return detail
}

// retry sends the client's last answered reserve again, with its key, to
// another API: the answer must be that same reservation.
func (c *client) retry(ctx context.Context, s step) string {
	l := c.last
	if l == nil {
		return "nothing to retry"
	}
	sent := time.Now()
	a := c.d.web.call(ctx, http.MethodPost, c.d.api(c.n+1+int(s.Pick%2))+"/v1/reservations", l.body, "Idempotency-Key", l.key)
	c.rec.outcome("retry", a.label())
	detail := fmt.Sprintf("reserve of %s again -> %s", l.id, a)
	if unsure(a) {
		c.rec.unknown(sent.Add(time.Duration(l.ttl) * time.Second))
		return detail
	}
	var res reservationJSON
	switch {
	case a.Status == http.StatusCreated || a.Status == http.StatusOK && a.decode(&res) == nil && res.ID != l.id:
		_ = a.decode(&res)
		c.rec.violation(violation{Kind: kindRetry, Round: s.Round, Detail: fmt.Sprintf(
			"client %d: retrying the reserve that made %s with the same Idempotency-Key answered %d with reservation %s (step #%d)",
			c.n, l.id, a.Status, res.ID, s.Index)})
		if res.ID != "" {
			c.rec.granted(c.n, res, sent, time.Now())
		}
	case a.Status == http.StatusUnprocessableEntity:
		c.rec.violation(violation{Kind: kindRetry, Round: s.Round, Detail: fmt.Sprintf(
			"client %d: retrying the reserve that made %s with the same Idempotency-Key and body was refused as reused (step #%d)",
			c.n, l.id, s.Index)})
	}
	return detail
}

// pick returns one of the client's holdings that ok accepts, chosen by the
// step's Pick, or nil.
func (c *client) pick(s step, ok func(*holding) bool) *holding {
	var cands []*holding
	for _, h := range c.holds {
		if ok(h) {
			cands = append(cands, h)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	return cands[s.Pick%uint64(len(cands))]
}

func (c *client) forget(h *holding) {
	c.holds = slices.DeleteFunc(c.holds, func(x *holding) bool { return x == h })
}

func held(h *holding) bool     { return !h.submitted }
func anyHolding(*holding) bool { return true }

func (c *client) extend(ctx context.Context, s step) string {
	h := c.pick(s, held)
	if h == nil {
		return "nothing to extend"
	}
	sent := time.Now()
	a := c.d.web.call(ctx, http.MethodPost, c.d.api(c.n+int(s.Pick%3))+"/v1/reservations/"+h.id+"/extend",
		map[string]int{"ttl_seconds": s.TTL})
	c.rec.outcome("extend", a.label())
	var res reservationJSON
	switch {
	case a.Status == http.StatusOK && a.decode(&res) == nil:
		c.rec.extended(h.id, res.ExpiresAt)
	case unsure(a):
		c.rec.mayEnd(h.id, sent.Add(time.Duration(s.TTL)*time.Second))
	case a.Status == http.StatusGone || a.Status == http.StatusNotFound:
		c.forget(h)
	case a.Status == http.StatusConflict && a.code() == "reservation_submitted":
		h.submitted = true
	}
	return fmt.Sprintf("%s by %ds -> %s", h.id, s.TTL, a)
}

// submit spends the holding's UTXOs on the simulated chain (its change back
// to the pool, an unconfirmed output others may reserve) and submits the
// transaction.
func (c *client) submit(ctx context.Context, s step) string {
	h := c.pick(s, held)
	if h == nil {
		return "nothing to submit"
	}
	pool := c.d.pools[h.pool]
	c.rec.cutHashes(h.hashes, time.Now())
	c.rec.chainCall("client-spend")
	var spent struct {
		TxID string `json:"tx_id"`
	}
	a := c.d.web.call(ctx, http.MethodPost, c.d.chain+"/sim/spend", map[string]any{"hashes": h.hashes, "fail": s.Fail,
		"outputs": []map[string]any{{"asset": pool.Asset, "program": pool.Program, "amount": h.sum}}})
	if err := a.decode(&spent); err != nil {
		c.forget(h)
		return fmt.Sprintf("%s: spend %v -> %s", h.id, short(h.hashes), a)
	}
	b := c.d.web.call(ctx, http.MethodPost, c.d.api(c.n+int(s.Pick%3))+"/v1/reservations/"+h.id+"/submit",
		map[string]string{"tx_id": spent.TxID})
	c.rec.outcome("submit", b.label())
	switch b.Status {
	case http.StatusOK:
		h.submitted = true
	case http.StatusGone, http.StatusNotFound:
		c.forget(h)
	}
	return fmt.Sprintf("%s: tx %s (fail %t) spends %v -> %s", h.id, short1(spent.TxID), s.Fail, short(h.hashes), b)
}

func (c *client) release(ctx context.Context, s step) string {
	h := c.pick(s, anyHolding)
	if h == nil {
		return "nothing to release"
	}
	c.rec.letGo(h.id, time.Now())
	a := c.d.web.call(ctx, http.MethodDelete, c.d.api(c.n+int(s.Pick%3))+"/v1/reservations/"+h.id, nil)
	c.rec.outcome("release", a.label())
	if unsure(a) {
		c.rec.mayHold(h.id)
	}
	if a.Status == http.StatusConflict && a.code() == "reservation_submitted" {
		h.submitted = true
	} else {
		c.forget(h)
	}
	return fmt.Sprintf("%s -> %s", h.id, a)
}

// abandon forgets a holding without releasing it: it ends by its TTL.
func (c *client) abandon(s step) string {
	h := c.pick(s, anyHolding)
	if h == nil {
		return "nothing to abandon"
	}
	c.forget(h)
	return h.id + " left to expire"
}

// short abbreviates hashes for the history.
func short(hashes []string) []string {
	out := make([]string, len(hashes))
	for i, h := range hashes {
		out[i] = short1(h)
	}
	return out
}

func short1(h string) string {
	if len(h) > 10 {
		return h[:10]
	}
	return h
}
