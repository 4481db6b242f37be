package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// JobIndex names each pool's position in the chain index (sync_cursors).
const JobIndex = "index"

// ReorgWindow is how deep the index looks for a fork point block by block;
// past it, it bisects the blocks it remembers (every one it applied: a
// year of mainnet is about 210,000 small rows).
const ReorgWindow = 200

// IndexedOutput is an output of a pool's program and asset that a block or
// the mempool created.
type IndexedOutput struct {
	PoolID      int64
	Hash        string
	Asset       string
	Amount      uint64
	TxID        string
	Height      int64  // its block, 0 while pending
	ValidHeight int64  // the tip from which it may be spent (coinbase: height + 100)
	State       string // StateAvailable, StateImmature for a coinbase output, or StateSpent
	// spentTx and spentHeight are the spend of an output stored spent (a
	// later block of the same batch spent it).
	spentTx     string
	spentHeight int64
}

// IndexedSpend is a pool's output a transaction spent.
type IndexedSpend struct {
	PoolID int64
	Hash   string
	TxID   string
	Height int64 // the spending block, 0 while pending
}

// IndexedBlock is what the index applies of one block: the pool outputs it
// creates, the pool outputs it spends, and per pool the transactions that
// spend its outputs (its history).
type IndexedBlock struct {
	Header  BlockHeader
	Outputs []IndexedOutput
	Spends  []IndexedSpend
	Txs     map[int64][]CrawledTx
}

// Touched are the UTXOs whose chain state a write changed, by pool.
type Touched map[int64][]string

// Add records hash of pool.
func (t Touched) Add(pool int64, hash string) { t[pool] = append(t[pool], hash) }

// Len is the number of entries.
func (t Touched) Len() int {
	n := 0
	for _, hs := range t {
		n += len(hs)
	}
	return n
}

// Merge adds every entry of o.
func (t Touched) Merge(o Touched) {
	for p, hs := range o {
		t[p] = append(t[p], hs...)
	}
}

// ApplyBlocks applies consecutive blocks to the pools whose index cursor is
// the first block's parent: the outputs are stored (or confirmed, when the
// mempool showed them first), the spends marked, the history recorded, the
// blocks remembered (for finding the fork point of a reorganisation) and,
// last, the pools' cursors moved to the last block. It returns the UTXOs it
// touched.
//
// Each part is idempotent, so on PostgreSQL they run at once, each in a
// fenced transaction on a connection of its own, and the cursors commit in
// a last one only once every part has: a failure leaves the cursors where
// they were and the batch is applied again. (SQLite, one writer at a time,
// does it all in one transaction.)
func (s *Store) ApplyBlocks(ctx context.Context, pools []int64, blocks []IndexedBlock) (Touched, error) {
	if len(blocks) == 0 || len(pools) == 0 {
		return nil, nil
	}
	for i, b := range blocks {
		if b.Header.Hash == "" || (i > 0 && b.Header.Height != blocks[i-1].Header.Height+1) {
			return nil, fmt.Errorf("%w: blocks must be consecutive and have hashes", errInvalidArgument)
		}
	}
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	t := now()
	outs, spends := batchChanges(blocks)
	hist, histIOs, err := historyRows(blocks, t)
	if err != nil {
		return nil, err
	}
	touched := Touched{}
	for _, o := range outs {
		touched.Add(o.PoolID, o.Hash)
	}
	for _, sp := range spends {
		touched.Add(sp.PoolID, sp.Hash)
	}
	parts := []func(tx *gorm.DB) error{
		func(tx *gorm.DB) error { return upsertOutputs(tx, outs, t) },
		func(tx *gorm.DB) error { return markSpends(tx, spends, t) },
	}
	half := len(hist) / 2
	for _, r := range [][2]int{{0, half}, {half, len(hist)}} {
		parts = append(parts, func(tx *gorm.DB) error { return recordHistory(tx, hist[r[0]:r[1]], histIOs[r[0]:r[1]]) })
	}
	moveCursors := func(tx *gorm.DB) error {
		rows := make([]chainBlock, len(blocks))
		for i, b := range blocks {
			rows[i] = chainBlock{Height: b.Header.Height, Hash: b.Header.Hash, PreviousHash: b.Header.PreviousHash}
		}
		if err := tx.Clauses(clause.OnConflict{UpdateAll: true}).CreateInBatches(&rows, batchSize).Error; err != nil {
			return fmt.Errorf("remember blocks: %w", err)
		}
		last := blocks[len(blocks)-1].Header
		ok := t
		for _, p := range pools {
			c := SyncCursor{PoolID: p, Job: JobIndex, Height: last.Height, BlockHash: last.Hash, LastSuccess: &ok}
			if err := s.saveCursorTx(tx, c); err != nil {
				return err
			}
		}
		return s.checkFence(tx)
	}
	if s.dialect != dialectPostgres {
		err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			for _, part := range parts {
				if err := part(tx); err != nil {
					return err
				}
			}
			return moveCursors(tx)
		})
	} else {
		errs := make(chan error, len(parts))
		for _, part := range parts {
			go func() {
				errs <- s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
					if err := part(tx); err != nil {
						return err
					}
					return s.checkFence(tx)
				})
			}()
		}
		for range parts {
			err = errors.Join(err, <-errs)
		}
		if err == nil {
			err = s.db.WithContext(ctx).Transaction(moveCursors)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("storage: apply blocks %d-%d: %w", blocks[0].Header.Height, blocks[len(blocks)-1].Header.Height, err)
	}
	return touched, nil
}

