package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Why a lease ended, as Lease.Err and context.Cause(Lease.Context()) tell.
var (
	// ErrLeaseLost: the hold was lost; the error also wraps the reason (an
	// *APIError such as ErrEnded, or the last failure before the local deadline).
	ErrLeaseLost = errors.New("client: hold lost")
	// ErrLeaseReleased: Release ended the lease.
	ErrLeaseReleased = errors.New("client: lease released")
	// ErrLeaseSubmitted: Submit ended the lease; the server holds the UTXOs
	// until the chain settles the transaction.
	ErrLeaseSubmitted = errors.New("client: lease submitted")
)

// holdMarginMax caps the margin a lease keeps before the end of its hold.
const holdMarginMax = 10 * time.Second

// Lease is a reservation kept alive by a goroutine that extends it every
// TTL/3 with the same TTL. Its Context is cancelled the moment the hold may
// be lost: an extend answers that the reservation ended (or can no longer be
// extended), or the local deadline passes without a successful extend. The
// local deadline is the start of the last successful request plus the TTL
// minus a margin (TTL/4, at most 10 s), on this process's monotonic clock:
// the server's wall clock is never compared with the local one.
//
// The goroutine stops when the lease is lost, on Release and Submit, and when
// the context given to Hold ends (the reservation then runs out at its TTL
// unless released). A Lease is safe for concurrent use.
type Lease struct {
	c      *Client
	id     string
	ttl    time.Duration // whole seconds, as sent
	margin time.Duration
	ctx    context.Context
	cancel context.CancelCauseFunc

	opMu sync.Mutex // serialises Submit and Release

	mu        sync.Mutex
	res       Reservation
	lastSent  time.Time // local: when the last successful reserve or extend was sent
	submitted bool
	released  bool
	stopLoop  context.CancelFunc
	loopDone  chan struct{}
}

// Hold reserves like Reserve (a zero TTL means DefaultTTL) and keeps the
// reservation alive until Release, Submit, its loss or the end of ctx: ctx
// bounds the whole hold, not only the reserve. Use Lease.Context for the work
// done with the UTXOs, and defer Lease.Release: after a Submit it does nothing.
func (c *Client) Hold(ctx context.Context, req ReserveRequest) (*Lease, error) {
	switch {
	case req.TTL < 0:
		return nil, fmt.Errorf("%w: negative ttl", ErrBadRequest)
	case req.TTL == 0:
		req.TTL = DefaultTTL
	}
	req.TTL = time.Duration(seconds(req.TTL)) * time.Second
	start := time.Now()
	res, err := c.Reserve(ctx, req)
	if err != nil {
		return nil, err
	}
	// The server granted the reservation after start, so it ends after start+TTL.
	l := &Lease{c: c, id: res.ID, ttl: req.TTL, margin: min(req.TTL/4, holdMarginMax), res: *res, lastSent: start}
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	if time.Since(start) >= l.ttl/3 {
		// A slow reserve (a long-poll with Wait, retries): it was granted at
		// an unknown moment since start, so extend once now to know a
		// deadline that leaves the TTL to work with.
		sent := time.Now()
		ext, err := c.Extend(ctx, res.ID, l.ttl)
		if err != nil {
			l.cancel(ErrLeaseReleased)
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_, _ = c.Release(rctx, res.ID)
			return nil, fmt.Errorf("client: hold: first extend: %w", err)
		}
		l.res, l.lastSent = *ext, sent
	}
	l.mu.Lock()
	l.startLoop()
	l.mu.Unlock()
	return l, nil
}

// Context is cancelled when the lease ends: lost, released, submitted, or
// the context given to Hold ended. context.Cause tells which, as Err does.
func (l *Lease) Context() context.Context { return l.ctx }

// Err is nil while the lease holds, else why it ended: an error wrapping
// ErrLeaseLost, ErrLeaseReleased, ErrLeaseSubmitted, or the cause of the end
// of the context given to Hold.
func (l *Lease) Err() error {
	if l.ctx.Err() == nil {
		return nil
	}
	return context.Cause(l.ctx)
}

// Reservation returns the reservation as last seen (after the latest extend or submit).
func (l *Lease) Reservation() Reservation {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.res
	r.UTXOs = append([]UTXO(nil), l.res.UTXOs...)
	return r
}

