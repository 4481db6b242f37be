package client_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bufferd/bufferd/client"
)

// The client's tests against the real service are in the root module
// (package clientcheck); these need no server.

// refusing is a transport that counts the requests it is asked to send and
// sends none.
type refusing struct{ n atomic.Int32 }

func (r *refusing) RoundTrip(*http.Request) (*http.Response, error) {
	r.n.Add(1)
	return nil, errors.New("test: no request may be sent")
}

// Calls the client refuses by itself fail with the API's sentinel and send nothing.
func TestLocalRefusals(t *testing.T) {
	tr := &refusing{}
	c := client.New("http://127.0.0.1:1", client.WithHTTPClient(&http.Client{Transport: tr}))
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"get with no id", func() error { _, err := c.Get(ctx, ""); return err }(), client.ErrNotFound},
		{"extend with no id", func() error { _, err := c.Extend(ctx, "", time.Minute); return err }(), client.ErrNotFound},
		{"extend by 0", func() error { _, err := c.Extend(ctx, "abc", 0); return err }(), client.ErrBadRequest},
		{"reserve, negative ttl", func() error {
			_, err := c.Reserve(ctx, client.ReserveRequest{Pool: 1, Count: 1, TTL: -time.Second})
			return err
		}(), client.ErrBadRequest},
		{"reserve, negative wait", func() error {
			_, err := c.Reserve(ctx, client.ReserveRequest{Pool: 1, Count: 1, Wait: -time.Second})
			return err
		}(), client.ErrBadRequest},
		{"hold, negative ttl", func() error {
			_, err := c.Hold(ctx, client.ReserveRequest{Pool: 1, Count: 1, TTL: -time.Second})
			return err
		}(), client.ErrBadRequest},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if n := tr.n.Load(); n != 0 {
		t.Errorf("%d requests sent for calls refused locally", n)
	}
}

// Total adds the amounts exactly up to 2^64-1 and saturates instead of wrapping around.
func TestTotal(t *testing.T) {
	const odd = 1<<53 + 1
	for _, tc := range []struct {
		amounts []uint64
		want    uint64
	}{
		{nil, 0},
		{[]uint64{odd - 1, odd + 1, 7}, 2*odd + 7},
		{[]uint64{math.MaxUint64}, math.MaxUint64},
		{[]uint64{math.MaxUint64, 1}, math.MaxUint64},
		{[]uint64{math.MaxUint64 - 1, 1}, math.MaxUint64},
		{[]uint64{1 << 63, 1 << 63, 5}, math.MaxUint64},
	} {
		r := client.Reservation{}
		for _, a := range tc.amounts {
			r.UTXOs = append(r.UTXOs, client.UTXO{Amount: a})
		}
		if got := r.Total(); got != tc.want {
			t.Errorf("Total of %v = %d, want %d", tc.amounts, got, tc.want)
		}
	}
}