// batchChanges gathers the outputs and spends of a batch. An output a later
// block of the batch spends is stored spent at once: the parts of
// ApplyBlocks run side by side, so the spend could not find its row.
func batchChanges(blocks []IndexedBlock) ([]IndexedOutput, []IndexedSpend) {
	var outs []IndexedOutput
	index := map[string]int{}
	for _, b := range blocks {
		for _, o := range b.Outputs {
			index[o.Hash] = len(outs)
			outs = append(outs, o)
		}
	}
	var spends []IndexedSpend
	for _, b := range blocks {
		for _, sp := range b.Spends {
			if i, ok := index[sp.Hash]; ok && outs[i].PoolID == sp.PoolID {
				outs[i].State, outs[i].spentTx, outs[i].spentHeight = StateSpent, sp.TxID, sp.Height
				continue
			}
			spends = append(spends, sp)
		}
	}
	return outs, spends
}

// historyRows are the transactions of blocks to record, with the inputs and
// outputs of each.
func historyRows(blocks []IndexedBlock, t time.Time) ([]Transaction, [][2][]TxIO, error) {
	var rows []Transaction
	var ios [][2][]TxIO
	for _, b := range blocks {
		for pool, txs := range b.Txs {
			for _, c := range txs {
				in, err := json.Marshal(nonNil(c.Inputs))
				if err != nil {
					return nil, nil, err
				}
				out, err := json.Marshal(nonNil(c.Outputs))
				if err != nil {
					return nil, nil, err
				}
				rows = append(rows, Transaction{PoolID: pool, TxID: c.TxID, Height: b.Header.Height, BlockHash: b.Header.Hash,
					BlockTime: dbTime(b.Header.Time), StatusFail: c.StatusFail, Inputs: string(in), Outputs: string(out), CreatedAt: t})
				ios = append(ios, [2][]TxIO{c.Inputs, c.Outputs})
			}
		}
	}
	return rows, ios, nil
}

