package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/bufferd/bufferd/lockmgr"
)

// ErrJournalClosed means the journal was closed before the write was queued.
var ErrJournalClosed = errors.New("storage: journal closed")

// Journal defaults.
const (
	// DefaultJournalBatch is how many writes one journal transaction carries at most.
	DefaultJournalBatch = 256
	// DefaultJournalTimeout bounds one journal transaction.
	DefaultJournalTimeout = 10 * time.Second
)

// recordChunk bounds the rows of one multi-row reservations INSERT.
const recordChunk = 500

// JournalOptions configure a Journal.
type JournalOptions struct {
	// MaxBatch caps the writes committed in one transaction; 0 means DefaultJournalBatch.
	MaxBatch int
	// Timeout bounds one transaction; 0 means DefaultJournalTimeout.
	Timeout time.Duration
}

// Journal is the reservation journal lockmgr writes through (it implements
// lockmgr.Journal) with group commit: one writer goroutine commits queued
// writes together, one transaction per batch. A lone write commits at once;
// writes that arrive while a transaction is in flight wait for it and then go
// together in the next one. If a batch fails, its writes are retried one by
// one, so a bad write (stale fence, ended reservation) fails only its caller.
//
// Each call waits until its write committed or failed, or until its context
// ends: then it returns ctx.Err(), and the write may still commit (a write
// whose context ended before its batch started is dropped). Errors wrap
// ErrStaleFence, ErrNotLive, ErrNotFound, ErrInvalidArgument or
// ErrJournalClosed where they apply.
type Journal struct {
	store    *Store
	maxBatch int
	timeout  time.Duration

	mu     sync.Mutex
	queue  []*journalWrite
	closed bool

	wake    chan struct{} // capacity 1: the queue may have changed
	done    chan struct{} // closed when the writer has stopped
	batches atomic.Int64
}

// journalWrite is one queued Record or Update.
type journalWrite struct {
	ctx    context.Context
	record *Reservation      // a new reservation, or
	id     string            // the reservation to update
	change ReservationUpdate // and how
	err    chan error        // capacity 1: the outcome
}

// NewJournal starts a journal writing to s. Close it to flush and stop it.
func NewJournal(s *Store, opts JournalOptions) *Journal {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultJournalBatch
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultJournalTimeout
	}
	j := &Journal{
		store:    s,
		maxBatch: opts.MaxBatch,
		timeout:  opts.Timeout,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	go j.run()
	return j
}

var _ lockmgr.Journal = (*Journal)(nil)

// Record writes a new reservation (state held unless r.State says otherwise)
// and what it holds. Recording the same reservation again is a no-op; a
// fence another reservation of the pool already has fails with
// ErrStaleFence, an idempotency key another one has with an error wrapping
// lockmgr.ErrKeyTaken.
func (j *Journal) Record(ctx context.Context, r *lockmgr.Reservation) error {
	row := JournalRow(r)
	if _, err := prepareRecord(&row); err != nil {
		return err
	}
	return j.submit(ctx, &journalWrite{record: &row})
}

// Update writes a changed reservation (state, expiry, tx id, fence) with the
// semantics of Store.UpdateReservation: the row must be live, in one of the
// states from (any live one when empty), with a fence no newer than r.Fence.
// A row that ended fails wrapping lockmgr.ErrEnded, a live row in another
// state wrapping lockmgr.ErrNotHeld.
func (j *Journal) Update(ctx context.Context, r *lockmgr.Reservation, from ...string) error {
	u := ReservationUpdate{Fence: r.Fence, State: r.State, TxID: r.TxID, ExpiresAt: r.ExpiresAt, From: from}
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

// lockError wraps the journal's refusals in lockmgr's vocabulary.
func lockError(err error) error {
	switch {
	case errors.Is(err, ErrNotLive):
		return fmt.Errorf("%w (%w)", err, lockmgr.ErrEnded)
	case errors.Is(err, ErrWrongState):
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
	row, err := j.store.ReservationByKey(ctx, key)
	if err != nil {
		return nil, lockError(err)
	}
	return j.store.lockReservation(ctx, row)
}

// Close commits what is queued, then stops the writer. Later calls fail with
// ErrJournalClosed. Close the journal before its Store.
func (j *Journal) Close() {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	j.signal()
	<-j.done
}

// Batches is the number of group transactions committed so far (writes
// retried one by one after a failed batch are not counted).
func (j *Journal) Batches() int64 { return j.batches.Load() }

// Pending is the number of writes queued and not yet taken by the writer.
func (j *Journal) Pending() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.queue)
}

