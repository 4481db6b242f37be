package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/metrics"
)

// errJournalClosed means the journal was closed before the write was queued.
var errJournalClosed = errors.New("storage: journal closed")

// Journal defaults.
const (
	// defaultJournalBatch is how many writes one journal transaction carries at most.
	defaultJournalBatch = 256
	// defaultJournalTimeout bounds one journal transaction.
	defaultJournalTimeout = 10 * time.Second
)

// recordChunk bounds the rows of one multi-row reservations INSERT.
const recordChunk = 500

// lookupChunk bounds the ids one lookup of RecordReleases asks for.
const lookupChunk = 5000

// JournalOptions configure a Journal.
type JournalOptions struct {
	// Timeout bounds one transaction; 0 means 10s.
	Timeout time.Duration
}

// Journal is the reservation journal lockmgr writes through (it implements
// lockmgr.Journal) with group commit: a writer goroutine commits queued
// writes together, one transaction per batch. A lone write commits at once;
// writes that arrive while a transaction is in flight wait for it and then go
// together in the next one. Deferred writes (Released) have a writer of
// their own, so grants never queue behind releases. On PostgreSQL a batch of
// grants only, or of endings only, is one statement (one round trip); other
// batches are a transaction. If a batch fails, its writes are retried one by one, so a bad write (stale
// fence, ended reservation) fails only its caller.
//
// Each call waits until its write committed or failed, or until its context
// ends: then it returns ctx.Err(), and the write may still commit (a write
// whose context ended before its batch started is dropped). Errors wrap
// ErrStaleFence, ErrNotLive or ErrNotFound where they apply; a write
// queued after Close fails.
type Journal struct {
	store    *Store
	maxBatch int
	timeout  time.Duration
	writers  [2]*journalWriter // the writer of waited-for writes, the deferred writes' writer

	batches  atomic.Int64
	deferred deferredCount // deferred writes not yet committed or given up
	// reloaded is the function FollowReloads set, or nil.
	reloaded atomic.Pointer[func(pool int64, ids []string)]
}

// journalWriter is one writer goroutine and its queue.
type journalWriter struct {
	mu     sync.Mutex
	queue  []*journalWrite
	closed bool
	linger time.Duration // how long a batch waits to fill up (nobody waits on it)
	wake   chan struct{} // capacity 1: the queue may have changed
	done   chan struct{} // closed when the writer has stopped
	// landed are the deferred endings of the last batch that committed
	// (finish adds them; only the writer's goroutine uses it).
	landed []*journalWrite
}

// journalWrite is one queued Record or Update.
type journalWrite struct {
	ctx    context.Context
	record *Reservation      // a new reservation, or
	id     string            // the reservation to update
	change reservationUpdate // and how
	// load is the pool's load into Redis the write was decided in: a grant
	// made in a load a rebuild replaced is refused; a deferred ending
	// (release, withdrawal) of pool written after that is followed
	// (FollowReloads).
	load string
	pool int64
	err  chan error // capacity 1: the outcome, or
	// for a deferred write (nobody waits): retried until it applies, is
	// refused, or until giveUp.
	deferred bool
	giveUp   time.Time
	tries    int
	taken    bool // in a batch (guarded by its writer's mu)
	// withdraw makes record, a grant undone in Redis, not live in the
	// journal (Journal.Withdrawn): written on its own, never batched.
	withdraw bool
}

// NewJournal starts a journal writing to s. Close it to flush and stop it.
func NewJournal(s *Store, opts JournalOptions) *Journal {
	return newJournal(s, opts, defaultJournalBatch)
}

// newJournal starts a journal that commits at most maxBatch writes in one
// transaction.
func newJournal(s *Store, opts JournalOptions, maxBatch int) *Journal {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultJournalTimeout
	}
	j := &Journal{store: s, maxBatch: maxBatch, timeout: opts.Timeout}
	for i := range j.writers {
		w := &journalWriter{wake: make(chan struct{}, 1), done: make(chan struct{})}
		if i == 1 {
			w.linger = deferredLinger
		}
		j.writers[i] = w
		go j.run(w)
	}
	return j
}

// writerOf is the writer of w.
func (j *Journal) writerOf(w *journalWrite) *journalWriter {
	if w.deferred {
		return j.writers[1]
	}
	return j.writers[0]
}

var _ lockmgr.Journal = (*Journal)(nil)

// Record writes a new reservation (state held unless r.State says otherwise)
// and what it holds. Recording the same reservation again is a no-op; a
// fence another reservation of the pool already has fails with
// ErrStaleFence, an idempotency key another one has with an error wrapping
// lockmgr.ErrKeyTaken.
func (j *Journal) Record(ctx context.Context, r *lockmgr.Reservation) error {
	row := journalRow(r)
	if _, err := prepareRecord(&row); err != nil {
		return err
	}
	return j.submit(ctx, &journalWrite{record: &row, load: r.Load})
}

// Update writes a changed reservation (state, expiry, tx id, fence) with the
// semantics of Store.updateReservation: the row must be live, in one of the
// states from (any live one when empty), with a fence no newer than r.Fence.
// A row that ended fails wrapping lockmgr.ErrEnded, a live row in another
// state wrapping lockmgr.ErrNotHeld.
func (j *Journal) Update(ctx context.Context, r *lockmgr.Reservation, from ...string) error {
	u := updateOf(r, from)
	if u.State == ResReleased || u.State == ResExpired || u.State == ResInvalidated {
		// Ending keeps the row's expiry and tx id; without them the write
		// is one of the batch's ended in a constant number of statements.
		u.TxID, u.ExpiresAt = "", time.Time{}
	}
	if err := checkUpdate(r.ID, u); err != nil {
		return err
	}
	return lockError(j.submit(ctx, &journalWrite{id: r.ID, change: u}))
}