// upsertOutputs stores new outputs; an output already stored (the mempool
// showed it first, or a reorganisation took it back) is confirmed with its
// block, and comes back from invalidated.
func upsertOutputs(tx *gorm.DB, outs []IndexedOutput, t time.Time) error {
	if len(outs) == 0 {
		return nil
	}
	if pg, err := bulk(tx); err != nil || pg != nil {
		if err != nil {
			return err
		}
		return upsertOutputsPG(tx, pg, outs, t)
	}
	for start := 0; start < len(outs); start += batchSize {
		chunk := outs[start:min(start+batchSize, len(outs))]
		q, args := insertRows(`INSERT INTO utxos (hash, pool_id, asset, amount, state, confirmed, created_tx, spent_tx, created_at,
			updated_at, height, valid_height, spent_height, spent_at)`, chunk, upsertConflict, func(o IndexedOutput) []any {
			return []any{o.Hash, o.PoolID, o.Asset, Amount(o.Amount), o.State, o.Height > 0, o.TxID, o.spentTx, t, t,
				o.Height, o.ValidHeight, o.spentHeight, spentAt(o, t)}
		})
		if err := tx.Exec(q, args...).Error; err != nil {
			return fmt.Errorf("store outputs: %w", err)
		}
	}
	return nil
}

// upsertConflict is how upsertOutputs treats an output already stored: it is
// confirmed with its block; it comes back from invalidated (a reorganisation
// took it back and the new branch has it); it is stored spent when its spend
// came in the same batch.
const upsertConflict = `ON CONFLICT (hash) DO UPDATE SET confirmed = excluded.confirmed, height = excluded.height,
	valid_height = excluded.valid_height, created_tx = excluded.created_tx, updated_at = excluded.updated_at,
	state = CASE WHEN excluded.state = 'spent' THEN 'spent' WHEN utxos.state = 'invalidated' THEN excluded.state ELSE utxos.state END,
	spent_tx = CASE WHEN excluded.state = 'spent' THEN excluded.spent_tx ELSE utxos.spent_tx END,
	spent_height = CASE WHEN excluded.state = 'spent' THEN excluded.spent_height ELSE utxos.spent_height END,
	spent_at = CASE WHEN excluded.state = 'spent' THEN COALESCE(utxos.spent_at, excluded.spent_at)
		WHEN utxos.state = 'invalidated' THEN NULL ELSE utxos.spent_at END
	WHERE utxos.pool_id = excluded.pool_id`

// spentAt is when an output stored spent was spent (nil otherwise).
func spentAt(o IndexedOutput, t time.Time) *time.Time {
	if o.State != StateSpent {
		return nil
	}
	return &t
}

// upsertOutputsPG is upsertOutputs in one statement, columns as arrays.
func upsertOutputsPG(tx *gorm.DB, pg pgConn, outs []IndexedOutput, t time.Time) error {
	n := len(outs)
	hash, asset, amount, state, txID, spentTx := make([]string, n), make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n)
	pool, height, valid, spentHeight := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, o := range outs {
		hash[i], asset[i], amount[i], state[i], txID[i], spentTx[i] =
			o.Hash, o.Asset, strconv.FormatUint(o.Amount, 10), o.State, o.TxID, o.spentTx
		pool[i], height[i], valid[i], spentHeight[i] = o.PoolID, o.Height, o.ValidHeight, o.spentHeight
	}
	_, err := pg.ExecContext(tx.Statement.Context, `INSERT INTO utxos (hash, pool_id, asset, amount, state, confirmed,
			created_tx, spent_tx, created_at, updated_at, height, valid_height, spent_height, spent_at)
		SELECT h, p, a, m::numeric, s, g > 0, x, y, $11, $11, g, v, z, CASE WHEN s = 'spent' THEN $11::timestamptz END
		FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[],
			$9::text[], $10::bigint[]) AS o(h, p, a, m, s, x, g, v, y, z)
		`+upsertConflict,
		hash, pool, asset, amount, state, txID, height, valid, spentTx, spentHeight, t)
	if err != nil {
		return fmt.Errorf("store outputs: %w", err)
	}
	return nil
}

