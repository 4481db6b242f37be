package clientcheck_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/client"
)

// The lease tests assert on events (an extend that moved the server's
// expiry, the lease's context ending, its goroutine gone), not on how long
// anything took; the bounds on their waits only stop a test that hangs.

// hang bounds every wait for an event of a lease.
const hang = 15 * time.Second

// waitEnd waits for the lease to end.
func waitEnd(t *testing.T, l *client.Lease, what string) {
	t.Helper()
	select {
	case <-l.Context().Done():
	case <-time.After(hang):
		t.Fatalf("%s: lease context still live after %s", what, hang)
	}
}

// waitExtended waits until a successful extend has moved the lease's expiry
// (the server's) past after; it fails if the lease ends first.
func waitExtended(t *testing.T, l *client.Lease, after time.Time) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	limit := time.After(hang)
	for !l.Reservation().ExpiresAt.After(after) {
		select {
		case <-l.Context().Done():
			t.Fatalf("lease ended before an extend past %s: %v", after.Format(time.StampMilli), l.Err())
		case <-limit:
			t.Fatalf("no extend past %s within %s", after.Format(time.StampMilli), hang)
		case <-tick.C:
		}
	}
}

// stopped fails unless every lease goroutine started from the calling test's
// goroutine (by Hold, or by a Submit that went back to extending) has
// returned, or does so at once (it may be on its way out).
func stopped(t *testing.T) {
	t.Helper()
	mine := fmt.Sprintf(" in goroutine %d\n", goroutineID())
	for wait := time.Now().Add(500 * time.Millisecond); ; time.Sleep(5 * time.Millisecond) {
		n := 0
		for _, g := range leaseStacks() {
			if strings.Contains(g, mine) {
				n++
			}
		}
		if n == 0 {
			return
		}
		if time.Now().After(wait) {
			t.Fatalf("%d of the test's lease goroutines still running", n)
		}
	}
}

// goroutineID is the id of the calling goroutine, from its stack's header.
func goroutineID() int {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	var id int
	if _, err := fmt.Sscanf(string(buf), "goroutine %d ", &id); err != nil {
		panic("goroutine id: " + err.Error())
	}
	return id
}

// leaseStacks are the stacks of the goroutines the client package started
// (also those not yet running), one string each, ending with the line
// "created by github.com/bufferd/bufferd/client.… in goroutine N".
func leaseStacks() []string {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	for n == len(buf) {
		buf = make([]byte, 2*len(buf))
		n = runtime.Stack(buf, true)
	}
	var out []string
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		if strings.Contains(g, "\ncreated by github.com/bufferd/bufferd/client.") {
			out = append(out, g)
		}
	}
	return out
}

// leaseGoroutines counts the goroutines the client package started.
func leaseGoroutines() int { return len(leaseStacks()) }

func TestHoldKeepsAShortReservationAlive(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, 200)
	tr := newTripper()
	c := client.New(s.URL, client.WithHTTPClient(tr.client()))
	ctx := testCtx(t)

	const ttl = 2 * time.Second
	lease, err := c.Hold(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	first := lease.Reservation()
	if first.State != client.StateHeld || !sameInts(amounts(&first), []uint64{100}) {
		t.Fatalf("hold: %+v", first)
	}
	// An extend the server answered 3 s after the reserve, on a 2 s TTL: the
	// reservation outlived its first expiry because the lease extended it.
	waitExtended(t, lease, first.ExpiresAt.Add(3*time.Second))
	if lease.Err() != nil {
		t.Fatalf("Err = %v while held", lease.Err())
	}
	got, err := c.Get(ctx, first.ID)
	if err != nil || got.State != client.StateHeld {
		t.Fatalf("past its first expiry: %+v, %v", got, err)
	}
	// Not more often than every TTL/3: the extends moved the server's expiry
	// on by at least TTL/3 each (one more may be on its way).
	n := tr.countSuffix("/extend")
	moved := lease.Reservation().ExpiresAt.Sub(first.ExpiresAt)
	if n < 2 || n > int(moved/(ttl/3))+2 {
		t.Errorf("%d extends moved the expiry on by %s, want one per TTL/3 (%s)", n, moved, ttl/3)
	}
	// Someone else cannot take it.
	if _, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Hashes: []string{first.UTXOs[0].Hash}}); !errors.Is(err, client.ErrUTXOLocked) {
		t.Errorf("reserve the held utxo: %v", err)
	}

	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(lease.Err(), client.ErrLeaseReleased) || lease.Context().Err() == nil ||
		!errors.Is(context.Cause(lease.Context()), client.ErrLeaseReleased) {
		t.Errorf("after release: Err %v, context %v", lease.Err(), lease.Context().Err())
	}
	// Its goroutine is gone: nothing can extend it any more.
	stopped(t)
	n = tr.countSuffix("/extend")
	if got, err := c.Get(ctx, first.ID); err != nil || got.State != client.StateReleased {
		t.Fatalf("after release: %+v, %v", got, err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Errorf("second release: %v", err)
	}
	if m := tr.countSuffix("/extend"); m != n {
		t.Errorf("%d extends after release", m-n)
	}
}

