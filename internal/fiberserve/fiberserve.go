// Package fiberserve serves a fiber app until its context ends, then shuts
// it down without waiting on connections that carry no request.
//
// fasthttp (under fiber) closes the connections idle between two requests
// when it shuts down, but counts one that a client opened and sent nothing
// on as busy from the moment it accepts it, and waits for it until the grace
// runs out. Clients open such connections routinely: net/http pools the one
// it dialed for a request another connection then served, and load
// balancers keep warm connections open. Every server of bufferd (the API,
// the simulated chain, the floor of the benchmark, the dev stack) is served
// through here.
package fiberserve

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/internal/connset"
)

// drainTick is how often a shutdown looks for unused connections.
const drainTick = 20 * time.Millisecond

// Serve serves app on ln until ctx ends, then shuts it down (Drain). An
// error of the listener comes back wrapped.
func Serve(ctx context.Context, app *fiber.App, ln net.Listener, grace time.Duration) error {
	conns := &connset.Set{}
	errc := make(chan error, 1)
	go func() { errc <- app.Listener(conns.Listener(ln)) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	return Drain(app, conns, grace)
}

// Drain shuts app, served on the connections of conns, down, waiting at
// most grace for its requests. It ends the input of the connections no
// request came on as they appear (their server sees the end and closes
// them) and, once the shutdown returns, the input of every connection
// left: a request stalled in its headers ends then, and one still being
// answered as soon as its answer is written. It only ends the input, never
// closes a connection outright: fasthttp panics when a connection is taken
// from under a request it answers.
func Drain(app *fiber.App, conns *connset.Set, grace time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- app.ShutdownWithTimeout(grace) }()
	tick := time.NewTicker(drainTick)
	defer tick.Stop()
	for {
		conns.CloseReadUnused()
		select {
		case err := <-done:
			conns.CloseReadAll()
			return err
		case <-tick.C:
		}
	}
}
