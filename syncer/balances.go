package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/storage"
)

// defaultUnknownTxTTL is how long a legacy balance row may name a transaction
// the chain does not know before it expires (the original's 600 s).
const defaultUnknownTxTTL = 600 * time.Second

// balanceVerify settles legacy update-balance rows against the chain. The
// original trusted the client; here a row counts only when its transaction,
// once in a block, really moves that amount of that asset for that address.
type balanceVerify struct {
	Store balanceStore
	Chain chain.Source
	// UnknownTxTTL expires rows whose transaction stays unknown; 0 means defaultUnknownTxTTL.
	UnknownTxTTL time.Duration
	Log          *slog.Logger
}

// balanceOutcome counts what one pass decided.
type balanceOutcome struct {
	Confirmed, Rejected, Expired, Pending int
}

// Run checks up to one batch of pending rows.
func (b *balanceVerify) Run(ctx context.Context) (balanceOutcome, error) {
	var out balanceOutcome
	pending, err := b.Store.PendingBalances(ctx, storage.MaxListLimit)
	if err != nil || len(pending) == 0 {
		return out, err
	}
	var txIDs []string
	seenTx := map[string]bool{}
	for _, r := range pending {
		if !seenTx[r.TxID] {
			seenTx[r.TxID] = true
			txIDs = append(txIDs, r.TxID)
		}
	}
	// Rows already confirmed for a (tx, address, asset): a tx id backs one row each.
	rows, err := b.Store.BalancesByTx(ctx, txIDs)
	if err != nil {
		return out, err
	}
	taken := map[balanceKey]bool{}
	for _, r := range rows {
		if r.State == storage.BalanceConfirmed {
			taken[keyOf(r)] = true
		}
	}
	ttl := b.UnknownTxTTL
	if ttl <= 0 {
		ttl = defaultUnknownTxTTL
	}
	type decision struct {
		state string
		fail  bool
	}
	decided := map[decision][]int64{}
	byTx := map[string][]storage.Balance{}
	for _, r := range pending {
		byTx[r.TxID] = append(byTx[r.TxID], r)
	}
	for _, id := range txIDs {
		tx, err := b.Chain.GetTransaction(ctx, id)
		switch {
		case errors.Is(err, chain.ErrTxNotFound):
			for _, r := range byTx[id] {
				if now().Sub(r.CreatedAt) >= ttl {
					decided[decision{storage.BalanceExpired, false}] = append(decided[decision{storage.BalanceExpired, false}], r.ID)
					out.Expired++
				} else {
					out.Pending++
				}
			}
			continue
		case err != nil:
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			b.logger().Warn("balance verify: get transaction", "tx_id", id, "err", err)
			out.Pending += len(byTx[id])
			continue
		case !tx.Confirmed():
			out.Pending += len(byTx[id])
			continue
		}
		for _, r := range byTx[id] {
			k := keyOf(r)
			d := decision{storage.BalanceRejected, tx.StatusFail}
			if !taken[k] && (tx.StatusFail || netAmount(tx, r.Address, r.Asset).Cmp(big.NewInt(r.Amount)) == 0) {
				d.state = storage.BalanceConfirmed
				taken[k] = true
				out.Confirmed++
			} else {
				out.Rejected++
				b.logger().Info("balance row rejected", "id", r.ID, "tx_id", r.TxID, "duplicate", taken[k])
			}
			decided[d] = append(decided[d], r.ID)
		}
	}
	for d, ids := range decided {
		if err := b.Store.SetBalanceState(ctx, ids, d.state, d.fail); err != nil {
			return out, fmt.Errorf("syncer: balance state: %w", err)
		}
	}
	return out, nil
}

type balanceKey struct{ tx, address, asset string }

func keyOf(r storage.Balance) balanceKey { return balanceKey{r.TxID, r.Address, r.Asset} }

// netAmount is what tx moved to address in asset: its outputs to the address
// minus its inputs from it, exactly (a legacy balance row holds an int64, so
// a net amount beyond it matches no row).
func netAmount(tx *chain.Tx, address, asset string) *big.Int {
	n := new(big.Int)
	for _, o := range tx.Outputs {
		if o.Address == address && o.Asset == asset {
			n.Add(n, new(big.Int).SetUint64(o.Amount))
		}
	}
	for _, in := range tx.Inputs {
		if in.Address == address && in.Asset == asset {
			n.Sub(n, new(big.Int).SetUint64(in.Amount))
		}
	}
	return n
}

func (b *balanceVerify) logger() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.Default()
}
