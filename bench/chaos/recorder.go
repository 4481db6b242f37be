package chaos

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/bufferd/bufferd/bench"
)

// expiryMargin is taken off a reservation's expiry for the span in which its
// client certainly holds it: Redis ends holds on its own clock, to the
// millisecond.
const expiryMargin = 250 * time.Millisecond

// acked is a reservation a client was told it holds (201, or 200 for a
// retry whose first attempt's answer was lost).
type acked struct {
	ID     string
	Client int
	Pool   int64
	Fence  int64
	Hashes []string
	// Sent is when the first attempt was sent, Got when the answer arrived.
	Sent, Got time.Time
	expires   time.Time // latest expiry acknowledged
	cut       time.Time // when its client stopped being sure it holds (zero: never)
	grants    []*bench.Grant
}

// until is the end of the span in which the client certainly held it.
func (a *acked) until() time.Time {
	end := a.expires.Add(-expiryMargin)
	if !a.cut.IsZero() && a.cut.Before(end) {
		end = a.cut
	}
	return end
}

func (a *acked) update() {
	u := a.until()
	for _, g := range a.grants {
		g.Until = u
	}
}

// cutEvent is a chain event that may end reservations without their
// clients knowing: a spend of some UTXOs, a block or reorganisation
// deciding some, or anything (all). Its effect on reservations comes when
// the syncer learns of it, which may be long after (its leader may be
// paused), so it also ends the certainty of grants received after it, until
// the next quiet point.
type cutEvent struct {
	at     time.Time
	all    bool
	hashes map[string]bool
}

func (c cutEvent) touches(hashes []string) bool {
	if c.all {
		return true
	}
	for _, h := range hashes {
		if c.hashes[h] {
			return true
		}
	}
	return false
}

// recorder is a trial's history and its clients' model of what they hold;
// every actor writes to it.
type recorder struct {
	mu    sync.Mutex
	seed  uint64
	start time.Time

	events []event
	ops    map[string]int
	outs   map[string]int
	chain  map[string]int
	faults map[string]int

	acks   map[string]*acked
	order  []*acked
	byHash map[string][]*acked
	cuts   []cutEvent
	// uncertain is until when a grant whose outcome is unknown may hold.
	uncertain time.Time
	// found are violations seen by the clients themselves.
	found []violation
}

func newRecorder(seed uint64) *recorder {
	return &recorder{seed: seed, start: time.Now(), ops: map[string]int{}, outs: map[string]int{},
		chain: map[string]int{}, faults: map[string]int{}, acks: map[string]*acked{}, byHash: map[string][]*acked{}}
}

// step records a step carried out, with what came of it.
func (r *recorder) step(s step, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{Seed: r.seed, Index: s.Index, Round: s.Round, At: time.Since(r.start),
		Actor: s.actorName(), Kind: s.Kind, Detail: detail})
	switch s.Actor {
	case actorChain:
		r.chain[s.Kind]++
	case actorFault:
		r.faults[s.Kind]++
	default:
		r.ops[s.Kind]++
	}
}

// note records an event that is not a step (a restore, a quiet point).
func (r *recorder) note(round int, actor, kind, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{Seed: r.seed, Index: -1, Round: round, At: time.Since(r.start),
		Actor: actor, Kind: kind, Detail: detail})
}

// outcome counts the outcome of a client operation.
func (r *recorder) outcome(op, out string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outs[op+" "+out]++
}

// chainCall counts a chain call made by a client (its own spend).
func (r *recorder) chainCall(kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.chain[kind]++
}

// granted records a reservation a client was told it holds.
func (r *recorder) granted(client int, res reservationJSON, sent, got time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.acks[res.ID]; ok {
		return
	}
	a := &acked{ID: res.ID, Client: client, Pool: res.Pool, Fence: res.Fence, Hashes: res.hashes(), Sent: sent, Got: got,
		expires: res.ExpiresAt}
	if res.State != "held" {
		a.cut = got // a replay of one that ended: never certainly held
	}
	for _, c := range r.cuts {
		if c.touches(a.Hashes) {
			a.cut = got // the syncer may end it for an event it has not applied yet
			break
		}
	}
	for _, h := range a.Hashes {
		a.grants = append(a.grants, &bench.Grant{Scenario: "chaos", Client: client, Pool: res.Pool, Hash: h,
			ID: res.ID, Fence: res.Fence, From: got})
		r.byHash[h] = append(r.byHash[h], a)
	}
	a.update()
	r.acks[res.ID] = a
	r.order = append(r.order, a)
}