// markSpends marks the spent outputs with their spending transaction.
func markSpends(tx *gorm.DB, spends []IndexedSpend, t time.Time) error {
	if len(spends) == 0 {
		return nil
	}
	if pg, err := bulk(tx); err != nil || pg != nil {
		if err != nil {
			return err
		}
		n := len(spends)
		hash, txID := make([]string, n), make([]string, n)
		pool, height := make([]int64, n), make([]int64, n)
		for i, sp := range spends {
			hash[i], txID[i], pool[i], height[i] = sp.Hash, sp.TxID, sp.PoolID, sp.Height
		}
		_, err := pg.ExecContext(tx.Statement.Context, `UPDATE utxos SET state = 'spent', spent_tx = v.x, spent_height = v.g,
				spent_at = COALESCE(spent_at, $5), updated_at = $5
			FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[]) AS v(h, p, x, g)
			WHERE utxos.hash = v.h AND utxos.pool_id = v.p`, hash, pool, txID, height, t)
		if err != nil {
			return fmt.Errorf("mark spends: %w", err)
		}
		return nil
	}
	for start := 0; start < len(spends); start += batchSize {
		chunk := spends[start:min(start+batchSize, len(spends))]
		var rows strings.Builder
		args := make([]any, 0, 3+4*len(chunk))
		args = append(args, StateSpent, t, t)
		for i, sp := range chunk {
			if i > 0 {
				rows.WriteString(",")
			}
			rows.WriteString("(?, CAST(? AS BIGINT), ?, CAST(? AS BIGINT))")
			args = append(args, sp.Hash, sp.PoolID, sp.TxID, sp.Height)
		}
		err := tx.Exec(`UPDATE utxos SET state = ?, spent_tx = v.tx_id, spent_height = v.height,
			spent_at = COALESCE(spent_at, ?), updated_at = ?
			FROM `+valuesTable("v", []string{"hash", "pool_id", "tx_id", "height"}, rows.String())+`
			WHERE utxos.hash = v.hash AND utxos.pool_id = v.pool_id`, args...).Error
		if err != nil {
			return fmt.Errorf("mark spends: %w", err)
		}
	}
	return nil
}

// recordHistory records transactions with the addresses of their inputs and
// outputs (ios[i] are those of rows[i]), in multi-row statements.
func recordHistory(tx *gorm.DB, rows []Transaction, ios [][2][]TxIO) error {
	if len(rows) == 0 {
		return nil
	}
	if pg, err := bulk(tx); err != nil || pg != nil {
		if err != nil {
			return err
		}
		return recordHistoryPG(tx, pg, rows, ios)
	}
	var addrs []transactionAddress
	for start := 0; start < len(rows); start += batchSize {
		chunk := rows[start:min(start+batchSize, len(rows))]
		// A transaction is recorded once per pool: a block is applied once,
		// and a rollback deletes what it recorded above the fork.
		q, args := insertRows(`INSERT INTO transactions (pool_id, tx_id, height, block_hash, block_time, status_fail, inputs,
			outputs, created_at)`, chunk, `ON CONFLICT (pool_id, tx_id) DO NOTHING RETURNING id, pool_id, tx_id`, func(r Transaction) []any {
			return []any{r.PoolID, r.TxID, r.Height, r.BlockHash, r.BlockTime, r.StatusFail, r.Inputs, r.Outputs, r.CreatedAt}
		})
		var ids []struct {
			ID     int64
			PoolID int64
			TxID   string
		}
		if err := tx.Raw(q, args...).Scan(&ids).Error; err != nil {
			return fmt.Errorf("record transactions: %w", err)
		}
		index := make(map[[2]string]int, len(chunk))
		for i, r := range chunk {
			index[[2]string{strconv.FormatInt(r.PoolID, 10), r.TxID}] = start + i
		}
		for _, id := range ids {
			i, ok := index[[2]string{strconv.FormatInt(id.PoolID, 10), id.TxID}]
			if !ok {
				continue
			}
			seen := map[string]bool{}
			for _, side := range ios[i] {
				for _, io := range side {
					if io.Address != "" && !seen[io.Address] {
						seen[io.Address] = true
						addrs = append(addrs, transactionAddress{TransactionID: id.ID, Address: io.Address})
					}
				}
			}
		}
	}
	for start := 0; start < len(addrs); start += batchSize {
		chunk := addrs[start:min(start+batchSize, len(addrs))]
		q, args := insertRows(`INSERT INTO transaction_addresses (transaction_id, address)`, chunk, `ON CONFLICT DO NOTHING`,
			func(a transactionAddress) []any { return []any{a.TransactionID, a.Address} })
		if err := tx.Exec(q, args...).Error; err != nil {
			return fmt.Errorf("record addresses: %w", err)
		}
	}
	return nil
}

