package sim

import (
	"net/http"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/chain"
)

type exIO struct {
	Direction      string `json:"direction"`
	Type           string `json:"type"`
	UTXOID         string `json:"utxo_id"`
	Address        string `json:"address"`
	AssetID        string `json:"asset_id"`
	Amount         uint64 `json:"amount"`
	ControlProgram string `json:"control_program"`
}

type exTx struct {
	ID         string `json:"id"`
	Height     uint64 `json:"height"`
	BlockHash  string `json:"block_hash"`
	Timestamp  int64  `json:"timestamp"`
	StatusFail bool   `json:"status_fail"`
	Size       int    `json:"size"`
	Detail     []exIO `json:"detail"`
}

func toExTx(v txView) exTx {
	ct := v.toChain()
	x := exTx{ID: v.id, Height: v.height, BlockHash: v.blockHash, Timestamp: unix(v.blockTime),
		StatusFail: v.fail, Size: v.size(), Detail: []exIO{}}
	x.Detail = appendExIOs(x.Detail, "input", ct.Inputs)
	x.Detail = appendExIOs(x.Detail, "output", ct.Outputs)
	return x
}

func appendExIOs(out []exIO, direction string, ios []chain.TxIO) []exIO {
	for _, io := range ios {
		out = append(out, exIO{Direction: direction, Type: io.Type, UTXOID: io.UTXO, Address: io.Address,
			AssetID: io.Asset, Amount: io.Amount, ControlProgram: io.Program})
	}
	return out
}

func (c *Chain) exTransaction(ctx *fiber.Ctx) error {
	id := ctx.Params("id")
	c.mu.Lock()
	t := c.txs[id]
	var v txView
	if t != nil {
		v = snapshotTx(t)
	}
	c.mu.Unlock()
	if t == nil {
		return jsonError(ctx, http.StatusNotFound, "not_found", "transaction not found")
	}
	return ctx.JSON(toExTx(v))
}

func (c *Chain) exBlock(ctx *fiber.Ctx) error {
	h, err := strconv.ParseUint(ctx.Params("height"), 10, 64)
	if err != nil {
		return jsonError(ctx, http.StatusBadRequest, "bad_request", "height must be a non-negative integer")
	}
	c.mu.Lock()
	v, ok := c.blockLocked(h, "")
	c.mu.Unlock()
	if !ok {
		return jsonError(ctx, http.StatusNotFound, "not_found", "block not found")
	}
	txs := make([]exTx, len(v.txs))
	for i, t := range v.txs {
		txs[i] = toExTx(t)
	}
	return ctx.JSON(fiber.Map{"hash": v.hash, "height": v.height, "previous_block_hash": v.prev,
		"timestamp": unix(v.time), "transactions": txs})
}

func (c *Chain) exStatus(ctx *fiber.Ctx) error {
	tip := c.Tip()
	return ctx.JSON(fiber.Map{"height": tip.Height, "hash": tip.BlockHash})
}
