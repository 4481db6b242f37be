package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// errAddressAssetRequired means a balance query lacked its address or asset;
// an empty filter never lists everyone's rows.
var errAddressAssetRequired = errors.New("storage: address and asset are required")

// AddBalance stores a legacy update-balance row as pending.
func (s *Store) AddBalance(ctx context.Context, b Balance) error {
	b.Address, b.Asset, b.TxID = strings.TrimSpace(b.Address), strings.TrimSpace(b.Asset), strings.TrimSpace(b.TxID)
	if b.Address == "" || b.Asset == "" {
		return errAddressAssetRequired
	}
	t := now()
	b.ID = 0
	b.State = BalancePending
	b.StatusFail = false
	b.CreatedAt, b.UpdatedAt = t, t
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := s.db.WithContext(ctx).Create(&b).Error; err != nil {
		return fmt.Errorf("storage: add balance: %w", err)
	}
	return nil
}

// ListBalances returns the rows of exactly that address and asset, newest
// first, leaving out rejected and expired ones. Both are required.
func (s *Store) ListBalances(ctx context.Context, address, asset string) ([]Balance, error) {
	address, asset = strings.TrimSpace(address), strings.TrimSpace(asset)
	if address == "" || asset == "" {
		return nil, errAddressAssetRequired
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var out []Balance
	err := s.db.WithContext(ctx).
		Where("address = ? AND asset = ? AND state NOT IN ?", address, asset, []string{BalanceRejected, BalanceExpired}).
		Order("created_at DESC, id DESC").Find(&out).Error
	if err != nil {
		return nil, fmt.Errorf("storage: list balances: %w", err)
	}
	return out, nil
}

// PendingBalances returns up to limit pending rows, oldest first (limit <= 0
// means 100, capped at MaxListLimit).
func (s *Store) PendingBalances(ctx context.Context, limit int) ([]Balance, error) {
	limit = pageLimit(limit)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var out []Balance
	err := s.db.WithContext(ctx).Where("state = ?", BalancePending).Order("id").Limit(limit).Find(&out).Error
	if err != nil {
		return nil, fmt.Errorf("storage: pending balances: %w", err)
	}
	return out, nil
}

// SetBalanceState sets the state and status_fail of the rows with those ids.
func (s *Store) SetBalanceState(ctx context.Context, ids []int64, state string, statusFail bool) error {
	switch state {
	case BalancePending, BalanceConfirmed, BalanceRejected, BalanceExpired:
	default:
		return fmt.Errorf("%w: unknown balance state %q", errInvalidArgument, state)
	}
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	t := now()
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for start := 0; start < len(ids); start += batchSize {
			chunk := ids[start:min(start+batchSize, len(ids))]
			err := tx.Exec(`UPDATE balances SET state = ?, status_fail = ?, updated_at = ? WHERE id IN ?`,
				state, statusFail, t, chunk).Error
			if err != nil {
				return err
			}
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return fmt.Errorf("storage: set balance state: %w", err)
	}
	return nil
}

// BalancesByTx returns every row, in any state, backed by one of the tx ids.
func (s *Store) BalancesByTx(ctx context.Context, txIDs []string) ([]Balance, error) {
	if len(txIDs) == 0 {
		return nil, nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var out []Balance
	if err := s.db.WithContext(ctx).Where("tx_id IN ?", txIDs).Order("id").Find(&out).Error; err != nil {
		return nil, fmt.Errorf("storage: balances by tx: %w", err)
	}
	return out, nil
}
