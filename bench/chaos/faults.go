package chaos

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// faultActor injects the faults: Redis loses its data (FLUSHALL) or dies
// (SIGKILL, restarted empty), PostgreSQL stops (a clean fast shutdown) and
// starts again, the leading syncer is paused past its lease (SIGSTOP, then
// SIGCONT) or killed, an API is killed. Each fault is undone after its Hold
// (or at the quiet point, whichever comes first).
type faultActor struct {
	d   *deployment
	rec *recorder
}

func (f *faultActor) run(ctx context.Context, steps []step) {
	for _, s := range steps {
		if !pause(ctx, s.Delay) {
			return
		}
		f.rec.step(s, f.do(ctx, s))
	}
}

func (f *faultActor) do(ctx context.Context, s step) string {
	switch s.Kind {
	case faultRedisFlush:
		return outcome("FLUSHALL", f.d.srv.rdb.FlushAll(ctx).Err())
	case faultRedisKill:
		return f.hold(ctx, s, "redis", f.d.srv.redis.Crash, f.d.srv.redis.Relaunch)
	case faultPGStop:
		return f.hold(ctx, s, "postgres", f.d.srv.pg.Shutdown, f.d.srv.pg.Relaunch)
	case faultLeaderPause:
		n, err := f.d.leader(ctx)
		if err != nil {
			return "no leader to pause: " + err.Error()
		}
		return f.hold(ctx, s, n.name, func() error { return n.proc.Signal(syscall.SIGSTOP) },
			func() error { return n.proc.Signal(syscall.SIGCONT) })
	case faultLeaderKill:
		n, err := f.d.leader(ctx)
		if err != nil {
			return "no leader to kill: " + err.Error()
		}
		return f.hold(ctx, s, n.name, n.proc.Kill, n.proc.Relaunch)
	case faultAPIKill:
		n := f.d.apis[s.Pick%uint64(len(f.d.apis))]
		return f.hold(ctx, s, n.name, n.proc.Kill, n.proc.Relaunch)
	}
	return "unknown fault"
}

// hold applies a fault, waits s.Hold (less when ctx ends) and undoes it.
func (f *faultActor) hold(ctx context.Context, s step, target string, apply, undo func() error) string {
	if err := apply(); err != nil {
		return outcome(target, err)
	}
	began := time.Now()
	pause(ctx, s.Hold)
	err := undo()
	f.rec.note(s.Round, "fault", "restored", fmt.Sprintf("%s %s after %s: %s", s.Kind, target,
		time.Since(began).Round(time.Millisecond), outcome("", err)))
	return fmt.Sprintf("%s for %s", target, s.Hold)
}

func outcome(what string, err error) string {
	var msg string
	switch {
	case err == nil:
		msg = "ok"
	case errors.Is(err, context.Canceled):
		msg = "cancelled"
	default:
		msg = err.Error()
	}
	if what == "" {
		return msg
	}
	return what + ": " + msg
}