func TestHoldLostWhenReleasedElsewhere(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100)
	tr := newTripper()
	c := client.New(s.URL, client.WithHTTPClient(tr.client()))
	ctx := testCtx(t)

	lease, err := c.Hold(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waitExtended(t, lease, lease.Reservation().ExpiresAt) // the lease is extending
	rawDelete(t, s.URL, lease.Reservation().ID)
	released := tr.countSuffix("/extend")
	waitEnd(t, lease, "released elsewhere")
	// The first extend sent after the release (or one already on its way)
	// found it ended: no extend succeeded in between.
	if n := tr.countSuffix("/extend") - released; n > 1 {
		t.Errorf("%d extends after the release, want the lease lost at the first", n)
	}
	err = lease.Err()
	if !errors.Is(err, client.ErrLeaseLost) || !errors.Is(err, client.ErrEnded) {
		t.Fatalf("Err = %v, want lost: ended", err)
	}
	stopped(t)
	if _, err := lease.Submit(ctx, txA); !errors.Is(err, client.ErrEnded) {
		t.Errorf("submit of a lost lease: %v", err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Errorf("release of a lost lease: %v", err)
	}
	if _, err := lease.Submit(ctx, txA); !errors.Is(err, client.ErrLeaseReleased) {
		t.Errorf("submit of a released lease: %v", err)
	}
}

func TestHoldLostWhenServerStopsAnswering(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		stop func(*proxy)
	}{
		{"refused", (*proxy).Stop},
		{"stalled", (*proxy).Stall},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, 100)
			p := newProxy(t, s.URL)
			c := client.New(p.URL)
			ctx := testCtx(t)

			lease, err := c.Hold(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1, TTL: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			waitExtended(t, lease, lease.Reservation().ExpiresAt) // at least one extend went through
			lost := make(chan time.Time, 1)
			context.AfterFunc(lease.Context(), func() { lost <- time.Now() })
			tc.stop(p)
			waitEnd(t, lease, "server gone")
			lostAt := <-lost
			// One failed extend is no proof of loss: the lease gave up at its
			// local deadline (the start of the last successful extend plus
			// TTL minus TTL/4), before the server's expiry of that extend,
			// after which the server may hand the UTXO out again.
			err = lease.Err()
			if !errors.Is(err, client.ErrLeaseLost) || !strings.Contains(err.Error(), "no successful extend before the local deadline") {
				t.Fatalf("Err = %v, want lost at the local deadline", err)
			}
			if exp := lease.Reservation().ExpiresAt; !lostAt.Before(exp) {
				t.Errorf("lease lost at %s, after the server's expiry %s", lostAt.Format(time.StampMilli), exp.Format(time.StampMilli))
			}
			stopped(t)
			// The server still holds it until the TTL runs out.
			if got, err := client.New(s.URL).Get(ctx, lease.Reservation().ID); err != nil || got.State != client.StateHeld {
				t.Errorf("on the server: %+v, %v", got, err)
			}
		})
	}
}

func TestLeaseSubmit(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, 200)
	tr := newTripper()
	c := client.New(s.URL, client.WithHTTPClient(tr.client()))
	ctx := testCtx(t)

	lease, err := c.Hold(ctx, client.ReserveRequest{Pool: s.Pool.ID, Amount: 150, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	first := lease.Reservation()
	// A refused submit (bad tx id) leaves the lease extending.
	if _, err := lease.Submit(ctx, "not-a-tx"); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("submit a bad tx id: %v", err)
	}
	// Past the TTL: only the extends keep it.
	waitExtended(t, lease, first.ExpiresAt.Add(2*time.Second))
	if lease.Err() != nil {
		t.Fatalf("lease ended after a refused submit: %v", lease.Err())
	}

	res, err := lease.Submit(ctx, txA)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != client.StateSubmitted || res.TxID != txA || lease.Reservation().State != client.StateSubmitted {
		t.Fatalf("submit: %+v", res)
	}
	if !errors.Is(lease.Err(), client.ErrLeaseSubmitted) || lease.Context().Err() == nil {
		t.Errorf("after submit: Err %v", lease.Err())
	}
	// Its goroutine is gone: nothing can extend it any more.
	stopped(t)
	n := tr.countSuffix("/extend")
	// Release after submit does nothing: the transaction spends these UTXOs.
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if m := tr.countSuffix("/extend"); m != n {
		t.Errorf("%d extends after submit", m-n)
	}
	if tr.countSuffix("DELETE /v1/reservations/"+res.ID) != 0 {
		t.Error("release after submit sent a DELETE")
	}
	if got, err := c.Get(ctx, res.ID); err != nil || got.State != client.StateSubmitted {
		t.Fatalf("on the server: %+v, %v", got, err)
	}
}