// extended records an acknowledged extension: the reservation now ends at
// expires, earlier or later than before (an extension counts from now).
func (r *recorder) extended(id string, expires time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := r.acks[id]; a != nil {
		a.expires = expires
		a.update()
	}
}

// mayEnd records an extension of unknown outcome: the reservation may now
// end at expires, earlier than its client knew (certainly held only until
// then) or later (holding until then without its client knowing).
func (r *recorder) mayEnd(id string, expires time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := r.acks[id]; a != nil && expires.Before(a.expires) {
		a.expires = expires
		a.update()
	}
	if expires.After(r.uncertain) {
		r.uncertain = expires
	}
}

// mayHold records a release of unknown outcome: Redis may hold the
// reservation's UTXOs until its expiry.
func (r *recorder) mayHold(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := r.acks[id]; a != nil && a.expires.After(r.uncertain) {
		r.uncertain = a.expires
	}
}

// letGo records that a client stopped holding a reservation at t (it sent
// a release).
func (r *recorder) letGo(id string, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := r.acks[id]; a != nil && (a.cut.IsZero() || t.Before(a.cut)) {
		a.cut = t
		a.update()
	}
}

// cutHashes records at t an event that may end the reservations holding
// any of hashes; cutAll one that may end any reservation.
func (r *recorder) cutHashes(hashes []string, t time.Time) {
	set := make(map[string]bool, len(hashes))
	for _, h := range hashes {
		set[h] = true
	}
	r.cut(cutEvent{at: t, hashes: set})
}

func (r *recorder) cutAll(t time.Time) { r.cut(cutEvent{at: t, all: true}) }

func (r *recorder) cut(c cutEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cuts = append(r.cuts, c)
	var hit []*acked
	if c.all {
		hit = r.order
	} else {
		for h := range c.hashes {
			hit = append(hit, r.byHash[h]...)
		}
	}
	for _, a := range hit {
		if a.cut.IsZero() || c.at.Before(a.cut) {
			a.cut = c.at
			a.update()
		}
	}
}

// settled forgets the chain events so far: at a quiet point the syncer has
// applied all of them.
func (r *recorder) settled() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cuts = nil
}

// unknown records a call whose grant may have happened without its client
// learning of it, holding until at most until.
func (r *recorder) unknown(until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if until.After(r.uncertain) {
		r.uncertain = until
	}
}

func (r *recorder) uncertainUntil() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.uncertain
}

// violation records a violation a client saw.
func (r *recorder) violation(v violation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.found = append(r.found, v)
}

// takeFound returns the violations the clients saw since the last call.
func (r *recorder) takeFound() []violation {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.found
	r.found = nil
	return out
}

// grants returns a copy of every grant so far.
func (r *recorder) grants() []*bench.Grant {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*bench.Grant
	for _, a := range r.order {
		for _, g := range a.grants {
			c := *g
			out = append(out, &c)
		}
	}
	return out
}

// acknowledged returns a copy of every acknowledged reservation.
func (r *recorder) acknowledged() []acked {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]acked, len(r.order))
	for i, a := range r.order {
		out[i] = *a
	}
	return out
}

// history returns a copy of the events in the order they were recorded.
func (r *recorder) history() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// fenceOrder checks that fences follow real time in each pool: a
// reservation requested after another one's grant was acknowledged has a
// larger fence.
func fenceOrder(acks []acked) []violation {
	byPool := map[int64][]acked{}
	for _, a := range acks {
		byPool[a.Pool] = append(byPool[a.Pool], a)
	}
	var out []violation
	for pool, as := range byPool {
		byGot := slices.Clone(as)
		slices.SortFunc(byGot, func(x, y acked) int { return x.Got.Compare(y.Got) })
		bySent := slices.Clone(as)
		slices.SortFunc(bySent, func(x, y acked) int { return x.Sent.Compare(y.Sent) })
		i := 0
		var top *acked // the largest fence acknowledged before the current request was sent
		for _, b := range bySent {
			for ; i < len(byGot) && byGot[i].Got.Before(b.Sent); i++ {
				if top == nil || byGot[i].Fence > top.Fence {
					top = &byGot[i]
				}
			}
			if top != nil && b.Fence <= top.Fence && b.ID != top.ID {
				out = append(out, violation{Kind: kindFence, Pool: pool, Detail: fmt.Sprintf(
					"reservation %s (fence %d) was requested %s after reservation %s (fence %d) was acknowledged, yet its fence is not larger",
					b.ID, b.Fence, b.Sent.Sub(top.Got).Round(time.Millisecond), top.ID, top.Fence)})
			}
		}
	}
	slices.SortFunc(out, func(a, b violation) int { return cmp.Compare(a.Detail, b.Detail) })
	return out
}