func (j *Journal) signal() {
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// submit queues w and waits for its outcome or the end of ctx.
func (j *Journal) submit(ctx context.Context, w *journalWrite) error {
	w.ctx = ctx
	w.err = make(chan error, 1)
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrJournalClosed
	}
	if err := ctx.Err(); err != nil {
		j.mu.Unlock()
		return err
	}
	j.queue = append(j.queue, w)
	j.mu.Unlock()
	j.signal()
	select {
	case err := <-w.err:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the writer: it commits batches until the journal is closed and empty.
func (j *Journal) run() {
	defer close(j.done)
	for {
		batch, closed := j.take()
		if len(batch) > 0 {
			j.commit(batch)
			continue
		}
		if closed {
			return
		}
		<-j.wake
	}
}

// take removes up to maxBatch writes from the queue.
func (j *Journal) take() ([]*journalWrite, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := min(len(j.queue), j.maxBatch)
	batch := j.queue[:n:n]
	if n == len(j.queue) {
		j.queue = nil
	} else {
		j.queue = j.queue[n:]
	}
	return batch, j.closed
}

// commit writes a batch in one transaction, else each write on its own.
func (j *Journal) commit(batch []*journalWrite) {
	live := make([]*journalWrite, 0, len(batch))
	for _, w := range batch {
		if err := w.ctx.Err(); err != nil {
			w.err <- err // its caller has gone: drop the write
			continue
		}
		live = append(live, w)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := j.batchContext(live)
	defer cancel()
	results, err := j.store.journalBatch(ctx, live)
	if err == nil {
		j.batches.Add(1)
		for i, w := range live {
			w.err <- results[i]
		}
		return
	}
	if ctx.Err() != nil {
		// Timed out, or every caller gave up: the database is too slow or
		// unreachable, so retrying one by one would only wait again.
		err = fmt.Errorf("storage: journal: %w", err)
		for _, w := range live {
			w.err <- err
		}
		return
	}
	if len(live) > 1 {
		slog.Warn("storage: journal batch failed, retrying one by one", "writes", len(live), "err", err)
	}
	for _, w := range live {
		w.err <- j.commitOne(w)
	}
}

// commitOne writes w in its own transaction, bounded by its caller's context.
func (j *Journal) commitOne(w *journalWrite) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(w.ctx, j.timeout)
	defer cancel()
	if w.record != nil {
		return j.store.RecordReservation(ctx, *w.record)
	}
	return j.store.UpdateReservation(ctx, w.id, w.change)
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

// journalBatch writes a batch in one transaction: one multi-row INSERT for
// the new reservations (rows that conflict are explained, not failed), one
// for what they hold, then the updates by reservation id (in arrival order
// for one reservation); updates that do not apply are explained with one
// SELECT. It returns the outcome of each write, or an error if the
// transaction failed (then nothing was written).
func (s *Store) journalBatch(ctx context.Context, batch []*journalWrite) ([]error, error) {
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
		if s.dialect == DialectPostgres {
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

// insertReservations inserts the records of a batch with multi-row INSERTs
// that skip conflicting rows, then what the inserted ones hold; a skipped
// one gets the reason in results (nil for a reservation recorded before).
func (s *Store) insertReservations(tx *gorm.DB, batch []*journalWrite, records []int, results []error) error {
	for start := 0; start < len(records); start += recordChunk {
		chunk := records[start:min(start+recordChunk, len(records))]
		var sb strings.Builder
		sb.WriteString(`INSERT INTO reservations (id, pool_id, fence, owner, hashes, state, tx_id, created_at, expires_at,
			updated_at, idempotency_key, fingerprint) VALUES `)
		args := make([]any, 0, len(chunk)*12)
		for n, i := range chunk {
			if n > 0 {
				sb.WriteString(",")
			}
			sb.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?)")
			r := batch[i].record
			args = append(args, r.ID, r.PoolID, r.Fence, r.Owner, r.Hashes, r.State, r.TxID, r.CreatedAt, r.ExpiresAt,
				r.UpdatedAt, r.IdempotencyKey, r.Fingerprint)
		}
		sb.WriteString(` ON CONFLICT DO NOTHING RETURNING id`)
		var ids []string
		if err := tx.Raw(sb.String(), args...).Scan(&ids).Error; err != nil {
			return err
		}
		inserted := make(map[string]bool, len(ids))
		for _, id := range ids {
			inserted[id] = true
		}
		var rows []ReservationUTXO
		var skipped []int
		for _, i := range chunk {
			r := batch[i].record
			if !inserted[r.ID] {
				skipped = append(skipped, i)
				continue
			}
			for _, h := range SplitHashes(r.Hashes) {
				rows = append(rows, ReservationUTXO{ReservationID: r.ID, Hash: h, PoolID: r.PoolID})
			}
		}
		if err := insertHoldings(tx, rows); err != nil {
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

// errRetry fails a batch whose conflict could not be explained (the row
// that conflicted is gone again): its writes are then retried one by one.
var errRetry = errors.New("storage: journal conflict to retry")

// insertHoldings records what reservations hold, in multi-row INSERTs.
func insertHoldings(tx *gorm.DB, rows []ReservationUTXO) error {
	for start := 0; start < len(rows); start += batchSize {
		chunk := rows[start:min(start+batchSize, len(rows))]
		var sb strings.Builder
		sb.WriteString(`INSERT INTO reservation_utxos (reservation_id, hash, pool_id) VALUES `)
		args := make([]any, 0, 3*len(chunk))
		for n, r := range chunk {
			if n > 0 {
				sb.WriteString(",")
			}
			sb.WriteString("(?,?,?)")
			args = append(args, r.ReservationID, r.Hash, r.PoolID)
		}
		sb.WriteString(` ON CONFLICT DO NOTHING`)
		if err := tx.Exec(sb.String(), args...).Error; err != nil {
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
func ended(u ReservationUpdate) bool {
	return (u.State == ResReleased || u.State == ResExpired || u.State == ResInvalidated) && u.TxID == "" && u.ExpiresAt.IsZero()
}

// endReservations applies, in a constant number of statements, the updates of
// the batch that only end a reservation and are the batch's only update of it:
// the rows are locked in id order and ended with one UPDATE ... FROM (VALUES
// ...). It returns the updates left to apply one by one and the indexes of
// the ending updates that did not apply.
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
		chunk := ending[start:min(start+recordChunk, len(ending))]
		ids := make([]string, len(chunk))
		var values strings.Builder
		args := make([]any, 0, 4*len(chunk)+1)
		args = append(args, t)
		for k, i := range chunk {
			ids[k] = batch[i].id
			if k > 0 {
				values.WriteString(",")
			}
			values.WriteString("(?::text, ?::bigint, ?::text, ?::text)")
			c := batch[i].change
			args = append(args, batch[i].id, c.Fence, c.State, strings.Join(c.from(), ","))
		}
		// Lock in id order, as the one-by-one path does, so that batches of
		// several replicas do not deadlock.
		if err := tx.Exec(`SELECT 1 FROM reservations WHERE id IN ? ORDER BY id FOR UPDATE`, ids).Error; err != nil {
			return nil, nil, err
		}
		var done []string
		err := tx.Raw(`UPDATE reservations r SET state = v.state, fence = v.fence, updated_at = ?
			FROM (VALUES `+values.String()+`) AS v(id, fence, state, from_states)
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

// JournalRow converts a lockmgr reservation to its journal row.
func JournalRow(r *lockmgr.Reservation) Reservation {
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

// LockReservation converts a journal row to a lockmgr reservation, taking
// each UTXO's amount from amounts (0 when it is not there).
func (r Reservation) LockReservation(amounts map[string]uint64) *lockmgr.Reservation {
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
	return row.LockReservation(amounts), nil
}
