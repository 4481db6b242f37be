// Package leader elects the one process that runs a job (the syncer's jobs)
// among replicas: a lease in Redis taken through redsync, renewed while the
// job runs, and an epoch minted durably for each term, which the job's writes
// carry so that a deposed leader's late writes are refused.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/go-redsync/redsync/v4"
)

// DefaultTTL is how long a leadership term lasts without renewal.
const DefaultTTL = 9 * time.Second

// Term is one leadership term of a job.
type Term struct {
	LeaderID string
	Epoch    int64     // only grows from term to term, also across Redis data loss
	Since    time.Time // when this process became leader
}

// EpochSource mints the epoch of a new term durably (PostgreSQL in bufferd).
type EpochSource interface {
	NewTerm(ctx context.Context, job, leaderID string) (int64, error)
}

// Elector runs a job on exactly one of the processes that run the same
// Elector: a term is a redsync mutex taken with a non-blocking try and renewed
// every TTL/3. The term's context is cancelled on the first failed renewal, or
// when the local trust window (last renewal start + TTL - margin, on the
// monotonic clock) runs out, so a deposed leader stops before its lease can
// pass to another. When the job returns or ctx ends, the mutex is released at
// once so a standby takes over without waiting for the TTL.
type Elector struct {
	Mutexes  *redsync.Redsync
	Job      string // names the mutex and the epoch sequence
	Prefix   string // put before the mutex name (the Redis key prefix)
	LeaderID string // defaults to DefaultID()
	TTL      time.Duration
	Epochs   EpochSource
	Log      *slog.Logger
}

// DefaultID is <hostname>-<pid>.
func DefaultID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return host + "-" + strconv.Itoa(os.Getpid())
}

// Run campaigns until ctx ends; while this process leads it runs lead with a
// context that ends with the term. It returns nil when ctx ends.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context, t Term)) error {
	if e.Mutexes == nil || e.Epochs == nil || e.Job == "" {
		return errors.New("leader: elector needs Mutexes, Epochs and Job")
	}
	ttl := e.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	id := e.LeaderID
	if id == "" {
		id = DefaultID()
	}
	for ctx.Err() == nil {
		led, err := e.term(ctx, id, ttl, lead)
		if err != nil && ctx.Err() == nil {
			e.logger().Warn("leader election", "job", e.Job, "err", err)
		}
		if !led {
			// A standby retries often enough to take over soon after a release.
			sleep(ctx, ttl/6)
		}
	}
	return nil
}

// term tries to become leader once and, if it does, leads until the term ends.
func (e *Elector) term(ctx context.Context, id string, ttl time.Duration, lead func(context.Context, Term)) (bool, error) {
	mu := e.Mutexes.NewMutex(e.Prefix+"leader:"+e.Job, redsync.WithExpiry(ttl), redsync.WithTries(1))
	margin := ttl / 10
	start := time.Now()
	tctx, cancel := context.WithTimeout(ctx, ttl/3)
	err := mu.TryLockContext(tctx)
	cancel()
	if err != nil {
		var taken *redsync.ErrTaken
		if errors.As(err, &taken) || errors.Is(err, redsync.ErrFailed) {
			return false, nil
		}
		return false, fmt.Errorf("leader: campaign: %w", err)
	}
	defer func() {
		// Hand over at once: a standby need not wait for the TTL.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_, _ = mu.UnlockContext(uctx)
	}()
	epoch, err := e.Epochs.NewTerm(ctx, e.Job, id)
	if err != nil {
		return false, fmt.Errorf("leader: new term: %w", err)
	}
	if time.Since(start) > ttl-margin {
		return false, errors.New("leader: term expired while its epoch was minted")
	}
	termCtx, end := context.WithCancelCause(ctx)
	defer end(nil)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		e.keep(termCtx, end, mu, start.Add(ttl-margin), ttl, margin)
	}()
	t := Term{LeaderID: id, Epoch: epoch, Since: start}
	e.logger().Info("leading", "job", e.Job, "leader", id, "epoch", epoch)
	lead(termCtx, t)
	end(errors.New("leader: job returned"))
	<-kept
	e.logger().Info("term ended", "job", e.Job, "leader", id, "epoch", epoch, "cause", context.Cause(termCtx))
	return true, nil
}

// keep renews the mutex every TTL/3 and ends the term on the first failed
// renewal or when the trust window runs out.
func (e *Elector) keep(ctx context.Context, end context.CancelCauseFunc, mu *redsync.Mutex, trustUntil time.Time, ttl, margin time.Duration) {
	renew := time.NewTicker(ttl / 3)
	defer renew.Stop()
	trust := time.NewTimer(time.Until(trustUntil))
	defer trust.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-trust.C:
			end(errors.New("leader: leadership trust window ran out"))
			return
		case <-renew.C:
			began := time.Now()
			rctx, cancel := context.WithTimeout(ctx, ttl/3)
			ok, err := mu.ExtendContext(rctx)
			cancel()
			if err != nil || !ok {
				end(fmt.Errorf("leader: leadership renewal failed: %w", errors.Join(err, errors.New("not extended"))))
				return
			}
			trust.Reset(time.Until(began.Add(ttl - margin)))
		}
	}
}

func (e *Elector) logger() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.Default()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
