package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// JobCrawl names the block crawler's cursor.
const JobCrawl = "crawl"

// ReorgWindow is how many of its latest blocks the crawler remembers per pool:
// a reorganisation deeper than that rolls the pool back to the oldest one kept.
const ReorgWindow = 200

// TxIO is one input or output of a recorded transaction.
type TxIO struct {
	Address string `json:"address"`
	Program string `json:"program,omitempty"`
	Asset   string `json:"asset"`
	Amount  int64  `json:"amount"`
	UTXO    string `json:"utxo,omitempty"`
}

// CrawledTx is a transaction of a block that spends a pool UTXO.
type CrawledTx struct {
	TxID       string
	StatusFail bool
	Inputs     []TxIO
	Outputs    []TxIO
	// Spends are the pool UTXOs it spends (marked with its id unless it failed).
	Spends []string
}

// BlockHeader is the part of a block the crawler keeps.
type BlockHeader struct {
	Height       int64
	Hash         string
	PreviousHash string
	Time         time.Time
}

// ApplyBlock records, for the pool, the transactions of block b that spend
// its UTXOs (with their addresses), marks the UTXOs they spend with their id,
// remembers b's hash and moves the pool's crawl cursor to b, in one fenced
// transaction. Blocks older than ReorgWindow are forgotten.
func (s *Store) ApplyBlock(ctx context.Context, poolID int64, b BlockHeader, txs []CrawledTx) error {
	if b.Hash == "" || b.Height <= 0 {
		return fmt.Errorf("%w: block without hash or height", ErrInvalidArgument)
	}
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		t := now()
		rows := make([]Transaction, 0, len(txs))
		for _, c := range txs {
			in, err := json.Marshal(nonNil(c.Inputs))
			if err != nil {
				return err
			}
			out, err := json.Marshal(nonNil(c.Outputs))
			if err != nil {
				return err
			}
			rows = append(rows, Transaction{PoolID: poolID, TxID: c.TxID, Height: b.Height, BlockHash: b.Hash,
				BlockTime: dbTime(b.Time), StatusFail: c.StatusFail, Inputs: string(in), Outputs: string(out), CreatedAt: t})
		}
		if len(rows) > 0 {
			// No conflict expected: a block is applied once, and a rollback
			// deletes what it recorded above the fork.
			if err := tx.CreateInBatches(&rows, batchSize).Error; err != nil {
				return fmt.Errorf("record transactions: %w", err)
			}
		}
		var addrs []TransactionAddress
		for i, r := range rows {
			seen := map[string]bool{}
			for _, io := range append(append([]TxIO(nil), txs[i].Inputs...), txs[i].Outputs...) {
				if io.Address != "" && !seen[io.Address] {
					seen[io.Address] = true
					addrs = append(addrs, TransactionAddress{TransactionID: r.ID, Address: io.Address})
				}
			}
		}
		if len(addrs) > 0 {
			if err := tx.Clauses(clause.OnConflict{DoNothing: true}).CreateInBatches(&addrs, batchSize).Error; err != nil {
				return fmt.Errorf("record addresses: %w", err)
			}
		}
		for _, c := range txs {
			if c.StatusFail || len(c.Spends) == 0 {
				continue
			}
			for _, chunk := range chunks(c.Spends) {
				err := tx.Exec(`UPDATE utxos SET spent_tx = ?, updated_at = ? WHERE pool_id = ? AND hash IN ?`,
					c.TxID, t, poolID, chunk).Error
				if err != nil {
					return fmt.Errorf("mark spends: %w", err)
				}
			}
		}
		err := tx.Clauses(clause.OnConflict{UpdateAll: true}).Create(&CrawledBlock{
			PoolID: poolID, Height: b.Height, Hash: b.Hash, PreviousHash: b.PreviousHash}).Error
		if err != nil {
			return fmt.Errorf("remember block: %w", err)
		}
		if b.Height%50 == 0 {
			err := tx.Exec(`DELETE FROM crawled_blocks WHERE pool_id = ? AND height <= ?`, poolID, b.Height-ReorgWindow).Error
			if err != nil {
				return fmt.Errorf("forget old blocks: %w", err)
			}
		}
		ok := t
		if err := s.saveCursorTx(tx, SyncCursor{PoolID: poolID, Job: JobCrawl, Height: b.Height, BlockHash: b.Hash, LastSuccess: &ok}); err != nil {
			return err
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return fmt.Errorf("storage: apply block %d to pool %d: %w", b.Height, poolID, err)
	}
	return nil
}