// Submit stops extending and submits txID (see Client.Submit); the server
// then holds the UTXOs until the chain settles the transaction, and the
// lease ends with ErrLeaseSubmitted. If the submit fails without the
// reservation having ended (ErrEnded, ErrNotFound), the lease goes on extending.
func (l *Lease) Submit(ctx context.Context, txID string) (*Reservation, error) {
	l.opMu.Lock()
	defer l.opMu.Unlock()
	if l.isReleased() {
		return nil, ErrLeaseReleased
	}
	l.pause()
	res, err := l.c.Submit(ctx, l.id, txID)
	switch {
	case err == nil:
		l.mu.Lock()
		l.res, l.submitted = *res, true
		l.mu.Unlock()
		l.cancel(ErrLeaseSubmitted)
		return res, nil
	case errors.Is(err, ErrEnded), errors.Is(err, ErrNotFound):
		l.cancel(fmt.Errorf("%w: %w", ErrLeaseLost, err))
	default:
		l.resume() // a bad tx id, a conflict or an outage: the extends tell what is left
	}
	return nil, err
}

// Release stops extending and releases the reservation; the lease ends with
// ErrLeaseReleased, before the UTXOs are freed, even if the release call
// fails (the reservation then runs out at its TTL; call Release again to
// retry). It returns nil when the reservation had already ended, and does
// nothing after a successful Submit (the server would refuse: the submitted
// transaction spends the UTXOs), so `defer lease.Release(ctx)` is safe. When
// the server says the reservation was submitted (a Submit whose answer never
// came back), the lease counts as submitted and Release returns nil too.
func (l *Lease) Release(ctx context.Context) error {
	l.opMu.Lock()
	defer l.opMu.Unlock()
	l.mu.Lock()
	done := l.submitted || l.released
	l.mu.Unlock()
	if done {
		return nil
	}
	l.pause()
	l.cancel(ErrLeaseReleased)
	res, err := l.c.Release(ctx, l.id)
	switch {
	case err == nil:
		l.mu.Lock()
		l.res, l.released = *res, true
		l.mu.Unlock()
		return nil
	case errors.Is(err, ErrSubmitted):
		l.mu.Lock()
		l.submitted = true
		l.mu.Unlock()
		return nil
	case errors.Is(err, ErrEnded), errors.Is(err, ErrNotFound):
		l.mu.Lock()
		l.released = true
		l.mu.Unlock()
		return nil
	}
	return err
}

func (l *Lease) isReleased() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.released
}

// startLoop starts the extending goroutine unless the lease has ended. l.mu is held.
func (l *Lease) startLoop() {
	if l.ctx.Err() != nil {
		return
	}
	ctx, stop := context.WithCancel(l.ctx)
	l.stopLoop, l.loopDone = stop, make(chan struct{})
	go l.run(ctx, l.loopDone)
}

// pause stops the extending goroutine and waits for it to return.
func (l *Lease) pause() {
	l.mu.Lock()
	stop, done := l.stopLoop, l.loopDone
	l.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// resume restarts the extending goroutine after pause.
func (l *Lease) resume() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.startLoop()
}

// gone reports whether err means the reservation can no longer be held by
// this lease: any 4xx answer but 429.
func gone(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 && ae.Status != http.StatusTooManyRequests
}

// run extends the reservation every TTL/3 until ctx ends or the hold is lost.
func (l *Lease) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	interval := l.ttl / 3
	pauseAfterFailure := min(interval/4, time.Second)
	l.mu.Lock()
	last := l.lastSent
	l.mu.Unlock()
	deadline := last.Add(l.ttl - l.margin)
	next := last.Add(interval) // in the past when resumed late: extend at once
	var lastErr error
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if !time.Now().Before(deadline) {
			l.cancel(lostAtDeadline(lastErr))
			return
		}
		timer.Reset(min(time.Until(next), time.Until(deadline)))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if !time.Now().Before(deadline) {
			continue // lost
		}
		sent := time.Now()
		ectx, cancel := context.WithDeadline(ctx, deadline)
		res, err := l.c.Extend(ectx, l.id, l.ttl)
		cancel()
		switch {
		case err == nil:
			deadline, next, lastErr = sent.Add(l.ttl-l.margin), sent.Add(interval), nil
			l.mu.Lock()
			l.res, l.lastSent = *res, sent
			l.mu.Unlock()
		case ctx.Err() != nil:
			return // paused, or the context of Hold ended
		case gone(err):
			l.cancel(fmt.Errorf("%w: %w", ErrLeaseLost, err))
			return
		default:
			lastErr = err
			next = time.Now().Add(pauseAfterFailure)
		}
	}
}

// lostAtDeadline is the cause of a lease whose deadline passed without a successful extend.
func lostAtDeadline(last error) error {
	if last == nil {
		return fmt.Errorf("%w: no successful extend before the local deadline", ErrLeaseLost)
	}
	return fmt.Errorf("%w: no successful extend before the local deadline: %w", ErrLeaseLost, last)
}
