package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/chain"
)

// Paging of the blockcenter list-utxos route, as the legacy contract has it.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

const (
	blockcenterPrefix = "/api/v1/btm"
	bodyLimit         = 16 << 20
	shutdownTimeout   = 5 * time.Second
)

// Handler returns a fiber app serving the chain:
//
//   - blockcenter v1 under /api/v1/btm: POST /q/list-utxos?start&limit (limit
//     defaults to 100 and is capped at 1000; the result echoes the limit used),
//     POST /merchant/get-transaction, GET /q/chain-status;
//   - explorer: GET /transaction/:id, GET /block/:height, GET /status
//     (shapes documented on chain.Explorer);
//   - bytomd: POST /get-block-count, /get-block, /list-unconfirmed-transactions,
//     /get-unconfirmed-transaction, /list-unspent-outputs;
//   - control: POST /sim/utxos, /sim/spend, /sim/mine ({"blocks"}, default 1),
//     /sim/reorg ({"depth","drop"}, default depth 1), /sim/drop ({"tx_id"} ->
//     {"tx_id","dropped":true}); mine and reorg answer {"height","hash"}.
//
// Control errors are {"error":{"code","message"}} with 400 (bad_request), 404
// (unknown_output, not_found) or 409 (already_spent, not_pending).
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
	app.Post("/get-block", c.btmGetBlock)
	app.Post("/list-unconfirmed-transactions", c.btmListUnconfirmed)
	app.Post("/get-unconfirmed-transaction", c.btmGetUnconfirmed)
	app.Post("/list-unspent-outputs", c.btmListUnspent)

	app.Post("/sim/utxos", c.simUTXOs)
	app.Post("/sim/spend", c.simSpend)
	app.Post("/sim/mine", c.simMine)
	app.Post("/sim/reorg", c.simReorg)
	app.Post("/sim/drop", c.simDrop)
	return app
}

// Serve serves Handler on ln until ctx ends, then shuts down gracefully.
func (c *Chain) Serve(ctx context.Context, ln net.Listener) error {
	app := c.Handler()
	errc := make(chan error, 1)
	go func() { errc <- app.Listener(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := app.ShutdownWithContext(sctx)
	_ = ln.Close() // the server may not have started accepting when ctx ended
	if serr := <-errc; serr != nil && !errors.Is(serr, net.ErrClosed) {
		return fmt.Errorf("sim: serve: %w", serr)
	}
	if err != nil {
		return fmt.Errorf("sim: shutdown: %w", err)
	}
	return nil
}

// ListenAndServe listens on addr and serves until ctx ends.
func (c *Chain) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sim: listen: %w", err)
	}
	slog.Info("simulated chain listening", "addr", ln.Addr().String())
	return c.Serve(ctx, ln)
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

// ---- blockcenter ----

type bcIO struct {
	UTXOID  string `json:"utxo_id"`
	Script  string `json:"script"`
	Address string `json:"address"`
	Asset   string `json:"asset"`
	Amount  int64  `json:"amount"`
	Type    string `json:"type"`
}

type bcBalance struct {
	Asset  string `json:"asset"`
	Amount string `json:"amount"`
}

type bcTx struct {
	Hash                string      `json:"hash"`
	StatusFail          bool        `json:"status_fail"`
	Size                int         `json:"size"`
	SubmissionTimestamp int64       `json:"submission_timestamp"`
	BlockHeight         uint64      `json:"block_height"`
	BlockTimestamp      int64       `json:"block_timestamp"`
	Memo                string      `json:"memo"`
	Inputs              []bcIO      `json:"inputs"`
	Outputs             []bcIO      `json:"outputs"`
	Fee                 int64       `json:"fee"`
	Balances            []bcBalance `json:"balances"`
}

func bcOK(ctx *fiber.Ctx, result any) error {
	return ctx.JSON(fiber.Map{"code": 200, "msg": "", "result": result})
}

func bcFail(ctx *fiber.Ctx, msg string) error {
	return ctx.JSON(fiber.Map{"code": 300, "msg": msg})
}

func (c *Chain) bcListUTXOs(ctx *fiber.Ctx) error {
	var req struct {
		Filter struct {
			Asset       string `json:"asset"`
			Script      string `json:"script"`
			Unconfirmed bool   `json:"unconfirmed"`
		} `json:"filter"`
		Sort struct {
			By    string `json:"by"`
			Order string `json:"order"`
		} `json:"sort"`
	}
	if err := decodeLenient(ctx, &req); err != nil {
		return bcFail(ctx, "invalid request body")
	}
	start, limit := 0, DefaultListLimit
	if s := ctx.Query("start"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return bcFail(ctx, "invalid start")
		}
		start = n
	}
	if s := ctx.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return bcFail(ctx, "invalid limit")
		}
		limit = min(n, MaxListLimit)
	}
	f := req.Filter
	if !IsHash(f.Asset) || !IsProgram(f.Script) {
		return bcFail(ctx, "filter needs a 64 hex asset and a hex script")
	}
	desc := false
	switch req.Sort.Order {
	case "", "asc":
	case "desc":
		desc = true
	default:
		return bcFail(ctx, "invalid sort order")
	}
	if req.Sort.By != "" && req.Sort.By != "amount" {
		return bcFail(ctx, "invalid sort field")
	}

	c.mu.Lock()
	list := c.listLocked(f.Asset, f.Script, f.Unconfirmed)
	c.mu.Unlock()
	if req.Sort.By == "amount" {
		sortByAmount(list, desc)
	}
	type item struct {
		Hash   string `json:"hash"`
		Asset  string `json:"asset"`
		Amount int64  `json:"amount"`
	}
	data := []item{}
	for i := start; i < len(list) && i < start+limit; i++ {
		data = append(data, item{Hash: list[i].hash, Asset: list[i].asset, Amount: list[i].amount})
	}
	links := fiber.Map{}
	if len(data) == limit {
		links["next"] = fmt.Sprintf("%s/q/list-utxos?limit=%d&start=%d", blockcenterPrefix, limit, start+limit)
	}
	return bcOK(ctx, fiber.Map{"data": data, "start": start, "limit": limit, "_links": links})
}