func TestHoldEndsWithItsContext(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100)
	c := client.New(s.URL)
	ctx := testCtx(t)

	parent, cancel := context.WithCancel(ctx)
	lease, err := c.Hold(parent, client.ReserveRequest{Pool: s.Pool.ID, Count: 1, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	waitEnd(t, lease, "parent cancelled")
	if !errors.Is(lease.Err(), context.Canceled) || errors.Is(lease.Err(), client.ErrLeaseLost) {
		t.Errorf("Err = %v, want context.Canceled", lease.Err())
	}
	stopped(t)
	// The reservation is still there until released.
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, lease.Reservation().ID); err != nil || got.State != client.StateReleased {
		t.Fatalf("after release: %+v, %v", got, err)
	}
}

func TestHoldWaitsForAFreeUTXO(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100)
	tr := newTripper()
	waiting := make(chan time.Time, 1)
	tr.onSend = func(r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/reservations" {
			select {
			case waiting <- time.Now():
			default:
			}
		}
	}
	c := client.New(s.URL, client.WithHTTPClient(tr.client()))
	ctx := testCtx(t)

	other, err := client.New(s.URL).Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	// The hold's reserve waits (long-polls) for longer than its TTL before
	// the UTXO is released.
	const ttl = 2 * time.Second
	go func() {
		select {
		case sent := <-waiting:
			<-time.After(time.Until(sent.Add(ttl + ttl/4)))
		case <-ctx.Done():
			return
		}
		if _, err := c.Release(context.Background(), other.ID); err != nil {
			t.Errorf("release: %v", err)
		}
	}()
	lease, err := c.Hold(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1, TTL: ttl, Wait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lease.Release(ctx) }()
	// Granted after a wait longer than its TTL, yet not taken for lost: it
	// goes on extending.
	waitExtended(t, lease, lease.Reservation().ExpiresAt)
	if got, err := c.Get(ctx, lease.Reservation().ID); err != nil || got.State != client.StateHeld {
		t.Fatalf("after the wait: %+v, %v", got, err)
	}
}

// TestLeasesLeaveNoGoroutines is not parallel: it counts the lease
// goroutines of the whole process.
func TestLeasesLeaveNoGoroutines(t *testing.T) {
	s := newServer(t, 100, 200, 300, 400, 500, 600, 700, 800, 900)
	c := client.New(s.URL)
	ctx := testCtx(t)

	var leases []*client.Lease
	var cancels []context.CancelFunc
	for range 9 {
		parent, cancel := context.WithCancel(ctx)
		l, err := c.Hold(parent, client.ReserveRequest{Pool: s.Pool.ID, Count: 1, TTL: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		leases, cancels = append(leases, l), append(cancels, cancel)
	}
	if n := leaseGoroutines(); n != 9 {
		t.Fatalf("%d client goroutines for 9 leases", n)
	}
	for i, l := range leases {
		switch i % 3 {
		case 0:
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
		case 1:
			if _, err := l.Submit(ctx, txA); err != nil {
				t.Fatal(err)
			}
		case 2:
			cancels[i]()
		}
	}
	for _, l := range leases {
		if l.Context().Err() == nil {
			t.Fatalf("lease %s still live", l.Reservation().ID)
		}
	}
	stopped(t)
	for _, cancel := range cancels {
		cancel()
	}
	// A goroutine that closed its done channel may still be on its way out.
	for wait := time.Now().Add(2 * time.Second); leaseGoroutines() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(wait) {
			t.Fatalf("%d client goroutines left after every lease ended", leaseGoroutines())
		}
	}
}

// TestLeaseReleaseAfterALostSubmit: a Submit the server carried out but whose
// answers never came back leaves the lease extending; the extends find the
// reservation submitted and the lease lost; Release then changes nothing on
// the server (which refuses to release a submitted reservation) and returns
// nil, as after a successful Submit.
func TestLeaseReleaseAfterALostSubmit(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, 200)
	tr := newTripper()
	tr.drop = func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/submit") }
	c := client.New(s.URL, client.WithHTTPClient(tr.client()), client.WithRetries(1))
	ctx := testCtx(t)

	lease, err := c.Hold(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	id := lease.Reservation().ID
	if _, err := lease.Submit(ctx, txA); !errors.Is(err, errDropped) {
		t.Fatalf("submit with lost answers: %v", err)
	}
	waitEnd(t, lease, "extends of a submitted reservation")
	if err := lease.Err(); !errors.Is(err, client.ErrLeaseLost) || !errors.Is(err, client.ErrSubmitted) {
		t.Fatalf("Err = %v, want lost: submitted", err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatalf("release after a lost submit: %v", err)
	}
	if n := tr.count("DELETE /v1/reservations/" + id); n != 1 {
		t.Errorf("%d release requests, want 1", n)
	}
	got, err := c.Get(ctx, id)
	if err != nil || got.State != client.StateSubmitted || got.TxID != txA {
		t.Fatalf("on the server: %+v, %v", got, err)
	}
	// Later releases send nothing.
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := tr.count("DELETE /v1/reservations/" + id); n != 1 {
		t.Errorf("%d release requests after the lease knew it was submitted", n)
	}
}
