package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/chain"
)

const bodyLimit = 16 << 20

// Handler returns a fiber app serving the chain:
//
//   - blockcenter v1 under /api/v1/btm: POST /q/list-utxos?start&limit (limit
//     defaults to 100 and is capped at 1000; the result echoes the limit used),
//     POST /merchant/get-transaction, GET /q/chain-status;
//   - explorer (blockmeta-style, plain JSON without an envelope; bufferd
//     itself reads none of it): GET /transaction/:id -> tx,
//     GET /block/:height -> {"hash","height","previous_block_hash",
//     "timestamp","transactions":[tx...]}, GET /status -> {"height","hash"},
//     where tx = {"id","height","block_hash","timestamp","status_fail",
//     "size","detail":[{"direction":"input"|"output","type","utxo_id",
//     "address","asset_id","amount","control_program"}]}, height 0 meaning
//     pending; an unknown transaction or block is a 404;
//   - bytomd v1.1: POST /get-block-count, /get-block-hash, /get-block,
//     /get-block-header, /list-unconfirmed-transactions,
//     /get-unconfirmed-transaction and the wallet route /list-unspent-outputs,
//     answering like the real node, errors included (the wallet's
//     /get-transaction is not served);
//   - control: POST /sim/utxos, /sim/spend, /sim/mine ({"blocks"}, default 1),
//     /sim/reorg ({"depth","drop"}, default depth 1), /sim/drop ({"tx_id"} ->
//     {"tx_id","dropped":true}); mine and reorg answer {"height","hash"}.
//
// Control errors are {"error":{"code","message"}} with 400 (bad_request,
// not_standard), 404 (unknown_output, not_found) or 409 (immature,
// not_pending). Any other route answers like bytomd does to a route it does
// not know: HTTP 500 with a BTM000 envelope.
func (c *Chain) Handler() *fiber.App {
	app := fiber.New(fiber.Config{
		DisableStartupMessage: true,
		BodyLimit:             bodyLimit,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           60 * time.Second,
		ErrorHandler: func(ctx *fiber.Ctx, err error) error {
			code := fiber.StatusInternalServerError
			var fe *fiber.Error
			if errors.As(err, &fe) {
				code = fe.Code
			}
			return jsonError(ctx, code, codeName(code), err.Error())
		},
	})

	bc := app.Group(blockcenterPrefix)
	bc.Post("/q/list-utxos", c.bcListUTXOs)
	bc.Post("/merchant/get-transaction", c.bcGetTransaction)
	bc.Get("/q/chain-status", c.bcChainStatus)

	app.Get("/transaction/:id", c.exTransaction)
	app.Get("/block/:height", c.exBlock)
	app.Get("/status", c.exStatus)

	app.Post("/get-block-count", c.btmBlockCount)
	app.Post("/get-block-hash", c.btmBlockHash)
	app.Post("/get-block", c.btmGetBlock)
	app.Post("/get-block-header", c.btmGetBlockHeader)
	app.Post("/list-unconfirmed-transactions", c.btmListUnconfirmed)
	app.Post("/get-unconfirmed-transaction", c.btmGetUnconfirmed)
	app.Post("/list-unspent-outputs", c.btmListUnspent)

	app.Post("/sim/utxos", c.simUTXOs)
	app.Post("/sim/spend", c.simSpend)
	app.Post("/sim/mine", c.simMine)
	app.Post("/sim/reorg", c.simReorg)
	app.Post("/sim/drop", c.simDrop)

	app.Use(btmUnknownRoute)
	return app
}

// ---- helpers ----

func codeName(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusConflict:
		return "conflict"
	default:
		return "internal"
	}
}

func jsonError(ctx *fiber.Ctx, status int, code, msg string) error {
	return ctx.Status(status).JSON(fiber.Map{"error": fiber.Map{"code": code, "message": msg}})
}

