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
// and marks its UTXOs reserved. Recording the same reservation again is a
// no-op; a fence another reservation of the pool already has fails with
// ErrStaleFence.
func (j *Journal) Record(ctx context.Context, r *lockmgr.Reservation) error {
	row := JournalRow(r)
	if _, err := prepareRecord(&row); err != nil {
		return err
	}
	return j.submit(ctx, &journalWrite{record: &row})
}

// Update writes a changed reservation (state, expiry, tx id, fence) with the
// semantics of Store.UpdateReservation: the row must be live with a fence no
// newer than r.Fence, else ErrNotFound, ErrStaleFence or ErrNotLive; ending
// states released, expired and invalidated free its UTXOs.
func (j *Journal) Update(ctx context.Context, r *lockmgr.Reservation) error {
	u := ReservationUpdate{Fence: r.Fence, State: r.State, TxID: r.TxID, ExpiresAt: r.ExpiresAt}
	if u.State == ResReleased || u.State == ResExpired || u.State == ResInvalidated {
		// Ending keeps the row's expiry and tx id; without them the write
		// is one of the batch's ended in a constant number of statements.
		u.TxID, u.ExpiresAt = "", time.Time{}
	}
	if err := checkUpdate(r.ID, u); err != nil {
		return err
	}
	err := j.submit(ctx, &journalWrite{id: r.ID, change: u})
	if errors.Is(err, ErrNotLive) {
		// lockmgr's contract: an ended reservation is lockmgr.ErrEnded.
		return fmt.Errorf("%w (%w)", err, lockmgr.ErrEnded)
	}
	return err
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

// journalBatch writes a batch in one transaction: one multi-row INSERT for the
// new reservations, one UPDATE marking their UTXOs reserved, then the updates
// by reservation id (in arrival order for one reservation); updates that do not apply are explained with one SELECT. It
// returns the outcome of each write, or an error if the transaction failed
// (then nothing was written).
func (s *Store) journalBatch(ctx context.Context, batch []*journalWrite) ([]error, error) {
	results := make([]error, len(batch))
	var records []Reservation
	var updates []int // indexes into batch
	for i, w := range batch {
		if w.record != nil {
			records = append(records, *w.record)
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
		if err := insertReservations(tx, records); err != nil {
			return err
		}
		if err := reserveUTXOs(tx, records, t); err != nil {
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

// insertReservations inserts rows with multi-row INSERTs.
func insertReservations(tx *gorm.DB, rows []Reservation) error {
	for start := 0; start < len(rows); start += recordChunk {
		chunk := rows[start:min(start+recordChunk, len(rows))]
		var sb strings.Builder
		sb.WriteString(`INSERT INTO reservations (id, pool_id, fence, owner, hashes, state, tx_id, created_at, expires_at, updated_at) VALUES `)
		args := make([]any, 0, len(chunk)*10)
		for i, r := range chunk {
			if i > 0 {
				sb.WriteString(",")
			}
			sb.WriteString("(?,?,?,?,?,?,?,?,?,?)")
			args = append(args, r.ID, r.PoolID, r.Fence, r.Owner, r.Hashes, r.State, r.TxID, r.CreatedAt, r.ExpiresAt, r.UpdatedAt)
		}
		if err := tx.Exec(sb.String(), args...).Error; err != nil {
			return err
		}
	}
	return nil
}

// reserveUTXOs marks the available UTXOs of live rows reserved, in one
// statement per batchSize hashes: (pool_id + 0 = ? AND hash IN ?) OR ...
func reserveUTXOs(tx *gorm.DB, rows []Reservation, t time.Time) error {
	byPool := map[int64][]string{}
	for _, r := range rows {
		if r.State == ResHeld || r.State == ResSubmitted {
			byPool[r.PoolID] = append(byPool[r.PoolID], SplitHashes(r.Hashes)...)
		}
	}
	pools := make([]int64, 0, len(byPool))
	for p := range byPool {
		pools = append(pools, p)
	}
	sort.Slice(pools, func(a, b int) bool { return pools[a] < pools[b] })

	var (
		conds []string
		args  []any
		n     int
	)
	flush := func() error {
		if len(conds) == 0 {
			return nil
		}
		q := `UPDATE utxos SET state = ?, updated_at = ? WHERE state = ? AND (` + strings.Join(conds, " OR ") + `)`
		err := tx.Exec(q, append([]any{StateReserved, t, StateAvailable}, args...)...).Error
		conds, args, n = nil, nil, 0
		return err
	}
	for _, p := range pools {
		hashes := byPool[p]
		for len(hashes) > 0 {
			take := min(len(hashes), batchSize-n)
			conds = append(conds, "("+byHash+" AND hash IN ?)")
			args = append(args, p, hashes[:take])
			hashes, n = hashes[take:], n+take
			if n == batchSize {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// ended reports whether u only ends a reservation (release, expiry,
// invalidation), which endReservations batches.
func ended(u ReservationUpdate) bool {
	return (u.State == ResReleased || u.State == ResExpired || u.State == ResInvalidated) && u.TxID == "" && u.ExpiresAt.IsZero()
}

// endReservations applies, in a constant number of statements, the updates of
// the batch that only end a reservation and are the batch's only update of it:
// the rows are locked in id order, ended with one UPDATE ... FROM (VALUES ...),
// and their reserved UTXOs that no live reservation holds are freed with one
// more. It returns the updates left to apply one by one and the indexes of
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
		args := make([]any, 0, 3*len(chunk)+3)
		args = append(args, t)
		for k, i := range chunk {
			ids[k] = batch[i].id
			if k > 0 {
				values.WriteString(",")
			}
			values.WriteString("(?::text, ?::bigint, ?::text)")
			args = append(args, batch[i].id, batch[i].change.Fence, batch[i].change.State)
		}
		args = append(args, liveStates)
		// Lock in id order, as the one-by-one path does, so that batches of
		// several replicas do not deadlock.
		if err := tx.Exec(`SELECT 1 FROM reservations WHERE id IN ? ORDER BY id FOR UPDATE`, ids).Error; err != nil {
			return nil, nil, err
		}
		var done []Reservation
		err := tx.Raw(`UPDATE reservations r SET state = v.state, fence = v.fence, updated_at = ?
			FROM (VALUES `+values.String()+`) AS v(id, fence, state)
			WHERE r.id = v.id AND r.fence <= v.fence AND r.state IN ?
			RETURNING r.id, r.pool_id, r.hashes`, args...).Scan(&done).Error
		if err != nil {
			return nil, nil, err
		}
		applied := make(map[string]bool, len(done))
		for _, r := range done {
			applied[r.ID] = true
		}
		for _, i := range chunk {
			if !applied[batch[i].id] {
				refused = append(refused, i)
			}
		}
		if err := s.freeUTXOs(tx, done, t); err != nil {
			return nil, nil, err
		}
	}
	return rest, refused, nil
}

// freeUTXOs makes the reserved UTXOs of the ended rows available again,
// those no live reservation holds: one statement per batchSize hashes.
func (s *Store) freeUTXOs(tx *gorm.DB, rows []Reservation, t time.Time) error {
	byPool := map[int64][]string{}
	for _, r := range rows {
		byPool[r.PoolID] = append(byPool[r.PoolID], SplitHashes(r.Hashes)...)
	}
	for pool, hashes := range byPool {
		for _, chunk := range chunks(hashes) {
			err := tx.Exec(`UPDATE utxos SET state = ?, updated_at = ? WHERE `+byHash+` AND state = ? AND hash IN ?
				AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.state IN ? AND r.expires_at > ?
					AND r.pool_id = utxos.pool_id AND `+s.inHashes("r.hashes")+`)`,
				StateAvailable, t, pool, StateReserved, chunk, liveStates, t).Error
			if err != nil {
				return err
			}
		}
	}
	return nil
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
		ID:        r.ID,
		PoolID:    r.PoolID,
		Fence:     r.Fence,
		Owner:     r.Owner,
		Hashes:    strings.Join(r.Hashes(), ","),
		State:     r.State,
		TxID:      r.TxID,
		CreatedAt: r.CreatedAt,
		ExpiresAt: r.ExpiresAt,
	}
}

// LockReservation converts a journal row to a lockmgr reservation, taking
// each UTXO's amount from amounts (0 when it is not there).
func (r Reservation) LockReservation(amounts map[string]int64) *lockmgr.Reservation {
	hashes := SplitHashes(r.Hashes)
	items := make([]lockmgr.Item, len(hashes))
	for i, h := range hashes {
		items[i] = lockmgr.Item{Hash: h, Amount: amounts[h]}
	}
	return &lockmgr.Reservation{
		ID:        r.ID,
		PoolID:    r.PoolID,
		Fence:     r.Fence,
		Owner:     r.Owner,
		Items:     items,
		State:     r.State,
		TxID:      r.TxID,
		CreatedAt: r.CreatedAt,
		ExpiresAt: r.ExpiresAt,
	}
}
