package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Run starts private Redis and PostgreSQL servers and a deployment of
// bufferd on them, runs rounds of the seed's schedule until o.Duration
// passed, checks every quiet point, and on a violation looks for a shorter
// history that still fails (within o.ShrinkBudget). The Report tells what
// was done and found, the error which check failed first.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	began := time.Now()
	rep := &Report{seed: o.Seed}
	dir, keep, err := workDir(o.WorkDir)
	if err != nil {
		return rep, fmt.Errorf("%w: %w", errSetup, err)
	}
	srv, err := startServers()
	if err != nil {
		return rep, err
	}
	defer srv.close()
	pl := planner{seed: o.Seed, clients: o.Clients, pools: o.Pools, round: o.Round, faults: !o.NoFaults}
	r := &runner{o: &o, pl: pl, srv: srv, dir: dir}
	res, err := r.trial(ctx, nil, -1, o.Duration)
	rep.fill(res)
	if err == nil && len(res.violations) > 0 && o.ShrinkBudget > 0 {
		rep.shortest, rep.shrinkTrials = r.shrink(ctx, res, time.Now().Add(o.ShrinkBudget))
	}
	rep.elapsed = time.Since(began)
	if err == nil && rep.failed() {
		keep = true
		err = fmt.Errorf("%w: seed %d: %d violation(s), the first: %s", errViolation, o.Seed, len(rep.violations), rep.violations[0])
	}
	if err != nil && !errors.Is(err, errViolation) {
		rep.stopReason = err.Error()
	}
	if keep || err != nil {
		rep.workDir = dir
	} else {
		_ = os.RemoveAll(dir)
	}
	return rep, err
}

// workDir returns the directory for the processes' logs and whether it is
// the caller's (kept).
func workDir(dir string) (string, bool, error) {
	if dir != "" {
		return dir, true, os.MkdirAll(dir, 0o755)
	}
	d, err := os.MkdirTemp("", "bufferd-chaos-")
	return d, false, err
}

// runner runs trials (the run itself, then replays) on one pair of servers.
type runner struct {
	o      *Options
	pl     planner
	srv    *servers
	dir    string
	trials int
}

// trialResult is what one trial did.
type trialResult struct {
	rec        *recorder
	rounds     int
	quiet      int
	violations []violation
	steps      []step // every step carried out
	failRound  int
}