// sortByAmount orders a listing by amount, keeping creation order on ties.
func sortByAmount(list []utxoView, desc bool) {
	cmp := func(a, b utxoView) int {
		switch {
		case a.amount < b.amount:
			return -1
		case a.amount > b.amount:
			return 1
		}
		return 0
	}
	slices.SortStableFunc(list, func(a, b utxoView) int {
		if desc {
			return cmp(b, a)
		}
		return cmp(a, b)
	})
}

func (c *Chain) bcGetTransaction(ctx *fiber.Ctx) error {
	var req struct {
		TxID string `json:"tx_id"`
	}
	if err := decodeLenient(ctx, &req); err != nil || !IsHash(req.TxID) {
		return bcFail(ctx, "invalid tx_id")
	}
	c.mu.Lock()
	t := c.txs[req.TxID]
	var v txView
	if t != nil {
		v = snapshotTx(t)
	}
	c.mu.Unlock()
	if t == nil {
		return bcFail(ctx, "transaction not found")
	}
	out := bcTx{Hash: v.id, StatusFail: v.fail, Size: v.size(), SubmissionTimestamp: unix(v.submitted),
		BlockHeight: v.height, BlockTimestamp: unix(v.blockTime),
		Inputs: []bcIO{}, Outputs: []bcIO{}, Balances: []bcBalance{}}
	delta := map[string]int64{}
	var assets []string
	for _, u := range v.inputs {
		out.Inputs = append(out.Inputs, bcIO{UTXOID: u.hash, Script: u.program, Address: u.address,
			Asset: u.asset, Amount: u.amount, Type: "spend"})
		if _, ok := delta[u.asset]; !ok {
			assets = append(assets, u.asset)
		}
		delta[u.asset] -= u.amount
	}
	for _, u := range v.outputs {
		out.Outputs = append(out.Outputs, bcIO{UTXOID: u.hash, Script: u.program, Address: u.address,
			Asset: u.asset, Amount: u.amount, Type: "control"})
		if _, ok := delta[u.asset]; !ok {
			assets = append(assets, u.asset)
		}
		delta[u.asset] += u.amount
	}
	for _, a := range assets {
		out.Balances = append(out.Balances, bcBalance{Asset: a, Amount: strconv.FormatInt(delta[a], 10)})
	}
	return bcOK(ctx, fiber.Map{"data": out})
}