// recordHistoryPG is recordHistory in two statements, columns as arrays.
func recordHistoryPG(tx *gorm.DB, pg pgConn, rows []Transaction, ios [][2][]TxIO) error {
	n := len(rows)
	pool, height := make([]int64, n), make([]int64, n)
	txID, hash, in, out := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	at, fail := make([]time.Time, n), make([]bool, n)
	for i, r := range rows {
		pool[i], height[i], txID[i], hash[i], in[i], out[i], at[i], fail[i] =
			r.PoolID, r.Height, r.TxID, r.BlockHash, r.Inputs, r.Outputs, r.BlockTime, r.StatusFail
	}
	ctx := tx.Statement.Context
	res, err := pg.QueryContext(ctx, `INSERT INTO transactions (pool_id, tx_id, height, block_hash, block_time, status_fail,
			inputs, outputs, created_at)
		SELECT p, x, g, b, t, f, i, o, $9
		FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[], $6::boolean[], $7::text[], $8::text[])
			AS r(p, x, g, b, t, f, i, o)
		ON CONFLICT (pool_id, tx_id) DO NOTHING RETURNING id, pool_id, tx_id`,
		pool, txID, height, hash, at, fail, in, out, now())
	if err != nil {
		return fmt.Errorf("record transactions: %w", err)
	}
	index := make(map[string]int, n)
	for i, r := range rows {
		index[strconv.FormatInt(r.PoolID, 10)+"/"+r.TxID] = i
	}
	var ids []int64
	var addrs []string
	for res.Next() {
		var id, p int64
		var x string
		if err := res.Scan(&id, &p, &x); err != nil {
			return fmt.Errorf("record transactions: %w", errors.Join(err, res.Close()))
		}
		seen := map[string]bool{}
		for _, side := range ios[index[strconv.FormatInt(p, 10)+"/"+x]] {
			for _, io := range side {
				if io.Address != "" && !seen[io.Address] {
					seen[io.Address] = true
					ids, addrs = append(ids, id), append(addrs, io.Address)
				}
			}
		}
	}
	if err := errors.Join(res.Err(), res.Close()); err != nil {
		return fmt.Errorf("record transactions: %w", err)
	}
	if len(ids) == 0 {
		return nil
	}
	_, err = pg.ExecContext(ctx, `INSERT INTO transaction_addresses (transaction_id, address)
		SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT DO NOTHING`, ids, addrs)
	if err != nil {
		return fmt.Errorf("record addresses: %w", err)
	}
	return nil
}

func nonNil(ios []TxIO) []TxIO {
	if ios == nil {
		return []TxIO{}
	}
	return ios
}

// IndexedHashes returns the hashes the index remembers for the blocks from
// height from to height to, by height.
func (s *Store) IndexedHashes(ctx context.Context, from, to int64) (map[int64]string, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var rows []chainBlock
	err := s.db.WithContext(ctx).Where("height BETWEEN ? AND ?", from, to).Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("storage: indexed blocks: %w", err)
	}
	out := make(map[int64]string, len(rows))
	for _, r := range rows {
		out[r.Height] = r.Hash
	}
	return out, nil
}

// LowestIndexed returns the lowest height above the genesis the index
// remembers a block of, and whether it remembers any.
func (s *Store) LowestIndexed(ctx context.Context) (int64, bool, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var h *int64
	if err := s.db.WithContext(ctx).Raw(`SELECT MIN(height) FROM chain_blocks WHERE height > 0`).Scan(&h).Error; err != nil {
		return 0, false, fmt.Errorf("storage: indexed blocks: %w", err)
	}
	if h == nil {
		return 0, false, nil
	}
	return *h, true, nil
}