// trial runs a fresh deployment through rounds: until duration passed
// since the first round began (a first run, lastRound -1), or rounds
// 0..lastRound keeping only the steps keep accepts (a replay). It stops at
// the first quiet point that fails.
func (r *runner) trial(ctx context.Context, keep func(step) bool, lastRound int, duration time.Duration) (*trialResult, error) {
	n := r.trials
	r.trials++
	dir := filepath.Join(r.dir, fmt.Sprintf("trial-%d", n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	w := newWeb()
	defer w.close()
	d, err := deploy(ctx, r.srv, r.o, r.pl, n, dir, w)
	if err != nil {
		return &trialResult{rec: newRecorder(r.o.Seed)}, err
	}
	defer d.stop()
	t := &trial{runner: r, d: d, rec: newRecorder(r.o.Seed), fences: map[int64]int64{}}
	defer t.saveHistory(filepath.Join(dir, "history.txt"))
	res := &trialResult{rec: t.rec, failRound: -1}
	r.o.Log.Info("chaos trial started", "trial", n, "seed", r.o.Seed, "pools", len(d.pools), "dir", dir)
	if _, err := t.quiet(ctx, -1); err != nil {
		return res, err
	}
	deadline := time.Now().Add(duration)
	for round := 0; ; round++ {
		steps := r.pl.plan(round)
		if keep != nil {
			steps = filter(steps, keep)
		}
		res.steps = append(res.steps, steps...)
		t.round(ctx, round, steps)
		res.rounds++
		vs, err := t.quiet(ctx, round)
		res.quiet++
		if err != nil {
			return res, err
		}
		if len(vs) > 0 {
			res.violations, res.failRound = vs, round
			return res, nil
		}
		if ctx.Err() != nil || lastRound >= 0 && round >= lastRound || lastRound < 0 && time.Now().After(deadline) {
			return res, ctx.Err()
		}
	}
}

// trial is one deployment going through rounds.
type trial struct {
	*runner
	d      *deployment
	rec    *recorder
	fences map[int64]int64
}

// saveHistory writes the trial's history to path.
func (t *trial) saveHistory(path string) {
	var b strings.Builder
	for _, e := range t.rec.history() {
		b.WriteString(e.String() + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.o.Log.Warn("chaos: history not saved", "err", err)
	}
}

func filter(steps []step, keep func(step) bool) []step {
	var out []step
	for _, s := range steps {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// round runs the round's clients, chain events and faults at once and
// returns when all of them are done.
func (t *trial) round(ctx context.Context, round int, steps []step) {
	byActor := map[int][]step{}
	for _, s := range steps {
		byActor[s.Actor] = append(byActor[s.Actor], s)
	}
	t.rec.note(round, "driver", "round", fmt.Sprintf("%d steps", len(steps)))
	var wg sync.WaitGroup
	for actor, ss := range byActor {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch actor {
			case actorChain:
				(&chainActor{d: t.d, rec: t.rec, foreign: "0020" + t.pl.hex32(1000)}).run(ctx, ss)
			case actorFault:
				(&faultActor{d: t.d, rec: t.rec}).run(ctx, ss)
			default:
				(&client{n: actor, d: t.d, rec: t.rec, seed: t.o.Seed}).run(ctx, ss)
			}
		}()
	}
	wg.Wait()
}

// quiet brings the deployment to a quiet point (faults undone, every grant
// of unknown outcome run out, the syncer at the chain's tip, a sweep
// passed) and checks it. Round -1 is the start, before any step.
func (t *trial) quiet(ctx context.Context, round int) ([]violation, error) {
	did, err := t.d.restore(ctx)
	if len(did) > 0 {
		t.rec.note(round, "driver", "restore", fmt.Sprint(did))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: restore: %w", errNotQuiet, err)
	}
	if until := t.rec.uncertainUntil(); time.Until(until) > 0 {
		pause(ctx, time.Until(until)+expiryMargin)
	}
	if err := t.waitIndexed(ctx); err != nil {
		return nil, err
	}
	t.rec.settled()
	pause(ctx, t.sweepWait())
	if t.o.beforeCheck != nil {
		if err := t.o.beforeCheck(ctx, t.d.probe(round)); err != nil {
			return nil, fmt.Errorf("chaos: before check: %w", err)
		}
	}
	found := t.rec.takeFound()
	var vs []violation
	for attempt := 1; ; attempt++ {
		vs, err = t.check(ctx, round)
		if err == nil && len(vs) == 0 || attempt == settleAttempts || ctx.Err() != nil {
			break
		}
		pause(ctx, max(settlePause, t.sweepWait()/2))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: check: %w", errNotQuiet, err)
	}
	vs = append(found, vs...)
	t.rec.note(round, "check", "quiet point", describe(vs))
	return vs, nil
}

// maxSweepWait caps the waits for a sweep: a sweep interval longer than
// that is a sweep turned off.
const maxSweepWait = 5 * time.Second

// sweepWait is how long a quiet point waits for the sweep to pass.
func (t *trial) sweepWait() time.Duration {
	return min(t.o.SweepInterval, maxSweepWait) + 300*time.Millisecond
}

// check reads the deployment and runs every check once.
func (t *trial) check(ctx context.Context, round int) ([]violation, error) {
	s, err := read(ctx, t.d)
	if err != nil {
		return nil, err
	}
	rows, err := readAllJournal(ctx, t.d)
	if err != nil {
		return nil, err
	}
	fences := make(map[int64]int64, len(t.fences))
	for k, v := range t.fences {
		fences[k] = v
	}
	vs := append(evaluate(round, t.d.pools, s), checkHistory(round, rows, t.rec.acknowledged(), t.rec.grants(), fences)...)
	if len(vs) == 0 {
		t.fences = fences
	}
	return vs, nil
}

// waitIndexed waits until a syncer leads, every pool is loaded in Redis and
// indexed up to the simulator's tip, and that tip held for a few index
// polls (the mempool overlay is applied after the blocks).
func (t *trial) waitIndexed(ctx context.Context) error {
	deadline := time.Now().Add(indexTimeout)
	var last string
	for {
		ok, why := t.indexed(ctx)
		if ok {
			pause(ctx, 4*indexPoll)
			if ok, why = t.indexed(ctx); ok {
				return nil
			}
		}
		last = why
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%w: the syncer did not reach the chain's tip within %s: %s", errNotQuiet, indexTimeout, last)
		}
		pause(ctx, 100*time.Millisecond)
	}
}

// indexed reports whether the deployment has caught up with the chain, and
// if not why.
func (t *trial) indexed(ctx context.Context) (bool, string) {
	var tip struct {
		Height int64  `json:"height"`
		Hash   string `json:"hash"`
	}
	if err := t.d.web.call(ctx, http.MethodGet, t.d.chain+"/status", nil).decode(&tip); err != nil {
		return false, "chain status: " + err.Error()
	}
	var st statusJSON
	var err error
	for i := range t.d.apis {
		if err = t.d.web.call(ctx, http.MethodGet, t.d.api(i)+"/v1/status", nil).decode(&st); err == nil {
			break
		}
	}
	if err != nil {
		return false, "status: " + err.Error()
	}
	if st.Leader == nil {
		return false, "no leader"
	}
	at := map[int64]bool{}
	var where []string
	for _, p := range st.Pools {
		c, ok := p.Sync["index"]
		at[p.ID] = ok && c.Height == tip.Height && c.BlockHash == tip.Hash
		where = append(where, fmt.Sprintf("pool %d at %d %s", p.ID, c.Height, short1(c.BlockHash)))
	}
	for _, p := range t.d.pools {
		if !at[p.ID] {
			return false, fmt.Sprintf("not indexed up to the tip %d %s (leader %s epoch %d): %s",
				tip.Height, short1(tip.Hash), st.Leader.ID, st.Leader.Epoch, strings.Join(where, ", "))
		}
		if loaded, err := t.d.locks.Loaded(ctx, p.ID); err != nil || !loaded {
			return false, fmt.Sprintf("pool %d not loaded in redis (%v)", p.ID, err)
		}
	}
	return true, ""
}

// fill copies a trial's results into the report.
func (rep *Report) fill(res *trialResult) {
	if res == nil {
		return
	}
	rec := res.rec
	rec.mu.Lock()
	rep.ops, rep.outcomes, rep.chain, rep.faults = rec.ops, rec.outs, rec.chain, rec.faults
	rec.mu.Unlock()
	rep.rounds, rep.quietPoints = res.rounds, res.quiet
	rep.grants = len(rec.grants())
	rep.violations = res.violations
	rep.history = rec.history()
	lost := map[string]bool{}
	for _, v := range res.violations {
		if v.Kind == kindLost {
			lost[v.Detail] = true
		}
	}
	rep.lost = len(lost)
}