// Released records that r was released at at (the Redis clock) without
// waiting: the release took effect in Redis and was answered. The write is
// retried while the database fails, until some time after r's expiry, by
// when the syncer marks the reservation expired anyway. A release this
// journal never writes leaves its reservation live in the journal until its
// expiry: what that means for a rebuild is in lockmgr's package doc.
func (j *Journal) Released(r *lockmgr.Reservation, at time.Time) {
	w := deferredWrite(r, releaseUpdate(r.Fence, at))
	w.pool, w.load = r.PoolID, r.Load
	j.queueDeferred(w)
}

// FollowReloads sets end, which the journal calls with the deferred endings
// (Released, Withdrawn) it wrote after their pool's load into Redis changed
// (a rebuild began after the ending was decided, so its snapshot may have
// restored them live). end must not block.
func (j *Journal) FollowReloads(end func(pool int64, ids []string)) {
	j.reloaded.Store(&end)
}

// UpdateLater writes a change as Update does, without waiting: the change
// took effect in Redis and Update failed (the database was down or slow), so
// the journal learns it as soon as the database answers again, retried as
// a release is. A change the row refuses (it ended meanwhile) is dropped.
func (j *Journal) UpdateLater(r *lockmgr.Reservation, from ...string) {
	if u := updateOf(r, from); checkUpdate(r.ID, u) == nil {
		j.queueDeferred(deferredWrite(r, u))
	}
}

// Withdrawn records, without waiting, that the grant r was undone in Redis
// after its Record failed for a reason other than a refusal. That Record's
// statement may have reached PostgreSQL (a server paused or cut off after it
// took the statement carries it out later), so the journal is told to end
// up without r live either way: r is inserted released unless a row of r is
// there, and a row of r still held becomes released. A grant never written
// is then in the journal as released, never seen by a client. Retried as a
// release is.
func (j *Journal) Withdrawn(r *lockmgr.Reservation) {
	row := journalRow(r)
	row.State, row.UpdatedAt = ResReleased, time.Now()
	// The failed request's idempotency key is free for its retry.
	row.IdempotencyKey, row.Fingerprint = "", ""
	if _, err := prepareRecord(&row); err != nil {
		slog.Warn("storage: journal cannot withdraw a grant", "reservation", r.ID, "err", err)
		return
	}
	w := deferredWrite(r, reservationUpdate{State: ResReleased}) // the state for the log of a write given up
	w.record, w.withdraw, w.pool, w.load = &row, true, r.PoolID, r.Load
	j.queueDeferred(w)
}

// updateOf is the journal write of a change of r.
func updateOf(r *lockmgr.Reservation, from []string) reservationUpdate {
	return reservationUpdate{Fence: r.Fence, State: r.State, TxID: r.TxID, ExpiresAt: r.ExpiresAt, From: from, At: r.UpdatedAt}
}

// deferredWrite is change of r as a write of the deferred writer, retried
// until a while past r's expiry.
func deferredWrite(r *lockmgr.Reservation, change reservationUpdate) *journalWrite {
	return &journalWrite{ctx: context.Background(), err: make(chan error, 1), id: r.ID, deferred: true,
		giveUp: r.ExpiresAt.Add(deferredGrace), change: change}
}

// queueDeferred counts the deferred write w and queues it.
func (j *Journal) queueDeferred(w *journalWrite) {
	j.deferred.add(1)
	metrics.JournalDeferred.Inc()
	if err := j.enqueue(w); err != nil {
		j.drop(w, err)
	}
}

// releaseUpdate is the journal write of a release Redis made at at: from
// held, or from expired, where the syncer marked the reservation expired
// before the write of its release arrived (Redis released it before it ran
// out).
func releaseUpdate(fence int64, at time.Time) reservationUpdate {
	return reservationUpdate{Fence: fence, State: ResReleased, From: []string{ResHeld, ResExpired}, At: at}
}

// RecordReleases writes releases Redis made (lockmgr.Manager.RecentReleases)
// whose journal write may have been lost, and returns how many it applied:
// the others were in the journal already, or ended otherwise.
func (s *Store) RecordReleases(ctx context.Context, rs []lockmgr.ReleaseRecord) (int, error) {
	if len(rs) == 0 {
		return 0, nil
	}
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	// Almost always the API wrote them all: look for the few it did not.
	var todo []lockmgr.ReleaseRecord
	for start := 0; start < len(rs); start += lookupChunk {
		chunk := rs[start:min(start+lookupChunk, len(rs))]
		ids := make([]string, len(chunk))
		for i, r := range chunk {
			ids[i] = r.ID
		}
		var open []string
		err := s.db.WithContext(ctx).Model(&Reservation{}).Where("id IN ? AND state IN ?", ids,
			[]string{ResHeld, ResExpired}).Pluck("id", &open).Error
		if err != nil {
			return 0, fmt.Errorf("storage: record releases: %w", err)
		}
		for _, r := range chunk {
			if slices.Contains(open, r.ID) {
				todo = append(todo, r)
			}
		}
	}
	applied := 0
	for start := 0; start < len(todo); start += recordChunk {
		chunk := todo[start:min(start+recordChunk, len(todo))]
		batch := make([]*journalWrite, len(chunk))
		for i, r := range chunk {
			batch[i] = &journalWrite{id: r.ID, change: releaseUpdate(r.Fence, r.At)}
		}
		results, err := s.journalBatch(ctx, batch)
		if err != nil {
			return applied, fmt.Errorf("storage: record releases: %w", err)
		}
		for _, err := range results {
			if err == nil {
				applied++
			}
		}
	}
	return applied, nil
}