// ReleaseFailedSubmits releases the submitted reservations of pools whose
// transaction is one of txIDs (transactions a block took with status_fail,
// moving none of those pools' asset): their UTXOs were not spent. One fenced
// transaction; it returns them.
func (s *Store) ReleaseFailedSubmits(ctx context.Context, pools []int64, txIDs []string) ([]Reservation, error) {
	if len(pools) == 0 || len(txIDs) == 0 {
		return nil, nil
	}
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	var out []Reservation
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for _, chunk := range chunks(txIDs) {
			var rows []Reservation
			err := tx.Raw(`UPDATE reservations SET state = ?, updated_at = ?
				WHERE id IN (SELECT id FROM reservations WHERE pool_id IN ? AND tx_id IN ? AND state = ?`+lockInIDOrder(tx)+`)
				AND state = ? RETURNING *`, ResReleased, now(), pools, chunk, ResSubmitted, ResSubmitted).Scan(&rows).Error
			if err != nil {
				return err
			}
			out = append(out, rows...)
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return nil, fmt.Errorf("storage: release failed submits: %w", err)
	}
	return out, nil
}

// Genesis returns the hash of the genesis block of the chain the index
// follows ("" before the index first ran); SetGenesis records it once.
func (s *Store) Genesis(ctx context.Context) (string, error) {
	h, err := s.IndexedHashes(ctx, 0, 0)
	if err != nil {
		return "", err
	}
	return h[0], nil
}

// SetGenesis records the hash of the chain's genesis block, unless one is
// recorded already.
func (s *Store) SetGenesis(ctx context.Context, hash string) error {
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&chainBlock{Height: 0, Hash: hash}).Error; err != nil {
			return err
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return fmt.Errorf("storage: record genesis: %w", err)
	}
	return nil
}

// RollbackIndex undoes what the index applied above height fork (the fork
// point of a reorganisation, whose block hash is forkHash): outputs created
// above it are pending again, and so are spends above it (the mempool
// overlay then says which still hold), their history is forgotten, the
// blocks too, and every pool's cursor above fork goes back to it. One fenced
// transaction; it returns the UTXOs it touched.
func (s *Store) RollbackIndex(ctx context.Context, fork int64, forkHash string) (Touched, error) {
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	touched := Touched{}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		t := now()
		var rows []struct {
			PoolID int64
			Hash   string
		}
		err := tx.Raw(`UPDATE utxos SET confirmed = false, height = 0, updated_at = ? WHERE height > ? RETURNING pool_id, hash`,
			t, fork).Scan(&rows).Error
		if err != nil {
			return err
		}
		for _, r := range rows {
			touched.Add(r.PoolID, r.Hash)
		}
		rows = nil
		err = tx.Raw(`UPDATE utxos SET spent_height = 0, updated_at = ? WHERE spent_height > ? RETURNING pool_id, hash`,
			t, fork).Scan(&rows).Error
		if err != nil {
			return err
		}
		for _, r := range rows {
			touched.Add(r.PoolID, r.Hash)
		}
		if err := tx.Exec(`DELETE FROM transactions WHERE height > ?`, fork).Error; err != nil {
			return err
		}
		if err := tx.Exec(`DELETE FROM chain_blocks WHERE height > ?`, fork).Error; err != nil {
			return err
		}
		// Cursors above the fork go back to it, and so does one at the fork
		// on another branch.
		res := tx.Exec(`UPDATE sync_cursors SET height = ?, block_hash = ?, updated_at = ?, epoch = ?
			WHERE job = ? AND (height > ? OR (height = ? AND block_hash <> ? AND ? <> '')) AND epoch <= ?`,
			fork, forkHash, t, s.epoch(), JobIndex, fork, fork, forkHash, forkHash, s.epoch())
		if res.Error != nil {
			return res.Error
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return nil, fmt.Errorf("storage: roll the index back to height %d: %w", fork, err)
	}
	return touched, nil
}

