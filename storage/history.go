package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// TxIO is one input or output of a recorded transaction.
type TxIO struct {
	Address string `json:"address"`
	Program string `json:"program,omitempty"`
	Asset   string `json:"asset"`
	Amount  uint64 `json:"amount"`
	UTXO    string `json:"utxo,omitempty"`
}

// CrawledTx is a transaction of a block that spends a pool UTXO: the pool's
// transaction history (ListTransactions).
type CrawledTx struct {
	TxID       string
	StatusFail bool
	Inputs     []TxIO
	Outputs    []TxIO
}

// BlockHeader is the part of a block the index keeps.
type BlockHeader struct {
	Height       int64
	Hash         string
	PreviousHash string
	Time         time.Time
}

// ListTransactions returns up to limit transactions recorded for the pool,
// newest first, with an id below beforeID (0: from the newest); address,
// when set, keeps those with an input or output of that address.
func (s *Store) ListTransactions(ctx context.Context, poolID int64, address string, beforeID int64, limit int) ([]Transaction, error) {
	limit = pageLimit(limit)
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
