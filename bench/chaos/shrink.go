package chaos

import (
	"context"
	"time"
)

// shrink looks for a shorter history that still fails: it replays subsets
// of the failing trial's steps (its rounds up to the one that failed) on
// fresh deployments, first none at all, then by delta debugging (ddmin),
// until deadline. A replay fails when it shows a violation of a kind the
// trial showed. It returns the history of the shortest failing replay (nil
// when no replay failed) and how many replays it ran.
func (r *runner) shrink(ctx context.Context, failed *trialResult, deadline time.Time) ([]event, int) {
	kinds := map[string]bool{}
	for _, v := range failed.violations {
		kinds[v.Kind] = true
	}
	var best []event
	bestLen, replays := -1, 0
	stop := func() bool { return ctx.Err() != nil || time.Now().After(deadline) }
	fails := func(steps []step) bool {
		if stop() {
			return false
		}
		replays++
		keep := make(map[int]bool, len(steps))
		for _, s := range steps {
			keep[s.Index] = true
		}
		res, err := r.trial(ctx, func(s step) bool { return keep[s.Index] }, failed.failRound, 0)
		if err != nil {
			r.o.Log.Warn("chaos replay did not complete", "steps", len(steps), "err", err)
			return false
		}
		bad := false
		for _, v := range res.violations {
			bad = bad || kinds[v.Kind]
		}
		r.o.Log.Info("chaos replay", "steps", len(steps), "fails", bad)
		if bad && (bestLen < 0 || len(steps) < bestLen) {
			best, bestLen = res.rec.history(), len(steps)
		}
		return bad
	}
	if !fails(nil) {
		ddmin(failed.steps, fails, stop)
	}
	return best, replays
}

// ddmin is Zeller's delta debugging: it returns a subset of items that
// still fails and from which no single chunk (at the finest granularity
// tried) can be removed, trying to remove ever smaller chunks until stop.
func ddmin(items []step, fails func([]step) bool, stop func() bool) []step {
	n := 2
	for len(items) >= 2 && !stop() {
		chunks := split(items, n)
		next := []step(nil)
		for _, c := range chunks {
			if fails(c) {
				next, n = c, 2
				break
			}
		}
		if next == nil && n > 2 {
			for i := range chunks {
				if c := without(chunks, i); fails(c) {
					next, n = c, max(n-1, 2)
					break
				}
			}
		}
		if next != nil {
			items = next
			continue
		}
		if n >= len(items) {
			break
		}
		n = min(2*n, len(items))
	}
	return items
}

// split cuts items into n chunks of nearly equal length.
func split(items []step, n int) [][]step {
	out := make([][]step, 0, n)
	for i := 0; i < n; i++ {
		lo, hi := i*len(items)/n, (i+1)*len(items)/n
		if hi > lo {
			out = append(out, items[lo:hi])
		}
	}
	return out
}

// without is every chunk but the i-th, joined.
func without(chunks [][]step, i int) []step {
	var out []step
	for j, c := range chunks {
		if j != i {
			out = append(out, c...)
		}
	}
	return out
}