// deferredGrace is how long after a reservation's expiry a deferred write
// of it is still retried.
const deferredGrace = time.Minute

// deferredLinger is how long the deferred writes' writer lets a batch fill
// up: one statement for many releases costs PostgreSQL far less than one
// each, and nobody waits for them.
const deferredLinger = 20 * time.Millisecond

// deferredRetry bounds the pause before a deferred write is tried again.
const deferredRetry = 2 * time.Second

// finish delivers the outcome of w: to its caller, or for a deferred write,
// by trying it again later when the database failed.
func (j *Journal) finish(w *journalWrite, err error) {
	if !w.deferred {
		w.err <- err
		return
	}
	switch {
	case err == nil && w.load != "":
		// Written; done once followReloads has seen it.
		wr := j.writerOf(w)
		wr.landed = append(wr.landed, w)
	case err == nil, errors.Is(err, ErrNotLive), errors.Is(err, errWrongState), errors.Is(err, ErrNotFound),
		errors.Is(err, ErrStaleFence), errors.Is(err, errInvalidArgument):
		// Written, or refused for good (the chain or the sweep ended it first).
		j.deferredDone()
	case time.Now().After(w.giveUp):
		j.drop(w, err)
	default:
		w.tries++
		pause := min(deferredRetry, time.Duration(w.tries)*100*time.Millisecond)
		time.AfterFunc(pause, func() {
			if err := j.enqueue(w); err != nil {
				j.drop(w, err)
			}
		})
	}
}

