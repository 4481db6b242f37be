package clientcheck_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bufferd/bufferd/client"
	"github.com/bufferd/bufferd/handlers"
)

// Ready reports the API's readiness checks, and an API that is not ready as
// ErrUnavailable naming the failed check, after a single request.
func TestReady(t *testing.T) {
	var rebuilding atomic.Bool
	var asked atomic.Int32
	srv := newServerWith(t, func(cfg *handlers.Config) {
		cfg.Ready = func(context.Context) error {
			asked.Add(1)
			if rebuilding.Load() {
				return errors.New("rebuilding")
			}
			return nil
		}
	}, 100)
	c := client.New(srv.URL)
	ctx := context.Background()

	r, err := c.Ready(ctx)
	if err != nil || r.Status != "ok" || r.Checks["redis"] != "ok" || r.Checks["postgres"] != "ok" {
		t.Fatalf("ready server: %+v %v", r, err)
	}
	rebuilding.Store(true)
	asked.Store(0)
	r, err = c.Ready(ctx)
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "failed checks: ready") {
		t.Fatalf("not ready: %v", err)
	}
	if r == nil || r.Status != "unavailable" || r.Checks["ready"] != "fail" || r.Checks["redis"] != "ok" {
		t.Fatalf("not ready: report %+v", r)
	}
	if n := asked.Load(); n != 1 {
		t.Fatalf("Ready asked %d times, want once (no retry)", n)
	}
}
