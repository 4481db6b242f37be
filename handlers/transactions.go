package handlers

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/storage"
)

// txIOJSON is an input or output of a recorded transaction.
type txIOJSON struct {
	Address string `json:"address"`
	Asset   string `json:"asset"`
	Amount  uint64 `json:"amount"`
}

// transactionJSON is a transaction the chain index recorded for a pool.
type transactionJSON struct {
	TxID       string     `json:"tx_id"`
	Pool       int64      `json:"pool"`
	Height     int64      `json:"height"`
	BlockHash  string     `json:"block_hash"`
	BlockTime  time.Time  `json:"block_time"`
	StatusFail bool       `json:"status_fail"`
	Inputs     []txIOJSON `json:"inputs"`
	Outputs    []txIOJSON `json:"outputs"`
}

type transactionPage struct {
	Transactions []transactionJSON `json:"transactions"`
	NextCursor   string            `json:"next_cursor"`
}

// listTransactions is GET /v1/transactions?pool=&address=&limit=&cursor=: the
// transactions spending the pool's UTXOs that the chain index recorded,
// newest first; with address, those with an input or output of it.
func (s *server) listTransactions(c *fiber.Ctx) error {
	if err := checkParams(c, "listTransactions"); err != nil {
		return s.apiBad(c, err)
	}
	poolID, err := parsePoolID(c.Query("pool"))
	if err != nil {
		return s.apiBad(c, err)
	}
	address := c.Query("address") // the document's Address, or empty
	limit, before, err := pageQuery(c)
	if err != nil {
		return s.apiBad(c, err)
	}
	ctx, cancel := reqContext(c)
	defer cancel()
	if _, err := s.cachedPool(ctx, poolID); errors.Is(err, storage.ErrNotFound) {
		return apiError(c, fiber.StatusNotFound, "pool_not_found", "pool not found")
	} else if err != nil {
		return s.unavailable(c, "unavailable", fmt.Errorf("get pool %d: %w", poolID, err))
	}
	// One extra row tells whether another page follows.
	rows, err := s.store.ListTransactions(ctx, poolID, address, before, limit+1)
	if err != nil {
		return s.unavailable(c, "unavailable", fmt.Errorf("list transactions: %w", err))
	}
	page := transactionPage{Transactions: make([]transactionJSON, 0, min(len(rows), limit))}
	if len(rows) > limit {
		rows = rows[:limit]
		page.NextCursor = strconv.FormatInt(rows[limit-1].ID, 10)
	}
	for _, r := range rows {
		in, err1 := storage.DecodeTxIOs(r.Inputs)
		out, err2 := storage.DecodeTxIOs(r.Outputs)
		if err := errors.Join(err1, err2); err != nil {
			return s.internal(c, fmt.Errorf("transaction %s: %w", r.TxID, err))
		}
		page.Transactions = append(page.Transactions, transactionJSON{TxID: r.TxID, Pool: r.PoolID, Height: r.Height,
			BlockHash: r.BlockHash, BlockTime: r.BlockTime, StatusFail: r.StatusFail, Inputs: ioJSON(in), Outputs: ioJSON(out)})
	}
	return c.JSON(page)
}

func ioJSON(ios []storage.TxIO) []txIOJSON {
	out := make([]txIOJSON, len(ios))
	for i, io := range ios {
		out[i] = txIOJSON{Address: io.Address, Asset: io.Asset, Amount: io.Amount}
	}
	return out
}
