package client_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/client"
)

// waitDone waits up to d for ctx to end and returns how long it took.
func waitDone(t *testing.T, ctx context.Context, d time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-ctx.Done():
		return time.Since(start)
	case <-time.After(d):
		t.Fatalf("%s: lease context still live after %s", what, d)
		return 0
	}
}

// stopped fails unless the lease's goroutine has returned or does so at once.
func stopped(t *testing.T, l *client.Lease) {
	t.Helper()
	done := client.LoopDone(l)
	if done == nil {
		t.Fatal("lease never started its goroutine")
	}
	select {
	case <-done:
	case <-time.After(500 * time.Millisecond):
		t.Fatal("the lease's goroutine is still running")
	}
}

// leaseGoroutines counts the goroutines the client package started, from
// every goroutine's stack (also those not yet running).
func leaseGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return bytes.Count(buf[:n], []byte("created by github.com/bufferd/bufferd/client."))
		}
		buf = make([]byte, 2*len(buf))
	}
}

func TestHoldKeepsAShortReservationAlive(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, 200)
	tr := newTripper()
	c := client.New(s.URL, client.WithHTTPClient(tr.client()))
	ctx := testCtx(t)

	lease, err := c.Hold(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	first := lease.Reservation()
	if first.State != client.StateHeld || !sameInts(amounts(&first), []uint64{100}) {
		t.Fatalf("hold: %+v", first)
	}
	select {
	case <-lease.Context().Done():
		t.Fatalf("lease lost while the server answers: %v", lease.Err())
	case <-time.After(5 * time.Second):
	}
	if lease.Err() != nil {
		t.Fatalf("Err = %v while held", lease.Err())
	}
	// Five seconds on a 2 s TTL: still held, because it was extended every ~2/3 s.
	got, err := c.Get(ctx, first.ID)
	if err != nil || got.State != client.StateHeld {
		t.Fatalf("after 5 s: %+v, %v", got, err)
	}
	if n := tr.countSuffix("/extend"); n < 6 || n > 9 {
		t.Errorf("%d extends in 5 s at TTL/3, want ~7", n)
	}
	if last := lease.Reservation(); !last.ExpiresAt.After(first.ExpiresAt.Add(3 * time.Second)) {
		t.Errorf("expiry %s not moved on from %s", last.ExpiresAt, first.ExpiresAt)
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
	stopped(t, lease)
	if got, err := c.Get(ctx, first.ID); err != nil || got.State != client.StateReleased {
		t.Fatalf("after release: %+v, %v", got, err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Errorf("second release: %v", err)
	}
	n := tr.countSuffix("/extend")
	time.Sleep(time.Second)
	if m := tr.countSuffix("/extend"); m != n {
		t.Errorf("%d extends after release", m-n)
	}
}

func TestHoldLostWhenReleasedElsewhere(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100)
	c := client.New(s.URL)
	ctx := testCtx(t)

	lease, err := c.Hold(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	rawDelete(t, s.URL, lease.Reservation().ID)
	took := waitDone(t, lease.Context(), 3*time.Second, "released elsewhere")
	t.Logf("lost %s after the release", took)
	if took > 1200*time.Millisecond {
		t.Errorf("lease cancelled %s after the release, want within one extend interval (~0.7 s)", took)
	}
	err = lease.Err()
	if !errors.Is(err, client.ErrLeaseLost) || !errors.Is(err, client.ErrEnded) {
		t.Fatalf("Err = %v, want lost: ended", err)
	}
	stopped(t, lease)
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
			time.Sleep(1100 * time.Millisecond) // at least one extend went through
			if lease.Err() != nil {
				t.Fatalf("lost before the stop: %v", lease.Err())
			}
			tc.stop(p)
			took := waitDone(t, lease.Context(), 3*time.Second, "server gone")
			t.Logf("lost %s after the server went away", took)
			// The last successful extend started less than one interval plus
			// a request before the stop; the lease gives up 1.5 s (TTL minus
			// TTL/4) after it, before the server would hand the UTXO out again.
			if took > 1600*time.Millisecond {
				t.Errorf("lease cancelled %s after the server went away, want before 1.5 s", took)
			}
			if took < 500*time.Millisecond {
				t.Errorf("lease cancelled after %s: one failed extend is no proof of loss", took)
			}
			if err := lease.Err(); !errors.Is(err, client.ErrLeaseLost) {
				t.Fatalf("Err = %v, want lost", err)
			}
			stopped(t, lease)
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
	// A refused submit (bad tx id) leaves the lease extending.
	if _, err := lease.Submit(ctx, "not-a-tx"); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("submit a bad tx id: %v", err)
	}
	time.Sleep(2500 * time.Millisecond) // past the TTL: only the extends keep it
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
	stopped(t, lease)
	n := tr.countSuffix("/extend")
	// Release after submit does nothing: the transaction spends these UTXOs.
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
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
	waitDone(t, lease.Context(), time.Second, "parent cancelled")
	if !errors.Is(lease.Err(), context.Canceled) || errors.Is(lease.Err(), client.ErrLeaseLost) {
		t.Errorf("Err = %v, want context.Canceled", lease.Err())
	}
	stopped(t, lease)
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
	c := client.New(s.URL)
	ctx := testCtx(t)

	other, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(2500 * time.Millisecond) // longer than the TTL of the hold
		if _, err := c.Release(context.Background(), other.ID); err != nil {
			t.Errorf("release: %v", err)
		}
	}()
	lease, err := c.Hold(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1, TTL: 2 * time.Second, Wait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(ctx)
	// Granted after a wait longer than its TTL, yet not taken for lost.
	select {
	case <-lease.Context().Done():
		t.Fatalf("lease lost: %v", lease.Err())
	case <-time.After(1500 * time.Millisecond):
	}
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
		stopped(t, l)
	}
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
	waitDone(t, lease.Context(), 3*time.Second, "extends of a submitted reservation")
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