func (c *Chain) bcChainStatus(ctx *fiber.Ctx) error {
	tip := c.Tip()
	return bcOK(ctx, fiber.Map{"data": fiber.Map{"block_height": tip.Height, "block_hash": tip.BlockHash}})
}

// ---- explorer ----

type exIO struct {
	Direction      string `json:"direction"`
	Type           string `json:"type"`
	UTXOID         string `json:"utxo_id"`
	Address        string `json:"address"`
	AssetID        string `json:"asset_id"`
	Amount         int64  `json:"amount"`
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
	x := exTx{ID: v.id, Height: v.height, BlockHash: v.blockHash, Timestamp: unix(v.blockTime),
		StatusFail: v.fail, Size: v.size(), Detail: []exIO{}}
	for _, u := range v.inputs {
		x.Detail = append(x.Detail, exIO{Direction: "input", Type: "spend", UTXOID: u.hash, Address: u.address,
			AssetID: u.asset, Amount: u.amount, ControlProgram: u.program})
	}
	for _, u := range v.outputs {
		x.Detail = append(x.Detail, exIO{Direction: "output", Type: "control", UTXOID: u.hash, Address: u.address,
			AssetID: u.asset, Amount: u.amount, ControlProgram: u.program})
	}
	return x
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

// ---- bytomd ----

type btmInput struct {
	Type           string `json:"type"`
	AssetID        string `json:"asset_id"`
	Amount         int64  `json:"amount"`
	ControlProgram string `json:"control_program"`
	Address        string `json:"address"`
	SpentOutputID  string `json:"spent_output_id"`
	InputID        string `json:"input_id"`
}

type btmOutput struct {
	Type           string `json:"type"`
	ID             string `json:"id"`
	Position       int    `json:"position"`
	AssetID        string `json:"asset_id"`
	Amount         int64  `json:"amount"`
	ControlProgram string `json:"control_program"`
	Address        string `json:"address"`
}

type btmTx struct {
	ID         string      `json:"id"`
	Version    int         `json:"version"`
	Size       int         `json:"size"`
	TimeRange  int         `json:"time_range"`
	StatusFail bool        `json:"status_fail"`
	MuxID      string      `json:"mux_id"`
	Inputs     []btmInput  `json:"inputs"`
	Outputs    []btmOutput `json:"outputs"`
}

func toBtmTx(v txView) btmTx {
	x := btmTx{ID: v.id, Version: 1, Size: v.size(), StatusFail: v.fail, MuxID: hashOf("mux", v.id),
		Inputs: []btmInput{}, Outputs: []btmOutput{}}
	for _, u := range v.inputs {
		x.Inputs = append(x.Inputs, btmInput{Type: "spend", AssetID: u.asset, Amount: u.amount,
			ControlProgram: u.program, Address: u.address, SpentOutputID: u.hash, InputID: hashOf("input", v.id, u.hash)})
	}
	for _, u := range v.outputs {
		x.Outputs = append(x.Outputs, btmOutput{Type: "control", ID: u.hash, Position: u.pos, AssetID: u.asset,
			Amount: u.amount, ControlProgram: u.program, Address: u.address})
	}
	return x
}

func btmOK(ctx *fiber.Ctx, data any) error {
	return ctx.JSON(fiber.Map{"status": "success", "data": data})
}

// btmFail answers like bytomd does: HTTP 400 with a fail envelope. The codes
// are illustrative; clients should not depend on them.
func btmFail(ctx *fiber.Ctx, code, msg, detail string) error {
	return ctx.Status(http.StatusBadRequest).JSON(fiber.Map{"status": "fail", "code": code, "msg": msg, "error_detail": detail})
}

func (c *Chain) btmBlockCount(ctx *fiber.Ctx) error {
	return btmOK(ctx, fiber.Map{"block_count": c.Tip().Height})
}

func (c *Chain) btmGetBlock(ctx *fiber.Ctx) error {
	var req struct {
		BlockHeight uint64 `json:"block_height"`
		BlockHash   string `json:"block_hash"`
	}
	if err := decodeLenient(ctx, &req); err != nil {
		return btmFail(ctx, "BTM002", "Invalid request body", err.Error())
	}
	c.mu.Lock()
	v, ok := c.blockLocked(req.BlockHeight, req.BlockHash)
	c.mu.Unlock()
	if !ok {
		return btmFail(ctx, "BTM000", "Bytom API Error", "block not found")
	}
	txs := make([]btmTx, len(v.txs))
	size := 80
	for i, t := range v.txs {
		txs[i] = toBtmTx(t)
		size += t.size()
	}
	return btmOK(ctx, fiber.Map{"hash": v.hash, "size": size, "version": 1, "height": v.height,
		"previous_block_hash": v.prev, "timestamp": unix(v.time), "transactions": txs})
}

func (c *Chain) btmListUnconfirmed(ctx *fiber.Ctx) error {
	ids := c.Pending()
	return btmOK(ctx, fiber.Map{"total": len(ids), "tx_ids": ids})
}

func (c *Chain) btmGetUnconfirmed(ctx *fiber.Ctx) error {
	var req struct {
		TxID string `json:"tx_id"`
	}
	if err := decodeLenient(ctx, &req); err != nil {
		return btmFail(ctx, "BTM002", "Invalid request body", err.Error())
	}
	c.mu.Lock()
	t := c.txs[req.TxID]
	var v txView
	pending := t != nil && t.block == nil
	if pending {
		v = snapshotTx(t)
	}
	c.mu.Unlock()
	if !pending {
		return btmFail(ctx, "BTM000", "Bytom API Error", "transaction not found in the mempool")
	}
	return btmOK(ctx, toBtmTx(v))
}

// btmListUnspent lists every contract UTXO (all pools); smart_contract:false
// lists nothing, as the simulator has no account UTXOs.
func (c *Chain) btmListUnspent(ctx *fiber.Ctx) error {
	var req struct {
		SmartContract bool `json:"smart_contract"`
		Unconfirmed   bool `json:"unconfirmed"`
	}
	if err := decodeLenient(ctx, &req); err != nil {
		return btmFail(ctx, "BTM002", "Invalid request body", err.Error())
	}
	type item struct {
		ID          string `json:"id"`
		AssetID     string `json:"asset_id"`
		Amount      int64  `json:"amount"`
		Address     string `json:"address"`
		Program     string `json:"program"`
		SourceID    string `json:"source_id"`
		SourcePos   int    `json:"source_pos"`
		ValidHeight uint64 `json:"valid_height"`
		Change      bool   `json:"change"`
	}
	out := []item{}
	if req.SmartContract {
		c.mu.Lock()
		list := c.listLocked("", "", req.Unconfirmed)
		c.mu.Unlock()
		for _, u := range list {
			out = append(out, item{ID: u.hash, AssetID: u.asset, Amount: u.amount, Address: u.address,
				Program: u.program, SourceID: u.txID, SourcePos: u.pos})
		}
	}
	return btmOK(ctx, out)
}

// ---- control ----

// simError maps an error of the Go API to a control-route response.
func simError(ctx *fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, ErrInvalid):
		return jsonError(ctx, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, ErrUnknownOutput):
		return jsonError(ctx, http.StatusNotFound, "unknown_output", err.Error())
	case errors.Is(err, chain.ErrTxNotFound):
		return jsonError(ctx, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ErrSpent):
		return jsonError(ctx, http.StatusConflict, "already_spent", err.Error())
	case errors.Is(err, ErrNotPending):
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
		Asset   string  `json:"asset"`
		Program string  `json:"program"`
		Amounts []int64 `json:"amounts"`
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