func nonNil(ios []TxIO) []TxIO {
	if ios == nil {
		return []TxIO{}
	}
	return ios
}

// CrawledHashes returns the hashes the crawler remembers for the pool's
// blocks from height from to height to, by height.
func (s *Store) CrawledHashes(ctx context.Context, poolID, from, to int64) (map[int64]string, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var rows []CrawledBlock
	err := s.db.WithContext(ctx).Where("pool_id = ? AND height BETWEEN ? AND ?", poolID, from, to).Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("storage: crawled blocks: %w", err)
	}
	out := make(map[int64]string, len(rows))
	for _, r := range rows {
		out[r.Height] = r.Hash
	}
	return out, nil
}

// RollbackCrawl undoes what the crawler applied to the pool above height fork
// (whose block hash is forkHash): the transactions recorded there are deleted,
// the UTXOs they spent lose that mark, the blocks are forgotten and the crawl
// cursor goes back to fork. One fenced transaction; it returns how many
// transactions it removed.
func (s *Store) RollbackCrawl(ctx context.Context, poolID, fork int64, forkHash string) (int64, error) {
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	var removed int64
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Exec(`DELETE FROM transactions WHERE pool_id = ? AND height > ?`, poolID, fork)
		if res.Error != nil {
			return res.Error
		}
		removed = res.RowsAffected
		err := tx.Exec(`UPDATE utxos SET spent_tx = '', updated_at = ? WHERE pool_id = ? AND spent_tx <> ''
			AND NOT EXISTS (SELECT 1 FROM transactions t WHERE t.pool_id = utxos.pool_id AND t.tx_id = utxos.spent_tx)`,
			now(), poolID).Error
		if err != nil {
			return err
		}
		if err := tx.Exec(`DELETE FROM crawled_blocks WHERE pool_id = ? AND height > ?`, poolID, fork).Error; err != nil {
			return err
		}
		ok := now()
		if err := s.saveCursorTx(tx, SyncCursor{PoolID: poolID, Job: JobCrawl, Height: fork, BlockHash: forkHash, LastSuccess: &ok}); err != nil {
			return err
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return 0, fmt.Errorf("storage: roll back pool %d to height %d: %w", poolID, fork, err)
	}
	return removed, nil
}

// ListTransactions returns up to limit transactions recorded for the pool,
// newest first, with an id below beforeID (0: from the newest); address,
// when set, keeps those with an input or output of that address.
func (s *Store) ListTransactions(ctx context.Context, poolID int64, address string, beforeID int64, limit int) ([]Transaction, error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxListLimit)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	q := s.db.WithContext(ctx).Where("transactions.pool_id = ?", poolID)
	if beforeID > 0 {
		q = q.Where("transactions.id < ?", beforeID)
	}
	if address != "" {
		q = q.Where("EXISTS (SELECT 1 FROM transaction_addresses a WHERE a.transaction_id = transactions.id AND a.address = ?)", address)
	}
	var out []Transaction
	if err := q.Order("transactions.id DESC").Limit(limit).Find(&out).Error; err != nil {
		return nil, fmt.Errorf("storage: list transactions: %w", err)
	}
	return out, nil
}

// DecodeTxIOs reads the JSON inputs or outputs of a recorded transaction.
func DecodeTxIOs(raw string) ([]TxIO, error) {
	var out []TxIO
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		return nil, errors.Join(fmt.Errorf("storage: bad recorded inputs or outputs"), err)
	}
	return out, nil
}