// followReloads passes the deferred endings of landed, which committed, whose
// pool's load changed since they were decided, to the function FollowReloads
// set, then counts them out (Flush). The loads are read after the commit: a
// rebuild that begins a load after that read takes its snapshot after the
// endings committed.
func (j *Journal) followReloads(landed []*journalWrite) {
	defer func() {
		for range landed {
			j.deferredDone()
		}
	}()
	end := j.reloaded.Load()
	if end == nil {
		return
	}
	var pools []int64
	for _, w := range landed {
		if !slices.Contains(pools, w.pool) {
			pools = append(pools, w.pool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
	current, err := poolLoads(j.store.db.WithContext(ctx), pools, false)
	cancel()
	ended := map[int64][]string{}
	for _, w := range landed {
		// Without the loads every ending is followed: ending again what
		// Redis has ended does nothing.
		if cur := current[w.pool]; err != nil || (cur != "" && cur != w.load) {
			ended[w.pool] = append(ended[w.pool], w.id)
		}
	}
	for pool, ids := range ended {
		metrics.JournalEndingsAfterReload.Add(float64(len(ids)))
		(*end)(pool, ids)
	}
}

// drop gives a deferred write up.
func (j *Journal) drop(w *journalWrite, err error) {
	slog.Warn("storage: journal gave up a deferred write", "reservation", w.id, "state", w.change.State, "err", err)
	metrics.JournalDeferredDropped.Inc()
	j.deferredDone()
}

// deferredDone counts a deferred write out: written or given up.
func (j *Journal) deferredDone() {
	metrics.JournalDeferred.Dec()
	j.deferred.add(-1)
}

// enqueue adds w to its writer's queue unless the journal is closed
// (errJournalClosed) or w's context ended.
func (j *Journal) enqueue(w *journalWrite) error {
	wr := j.writerOf(w)
	wr.mu.Lock()
	if wr.closed {
		wr.mu.Unlock()
		return errJournalClosed
	}
	if err := w.ctx.Err(); err != nil {
		wr.mu.Unlock()
		return err
	}
	wr.queue = append(wr.queue, w)
	wr.mu.Unlock()
	wr.signal()
	return nil
}

// Flush waits until every deferred write so far has committed (and been
// passed to the function of FollowReloads where it applies) or been given
// up, or until ctx ends.
func (j *Journal) Flush(ctx context.Context) error {
	select {
	case <-j.deferred.zero():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deferredCount counts deferred writes; zero is closed while there are none.
type deferredCount struct {
	mu    sync.Mutex
	n     int
	empty chan struct{}
}

func (d *deferredCount) add(delta int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.empty == nil {
		d.empty = make(chan struct{})
		close(d.empty)
	}
	if d.n == 0 && delta > 0 {
		d.empty = make(chan struct{})
	}
	d.n += delta
	if d.n == 0 {
		close(d.empty)
	}
}

// zero returns a channel closed once no deferred write is left.
func (d *deferredCount) zero() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.empty == nil {
		d.empty = make(chan struct{})
		close(d.empty)
	}
	return d.empty
}

// lockError wraps the journal's refusals in lockmgr's vocabulary.
func lockError(err error) error {
	switch {
	case errors.Is(err, ErrNotLive):
		return fmt.Errorf("%w (%w)", err, lockmgr.ErrEnded)
	case errors.Is(err, errWrongState):
		return fmt.Errorf("%w (%w)", err, lockmgr.ErrNotHeld)
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("%w (%w)", err, lockmgr.ErrNotFound)
	}
	return err
}

// Lookup returns the journal's reservation id (lockmgr.ErrNotFound when
// there is none), its UTXOs with their amounts.
func (j *Journal) Lookup(ctx context.Context, id string) (*lockmgr.Reservation, error) {
	row, err := j.store.GetReservation(ctx, id)
	if err != nil {
		return nil, lockError(err)
	}
	return j.store.lockReservation(ctx, row)
}

// LookupKey returns the reservation made with the idempotency key of digest
// key (lockmgr.ErrNotFound when there is none).
func (j *Journal) LookupKey(ctx context.Context, key string) (*lockmgr.Reservation, error) {
	row, err := j.store.reservationByKey(ctx, key)
	if err != nil {
		return nil, lockError(err)
	}
	return j.store.lockReservation(ctx, row)
}

// Close commits what is queued, waits (at most the journal's timeout) for
// the deferred writes still failing, then stops the writer. Later calls fail.
// Close the journal before its Store.
func (j *Journal) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
	_ = j.Flush(ctx)
	cancel()
	for _, w := range j.writers {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		w.signal()
	}
	for _, w := range j.writers {
		<-w.done
	}
}

func (w *journalWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// submit queues w and waits for its outcome. When ctx ends first, a write
// still queued is abandoned (commit drops it), but one already in a batch is
// waited for: the batch commits it when other callers still wait, and a
// caller told "failed" would undo in Redis a grant the journal keeps. That
// wait is short: a batch whose callers all gave up is cancelled
// (batchContext), and every batch is bounded by the journal's timeout.
func (j *Journal) submit(ctx context.Context, w *journalWrite) error {
	w.ctx = ctx
	w.err = make(chan error, 1)
	if err := j.enqueue(w); err != nil {
		return err
	}
	select {
	case err := <-w.err:
		return err
	case <-ctx.Done():
	}
	wr := j.writerOf(w)
	wr.mu.Lock()
	taken := w.taken
	wr.mu.Unlock()
	if !taken {
		return ctx.Err()
	}
	return <-w.err
}

// run is a writer: it commits batches of w's queue until the journal is
// closed and the queue empty.
func (j *Journal) run(w *journalWriter) {
	defer close(w.done)
	for {
		w.fill(j.maxBatch)
		batch, closed := w.take(j.maxBatch)
		if len(batch) > 0 {
			j.commit(batch)
			if len(w.landed) > 0 {
				j.followReloads(w.landed)
				w.landed = nil
			}
			continue
		}
		if closed {
			return
		}
		<-w.wake
	}
}

// fill lets a lingering writer's queue fill up: it pauses for the linger
// unless the queue holds limit writes, is empty or closed.
func (w *journalWriter) fill(limit int) {
	if w.linger <= 0 {
		return
	}
	w.mu.Lock()
	wait := len(w.queue) > 0 && len(w.queue) < limit && !w.closed
	w.mu.Unlock()
	if wait {
		time.Sleep(w.linger)
	}
}

// take removes up to limit writes from the queue.
func (w *journalWriter) take(limit int) ([]*journalWrite, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := min(len(w.queue), limit)
	batch := w.queue[:n:n]
	for _, x := range batch {
		x.taken = true
	}
	if n == len(w.queue) {
		w.queue = nil
	} else {
		w.queue = w.queue[n:]
	}
	return batch, w.closed
}

// commit writes a batch at once, else each write on its own.
func (j *Journal) commit(batch []*journalWrite) {
	live := make([]*journalWrite, 0, len(batch))
	for _, w := range batch {
		switch {
		case w.ctx.Err() != nil:
			j.finish(w, w.ctx.Err()) // its caller has gone: drop the write
		case w.withdraw:
			j.finish(w, j.commitOne(w))
		default:
			live = append(live, w)
		}
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := j.batchContext(live)
	defer cancel()
	start := time.Now()
	results, err := j.store.journalBatch(ctx, live)
	metrics.JournalCommitDuration.Observe(time.Since(start).Seconds())
	if err == nil {
		j.batches.Add(1)
		for i, w := range live {
			j.finish(w, results[i])
		}
		return
	}
	if ctx.Err() != nil {
		// Timed out, or every caller gave up: the database is too slow or
		// unreachable, so retrying one by one would only wait again.
		err = fmt.Errorf("storage: journal: %w", err)
		for _, w := range live {
			if cerr := w.ctx.Err(); cerr != nil {
				j.finish(w, cerr) // its caller gave up: say so, not the batch's error
			} else {
				j.finish(w, err)
			}
		}
		return
	}
	if len(live) > 1 {
		slog.Warn("storage: journal batch failed, retrying one by one", "writes", len(live), "err", err)
	}
	for _, w := range live {
		j.finish(w, j.commitOne(w))
	}
}

// commitOne writes w in its own transaction, bounded by its caller's context.
func (j *Journal) commitOne(w *journalWrite) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(w.ctx, j.timeout)
	defer cancel()
	if w.withdraw {
		return j.store.withdrawReservation(ctx, *w.record)
	}
	if w.record != nil {
		return j.store.recordReservation(ctx, *w.record, w.load)
	}
	return j.store.updateReservation(ctx, w.id, w.change)
}

// batchContext bounds a batch by the journal's timeout and ends it early once
// every caller in it has given up.
func (j *Journal) batchContext(batch []*journalWrite) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
	var waiting atomic.Int64
	waiting.Store(int64(len(batch)))
	stops := make([]func() bool, len(batch))
	for i, w := range batch {
		stops[i] = context.AfterFunc(w.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// journalBatch writes a batch at once: in one statement when it is only
// grants or only endings (recordBatch, endBatch), else in one transaction:
// one multi-row INSERT for the new reservations (rows that conflict are
// explained, not failed), one for what they hold, then the updates by
// reservation id (in arrival order for one reservation); updates that do not
// apply are explained with one SELECT. It returns the outcome of each write,
// or an error if the batch failed (then nothing was written).
func (s *Store) journalBatch(ctx context.Context, batch []*journalWrite) ([]error, error) {
	if results, ok, err := s.recordBatch(ctx, batch); ok {
		return results, err
	}
	if results, ok, err := s.endBatch(ctx, batch); ok {
		return results, err
	}
	return s.txBatch(ctx, batch)
}

// endBatch writes a batch of endings only (releases, mostly), each of a
// different reservation, on PostgreSQL, in a single statement: in id order,
// it ends the reservations still in a state the ending applies to.
// The endings that did not apply are explained. It reports ok=false when
// the batch is not one it writes.
func (s *Store) endBatch(ctx context.Context, batch []*journalWrite) (results []error, ok bool, err error) {
	if s.dialect != dialectPostgres || len(batch) > recordChunk {
		return nil, false, nil
	}
	seen := make(map[string]bool, len(batch))
	for _, w := range batch {
		if w.record != nil || !ended(w.change) || seen[w.id] {
			return nil, false, nil
		}
		seen[w.id] = true
	}
	var values strings.Builder
	args := make([]any, 0, 5*len(batch))
	for k, w := range byID(batch) {
		if k > 0 {
			values.WriteString(",")
		}
		values.WriteString("(?::text, ?::bigint, ?::text, ?::text, ?::timestamptz)")
		c := w.change
		args = append(args, w.id, c.Fence, c.State, strings.Join(c.from(), ","), c.at(now()))
	}
	// A VALUES list, planned for each batch: see pgarrays.go. Its rows are
	// in id order, and the plan (a nested loop from the list into the
	// primary key) updates, and so locks, the reservations in that order, as
	// every path that changes several does: batches of several replicas do
	// not deadlock. Should a plan ever take another order, PostgreSQL's
	// deadlock detector fails one batch, and the journal retries its writes
	// one by one. Locking the rows first, in a statement or a CTE of their
	// own, doubled what a release costs PostgreSQL (BENCHMARKS.md).
	var done []string
	err = s.db.WithContext(ctx).Raw(`UPDATE reservations r SET state = v.state, fence = v.fence, updated_at = v.at
		FROM (VALUES `+values.String()+`) AS v(id, fence, state, from_states, at)
		WHERE r.id = v.id AND r.fence <= v.fence AND r.state = ANY(string_to_array(v.from_states, ','))
		RETURNING r.id`, args...).Scan(&done).Error
	if err != nil {
		return nil, true, err
	}
	results = make([]error, len(batch))
	if len(done) == len(batch) {
		return results, true, nil
	}
	applied := make(map[string]bool, len(done))
	for _, id := range done {
		applied[id] = true
	}
	var refused []int
	for i, w := range batch {
		if !applied[w.id] {
			refused = append(refused, i)
		}
	}
	return results, true, explainRefused(s.db.WithContext(ctx), batch, refused, results)
}

// byID is batch's writes in the order of the reservations they change.
func byID(batch []*journalWrite) []*journalWrite {
	sorted := slices.Clone(batch)
	slices.SortFunc(sorted, func(a, b *journalWrite) int { return strings.Compare(a.id, b.id) })
	return sorted
}

// txBatch is journalBatch in a transaction.
func (s *Store) txBatch(ctx context.Context, batch []*journalWrite) ([]error, error) {
	results := make([]error, len(batch))
	var records []int // indexes into batch
	var updates []int
	for i, w := range batch {
		if w.record != nil {
			records = append(records, i)
		} else {
			updates = append(updates, i)
		}
	}
	// Reservation rows are locked in id order, so batches of several replicas
	// do not deadlock on them (a deadlock would only fail the batch, which is
	// then retried write by write); the sort is stable, so the updates of one
	// reservation keep their order.
	sort.SliceStable(updates, func(a, b int) bool { return batch[updates[a]].id < batch[updates[b]].id })
	t := now()
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := s.insertReservations(tx, batch, records, results); err != nil {
			return err
		}
		var refused []int
		var err error
		if s.dialect == dialectPostgres {
			if updates, refused, err = s.endReservations(tx, batch, updates, t); err != nil {
				return err
			}
		}
		for _, i := range updates {
			applied, err := s.updateReservationTx(tx, batch[i].id, batch[i].change, t)
			if err != nil {
				return err
			}
			if !applied {
				refused = append(refused, i)
			}
		}
		return explainRefused(tx, batch, refused, results)
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// recordBatch writes a batch of grants only, on PostgreSQL, in a single
// statement (so without a transaction around it: one round trip): it inserts
// the grants made in their pools' current Redis load and what they hold. A
// grant it did not insert (a conflict, a changed load: rare) is explained by
// the usual path, in a transaction. It reports ok=false when the batch is not
// one it writes.
func (s *Store) recordBatch(ctx context.Context, batch []*journalWrite) (results []error, ok bool, err error) {
	if s.dialect != dialectPostgres || len(batch) > recordChunk {
		return nil, false, nil
	}
	c := newColumns(len(batch))
	for _, w := range batch {
		r := w.record
		if r == nil {
			return nil, false, nil
		}
		c.text(0, r.ID).int(1, r.PoolID).int(2, r.Fence).text(3, r.Owner).text(4, r.Hashes).text(5, r.State).
			text(6, r.TxID).time(7, r.CreatedAt).time(8, r.ExpiresAt).time(9, r.UpdatedAt).
			text(10, r.IdempotencyKey).text(11, r.Fingerprint).text(12, w.load)
	}
	// The pools' loads are read without locking their rows: a rebuild's
	// BeginLoad waits for this statement to end (its SHARE lock on the
	// table), and one that began first is seen here. Locking the rows (FOR
	// SHARE) did the same at a cost: two APIs' batches locking one pool's
	// row at once make PostgreSQL create a multixact, and every lock dirties
	// the row's page and writes WAL. The grants are unnested once, in the
	// INSERT: a CTE of them that two parts of the statement read would be
	// materialised at every batch.
	var ids []string
	err = pgScan(s.db.WithContext(ctx), &ids, `WITH
		l AS (SELECT id, redis_load FROM pools WHERE id = ANY($2::bigint[])),
		ins AS (INSERT INTO reservations (id, pool_id, fence, owner, hashes, state, tx_id, created_at, expires_at,
				updated_at, idempotency_key, fingerprint)
			SELECT g.id, g.pool_id, g.fence, g.owner, g.hashes, g.state, g.tx_id, g.created_at, g.expires_at,
				g.updated_at, g.idempotency_key, g.fingerprint
			FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[],
				$7::text[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::text[], $12::text[], $13::text[])
				AS g(id, pool_id, fence, owner, hashes, state, tx_id, created_at, expires_at, updated_at,
					idempotency_key, fingerprint, load)
			JOIN l ON l.id = g.pool_id
			WHERE g.load = '' OR l.redis_load = '' OR l.redis_load = g.load
			ON CONFLICT DO NOTHING RETURNING id, pool_id, hashes),
		h AS (INSERT INTO reservation_utxos (reservation_id, hash, pool_id)
			SELECT ins.id, unnest(string_to_array(ins.hashes, ',')), ins.pool_id FROM ins
			ON CONFLICT DO NOTHING)
		SELECT id FROM ins`, c.args()...)
	if err != nil {
		return nil, true, err
	}
	if len(ids) == len(batch) {
		return make([]error, len(batch)), true, nil
	}
	inserted := make(map[string]bool, len(ids))
	for _, id := range ids {
		inserted[id] = true
	}
	var rest []*journalWrite
	for _, w := range batch {
		if !inserted[w.record.ID] {
			rest = append(rest, w)
		}
	}
	explained, err := s.txBatch(ctx, rest)
	if err != nil {
		return nil, true, err
	}
	results = make([]error, len(batch))
	k := 0
	for i, w := range batch {
		if !inserted[w.record.ID] {
			results[i] = explained[k]
			k++
		}
	}
	return results, true, nil
}

// insertReservations inserts the records of a batch with multi-row INSERTs
// that skip conflicting rows, then what the inserted ones hold; a skipped
// one gets the reason in results (nil for a reservation recorded before).
func (s *Store) insertReservations(tx *gorm.DB, batch []*journalWrite, records []int, results []error) error {
	records, err := s.checkLoads(tx, batch, records, results)
	if err != nil {
		return err
	}
	for start := 0; start < len(records); start += recordChunk {
		chunk := records[start:min(start+recordChunk, len(records))]
		recs := make([]*Reservation, len(chunk))
		for n, i := range chunk {
			recs[n] = batch[i].record
		}
		inserted, err := s.insertReservationRows(tx, recs)
		if err != nil {
			return err
		}
		var rows []reservationUTXO
		var skipped []int
		for _, i := range chunk {
			r := batch[i].record
			if !inserted[r.ID] {
				skipped = append(skipped, i)
				continue
			}
			for _, h := range SplitHashes(r.Hashes) {
				rows = append(rows, reservationUTXO{ReservationID: r.ID, Hash: h, PoolID: r.PoolID})
			}
		}
		if err := s.insertHoldings(tx, rows); err != nil {
			return err
		}
		for _, i := range skipped {
			err := explainConflict(tx, batch[i].record)
			if errors.Is(err, errRetry) {
				return err
			}
			results[i] = err
		}
	}
	return nil
}

// errLoadChanged means Redis lost the pool (a rebuild began) after the
// grant was made: the grant is not journalled (it wraps
// lockmgr.ErrRebuilding).
var errLoadChanged = fmt.Errorf("storage: the pool was reloaded into Redis since the grant (%w)", lockmgr.ErrRebuilding)

// checkLoads keeps the records granted under their pool's current Redis load
// and fails the others with errLoadChanged. The pools' rows are read FOR
// SHARE (in id order), so a rebuild beginning a new load (Store.BeginLoad)
// waits for this batch: what it commits is in the rebuild's snapshot.
func (s *Store) checkLoads(tx *gorm.DB, batch []*journalWrite, records []int, results []error) ([]int, error) {
	var pools []int64
	seen := map[int64]bool{}
	for _, i := range records {
		if p := batch[i].record.PoolID; batch[i].load != "" && !seen[p] {
			seen[p] = true
			pools = append(pools, p)
		}
	}
	if len(pools) == 0 {
		return records, nil
	}
	current, err := poolLoads(tx, pools, s.dialect == dialectPostgres)
	if err != nil {
		return nil, err
	}
	kept := records[:0:0]
	for _, i := range records {
		w := batch[i]
		if cur := current[w.record.PoolID]; w.load != "" && cur != "" && cur != w.load {
			results[i] = errLoadChanged
			continue
		}
		kept = append(kept, i)
	}
	return kept, nil
}

// poolLoads returns the Redis loads of pools (Store.BeginLoad), their rows
// read FOR SHARE, in id order, when share is set.
func poolLoads(tx *gorm.DB, pools []int64, share bool) (map[int64]string, error) {
	slices.Sort(pools)
	var rows []struct {
		ID        int64
		RedisLoad string
	}
	q := `SELECT id, redis_load FROM pools WHERE id IN ? ORDER BY id`
	if share {
		q += ` FOR SHARE`
	}
	if err := tx.Raw(q, pools).Scan(&rows).Error; err != nil {
		return nil, err
	}
	current := make(map[int64]string, len(rows))
	for _, r := range rows {
		current[r.ID] = r.RedisLoad
	}
	return current, nil
}

// errRetry fails a batch whose conflict could not be explained (the row
// that conflicted is gone again): its writes are then retried one by one.
var errRetry = errors.New("storage: journal conflict to retry")

// insertReservationRows inserts rows, skipping those that conflict, and
// returns the ids it inserted.
func (s *Store) insertReservationRows(tx *gorm.DB, rows []*Reservation) (map[string]bool, error) {
	var ids []string
	if s.dialect == dialectPostgres {
		c := newColumns(len(rows))
		for _, r := range rows {
			c.text(0, r.ID).int(1, r.PoolID).int(2, r.Fence).text(3, r.Owner).text(4, r.Hashes).text(5, r.State).
				text(6, r.TxID).time(7, r.CreatedAt).time(8, r.ExpiresAt).time(9, r.UpdatedAt).
				text(10, r.IdempotencyKey).text(11, r.Fingerprint)
		}
		err := pgScan(tx, &ids, `INSERT INTO reservations (id, pool_id, fence, owner, hashes, state, tx_id, created_at,
			expires_at, updated_at, idempotency_key, fingerprint)
			SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
				$8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::text[], $12::text[])
			ON CONFLICT DO NOTHING RETURNING id`, c.args()...)
		if err != nil {
			return nil, err
		}
	} else {
		q, args := insertRows(`INSERT INTO reservations (id, pool_id, fence, owner, hashes, state, tx_id, created_at,
			expires_at, updated_at, idempotency_key, fingerprint)`, rows, `ON CONFLICT DO NOTHING RETURNING id`, func(r *Reservation) []any {
			return []any{r.ID, r.PoolID, r.Fence, r.Owner, r.Hashes, r.State, r.TxID, r.CreatedAt, r.ExpiresAt,
				r.UpdatedAt, r.IdempotencyKey, r.Fingerprint}
		})
		if err := tx.Raw(q, args...).Scan(&ids).Error; err != nil {
			return nil, err
		}
	}
	inserted := make(map[string]bool, len(ids))
	for _, id := range ids {
		inserted[id] = true
	}
	return inserted, nil
}

// insertHoldings records what reservations hold, in multi-row INSERTs.
func (s *Store) insertHoldings(tx *gorm.DB, rows []reservationUTXO) error {
	if s.dialect == dialectPostgres && len(rows) > 0 {
		c := newColumns(len(rows))
		for _, r := range rows {
			c.text(0, r.ReservationID).text(1, r.Hash).int(2, r.PoolID)
		}
		return pgExec(tx, `INSERT INTO reservation_utxos (reservation_id, hash, pool_id)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) ON CONFLICT DO NOTHING`, c.args()...)
	}
	for start := 0; start < len(rows); start += batchSize {
		chunk := rows[start:min(start+batchSize, len(rows))]
		q, args := insertRows(`INSERT INTO reservation_utxos (reservation_id, hash, pool_id)`, chunk, `ON CONFLICT DO NOTHING`,
			func(r reservationUTXO) []any { return []any{r.ReservationID, r.Hash, r.PoolID} })
		if err := tx.Exec(q, args...).Error; err != nil {
			return err
		}
	}
	return nil
}

// explainConflict says why a reservation was not inserted: nil when the same
// reservation is there already (a retried write), ErrStaleFence when its
// fence is taken, lockmgr.ErrKeyTaken when its idempotency key is.
func explainConflict(tx *gorm.DB, r *Reservation) error {
	var same []Reservation
	if err := tx.Where("id = ?", r.ID).Limit(1).Find(&same).Error; err != nil {
		return err
	}
	if len(same) == 1 {
		if p := same[0]; p.PoolID == r.PoolID && p.Fence == r.Fence && p.Hashes == r.Hashes {
			return nil
		}
		return fmt.Errorf("%w: reservation %s exists with another content", ErrStaleFence, r.ID)
	}
	var n int64
	if err := tx.Model(&Reservation{}).Where("pool_id = ? AND fence = ?", r.PoolID, r.Fence).Count(&n).Error; err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%w: fence %d of pool %d already used", ErrStaleFence, r.Fence, r.PoolID)
	}
	if r.IdempotencyKey != "" {
		if err := tx.Model(&Reservation{}).Where("idempotency_key = ?", r.IdempotencyKey).Count(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("storage: %w", lockmgr.ErrKeyTaken)
		}
	}
	return errRetry
}

// ended reports whether u only ends a reservation (release, expiry,
// invalidation), which endReservations batches.
func ended(u reservationUpdate) bool {
	return (u.State == ResReleased || u.State == ResExpired || u.State == ResInvalidated) && u.TxID == "" && u.ExpiresAt.IsZero()
}

// endReservations applies, in a constant number of statements, the updates of
// the batch that only end a reservation and are the batch's only update of it:
// they are ended, in id order, with one UPDATE ... FROM (VALUES ...). It
// returns the updates left to apply one by one and the indexes of the ending
// updates that did not apply.
func (s *Store) endReservations(tx *gorm.DB, batch []*journalWrite, updates []int, t time.Time) (rest, refused []int, err error) {
	perID := map[string]int{}
	for _, i := range updates {
		perID[batch[i].id]++
	}
	var ending []int
	for _, i := range updates {
		if ended(batch[i].change) && perID[batch[i].id] == 1 {
			ending = append(ending, i)
		} else {
			rest = append(rest, i)
		}
	}
	if len(ending) == 0 {
		return rest, nil, nil
	}
	for start := 0; start < len(ending); start += recordChunk {
		// These statements find rows in a table that grows: planned for
		// each batch (a VALUES list), never with a generic plan made when
		// the table was small.
		chunk := ending[start:min(start+recordChunk, len(ending))]
		var values strings.Builder
		args := make([]any, 0, 5*len(chunk))
		for k, i := range chunk {
			if k > 0 {
				values.WriteString(",")
			}
			values.WriteString("(?::text, ?::bigint, ?::text, ?::text, ?::timestamptz)")
			c := batch[i].change
			args = append(args, batch[i].id, c.Fence, c.State, strings.Join(c.from(), ","), c.at(t))
		}
		// updates, and so ending, are in id order: the UPDATE takes the
		// rows in that order, as endBatch's does.
		var done []string
		err := tx.Raw(`UPDATE reservations r SET state = v.state, fence = v.fence, updated_at = v.at
			FROM (VALUES `+values.String()+`) AS v(id, fence, state, from_states, at)
			WHERE r.id = v.id AND r.fence <= v.fence AND r.state = ANY(string_to_array(v.from_states, ','))
			RETURNING r.id`, args...).Scan(&done).Error
		if err != nil {
			return nil, nil, err
		}
		applied := make(map[string]bool, len(done))
		for _, id := range done {
			applied[id] = true
		}
		for _, i := range chunk {
			if !applied[batch[i].id] {
				refused = append(refused, i)
			}
		}
	}
	return rest, refused, nil
}

// explainRefused sets results[i], for each refused update i, to the error
// saying why it did not apply (one SELECT per batchSize ids).
func explainRefused(tx *gorm.DB, batch []*journalWrite, refused []int, results []error) error {
	if len(refused) == 0 {
		return nil
	}
	ids := make([]string, len(refused))
	for k, i := range refused {
		ids[k] = batch[i].id
	}
	rows := make(map[string]*Reservation, len(ids))
	for _, chunk := range chunks(ids) {
		var found []Reservation
		if err := tx.Select("id", "fence", "state").Where("id IN ?", chunk).Find(&found).Error; err != nil {
			return err
		}
		for k := range found {
			rows[found[k].ID] = &found[k]
		}
	}
	for _, i := range refused {
		results[i] = refusedUpdate(rows[batch[i].id], batch[i].id, batch[i].change)
	}
	return nil
}

// journalRow converts a lockmgr reservation to its journal row.
func journalRow(r *lockmgr.Reservation) Reservation {
	return Reservation{
		ID:             r.ID,
		PoolID:         r.PoolID,
		Fence:          r.Fence,
		Owner:          r.Owner,
		Hashes:         strings.Join(r.Hashes(), ","),
		State:          r.State,
		TxID:           r.TxID,
		CreatedAt:      r.CreatedAt,
		ExpiresAt:      r.ExpiresAt,
		IdempotencyKey: r.Key,
		Fingerprint:    r.Fingerprint,
	}
}

// lockReservation converts a journal row to a lockmgr reservation, taking
// each UTXO's amount from amounts (0 when it is not there).
func (r Reservation) lockReservation(amounts map[string]uint64) *lockmgr.Reservation {
	hashes := SplitHashes(r.Hashes)
	items := make([]lockmgr.Item, len(hashes))
	for i, h := range hashes {
		items[i] = lockmgr.Item{Hash: h, Amount: amounts[h]}
	}
	return &lockmgr.Reservation{
		ID:          r.ID,
		PoolID:      r.PoolID,
		Fence:       r.Fence,
		Owner:       r.Owner,
		Items:       items,
		State:       r.State,
		TxID:        r.TxID,
		CreatedAt:   r.CreatedAt,
		ExpiresAt:   r.ExpiresAt,
		Key:         r.IdempotencyKey,
		Fingerprint: r.Fingerprint,
	}
}

// lockReservation converts a journal row with the amounts of its UTXOs.
func (s *Store) lockReservation(ctx context.Context, row Reservation) (*lockmgr.Reservation, error) {
	utxos, err := s.GetUTXOs(ctx, SplitHashes(row.Hashes))
	if err != nil {
		return nil, err
	}
	amounts := make(map[string]uint64, len(utxos))
	for _, u := range utxos {
		amounts[u.Hash] = uint64(u.Amount)
	}
	return row.lockReservation(amounts), nil
}