// MempoolRows returns the UTXOs of pools whose chain state the mempool
// decides: outputs of pending transactions (not confirmed), UTXOs spent by
// pending transactions (spent at height 0), and those of hashes.
func (s *Store) MempoolRows(ctx context.Context, pools []int64, hashes []string) ([]UTXO, error) {
	if len(pools) == 0 {
		return nil, nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var out []UTXO
	err := s.db.WithContext(ctx).Where("pool_id IN ? AND (confirmed = ? OR (state = ? AND spent_height = 0))",
		pools, false, StateSpent).Find(&out).Error
	if err != nil {
		return nil, fmt.Errorf("storage: pending utxos: %w", err)
	}
	extra, err := s.GetUTXOs(ctx, hashes)
	if err != nil {
		return nil, err
	}
	return append(out, extra...), nil
}

// UTXOChange is a new chain state of a stored UTXO.
type UTXOChange struct {
	PoolID      int64
	Hash        string
	State       string
	SpentTx     string
	SpentHeight int64
}

// ChangeUTXOs stores new pending outputs and changes the chain state of
// stored ones, in one fenced transaction.
func (s *Store) ChangeUTXOs(ctx context.Context, outs []IndexedOutput, changes []UTXOChange) error {
	if len(outs) == 0 && len(changes) == 0 {
		return nil
	}
	for _, c := range changes {
		if !validUTXOState(c.State) {
			return fmt.Errorf("%w: unknown utxo state %q", errInvalidArgument, c.State)
		}
	}
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		t := now()
		if err := upsertOutputs(tx, outs, t); err != nil {
			return err
		}
		for start := 0; start < len(changes); start += batchSize {
			chunk := changes[start:min(start+batchSize, len(changes))]
			var rows strings.Builder
			args := make([]any, 0, 5*len(chunk)+2)
			args = append(args, t, t)
			for i, c := range chunk {
				if i > 0 {
					rows.WriteString(",")
				}
				rows.WriteString("(?, CAST(? AS BIGINT), ?, ?, CAST(? AS BIGINT))")
				args = append(args, c.Hash, c.PoolID, c.State, c.SpentTx, c.SpentHeight)
			}
			err := tx.Exec(`UPDATE utxos SET state = v.state, spent_tx = v.spent_tx, spent_height = v.spent_height, updated_at = ?,
				spent_at = CASE WHEN v.state = 'available' THEN NULL ELSE COALESCE(spent_at, ?) END
				FROM `+valuesTable("v", []string{"hash", "pool_id", "state", "spent_tx", "spent_height"}, rows.String())+`
				WHERE utxos.hash = v.hash AND utxos.pool_id = v.pool_id`, args...).Error
			if err != nil {
				return fmt.Errorf("change utxos: %w", err)
			}
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return fmt.Errorf("storage: change utxos: %w", err)
	}
	return nil
}

// MatureUTXOs makes the immature outputs whose valid height the tip reached
// available, and returns them.
func (s *Store) MatureUTXOs(ctx context.Context, tip int64) (Touched, error) {
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	touched := Touched{}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var rows []struct {
			PoolID int64
			Hash   string
		}
		err := tx.Raw(`UPDATE utxos SET state = ?, updated_at = ? WHERE state = ? AND valid_height <= ? RETURNING pool_id, hash`,
			StateAvailable, now(), StateImmature, tip).Scan(&rows).Error
		if err != nil {
			return err
		}
		for _, r := range rows {
			touched.Add(r.PoolID, r.Hash)
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return nil, fmt.Errorf("storage: mature utxos: %w", err)
	}
	return touched, nil
}

// IndexCursors returns each pool's position in the chain index.
func (s *Store) IndexCursors(ctx context.Context) (map[int64]SyncCursor, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var rows []SyncCursor
	if err := s.db.WithContext(ctx).Where("job = ?", JobIndex).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("storage: index cursors: %w", err)
	}
	out := make(map[int64]SyncCursor, len(rows))
	for _, r := range rows {
		out[r.PoolID] = r
	}
	return out, nil
}
