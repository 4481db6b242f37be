package chain

import (
	"context"
	"encoding/hex"
	"strconv"
)

// Mempool lists the ids of the node's unconfirmed transactions
// (/list-unconfirmed-transactions); ids that are not 64 hex characters are
// a bad response.
func (b *Bytomd) Mempool(ctx context.Context) ([]string, error) {
	const path = "/list-unconfirmed-transactions"
	var out struct {
		Total int      `json:"total"`
		TxIDs []string `json:"tx_ids"`
	}
	if err := b.call(ctx, path, nil, &out); err != nil {
		return nil, err
	}
	for _, id := range out.TxIDs {
		if len(id) != 64 {
			return nil, b.t.bad(path, "transaction id of "+strconv.Itoa(len(id))+" characters")
		}
		if _, err := hex.DecodeString(id); err != nil {
			return nil, b.t.bad(path, "transaction id is not hex")
		}
	}
	return out.TxIDs, nil
}