// decodeLenient decodes a JSON body; an empty body is {}.
func decodeLenient(ctx *fiber.Ctx, v any) error {
	b := ctx.Body()
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}

// decodeStrict decodes a JSON body, refusing unknown fields and trailing data.
func decodeStrict(ctx *fiber.Ctx, v any) error {
	dec := json.NewDecoder(bytes.NewReader(ctx.Body()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON body")
	}
	return nil
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// ---- control ----

// simError maps an error of the Go API to a control-route response.
func simError(ctx *fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, errInvalid):
		return jsonError(ctx, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, errNotStandard):
		return jsonError(ctx, http.StatusBadRequest, "not_standard", err.Error())
	case errors.Is(err, errUnknownOutput):
		return jsonError(ctx, http.StatusNotFound, "unknown_output", err.Error())
	case errors.Is(err, chain.ErrTxNotFound):
		return jsonError(ctx, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, errImmature):
		return jsonError(ctx, http.StatusConflict, "immature", err.Error())
	case errors.Is(err, errNotPending):
		return jsonError(ctx, http.StatusConflict, "not_pending", err.Error())
	default:
		return err
	}
}

func badBody(ctx *fiber.Ctx, err error) error {
	return jsonError(ctx, http.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
}

func (c *Chain) simUTXOs(ctx *fiber.Ctx) error {
	var req struct {
		Asset   string   `json:"asset"`
		Program string   `json:"program"`
		Amounts []uint64 `json:"amounts"`
	}
	if err := decodeStrict(ctx, &req); err != nil {
		return badBody(ctx, err)
	}
	hashes, err := c.AddUTXOs(req.Asset, req.Program, req.Amounts)
	if err != nil {
		return simError(ctx, err)
	}
	return ctx.JSON(fiber.Map{"hashes": hashes})
}

func (c *Chain) simSpend(ctx *fiber.Ctx) error {
	var req struct {
		Hashes  []string `json:"hashes"`
		Outputs []Output `json:"outputs"`
		Fail    bool     `json:"fail"`
	}
	if err := decodeStrict(ctx, &req); err != nil {
		return badBody(ctx, err)
	}
	id, outs, err := c.Spend(req.Hashes, req.Outputs, req.Fail)
	if err != nil {
		return simError(ctx, err)
	}
	return ctx.JSON(fiber.Map{"tx_id": id, "outputs": outs})
}

func (c *Chain) simMine(ctx *fiber.Ctx) error {
	req := struct {
		Blocks int `json:"blocks"`
	}{Blocks: 1}
	if len(bytes.TrimSpace(ctx.Body())) > 0 {
		if err := decodeStrict(ctx, &req); err != nil {
			return badBody(ctx, err)
		}
	}
	tip, err := c.Mine(req.Blocks)
	if err != nil {
		return simError(ctx, err)
	}
	return ctx.JSON(fiber.Map{"height": tip.Height, "hash": tip.BlockHash})
}

func (c *Chain) simReorg(ctx *fiber.Ctx) error {
	req := struct {
		Depth int  `json:"depth"`
		Drop  bool `json:"drop"`
	}{Depth: 1}
	if len(bytes.TrimSpace(ctx.Body())) > 0 {
		if err := decodeStrict(ctx, &req); err != nil {
			return badBody(ctx, err)
		}
	}
	tip, err := c.Reorg(req.Depth, req.Drop)
	if err != nil {
		return simError(ctx, err)
	}
	return ctx.JSON(fiber.Map{"height": tip.Height, "hash": tip.BlockHash})
}

func (c *Chain) simDrop(ctx *fiber.Ctx) error {
	var req struct {
		TxID string `json:"tx_id"`
	}
	if err := decodeStrict(ctx, &req); err != nil {
		return badBody(ctx, err)
	}
	if err := c.Drop(req.TxID); err != nil {
		return simError(ctx, err)
	}
	return ctx.JSON(fiber.Map{"tx_id": req.TxID, "dropped": true})
}
