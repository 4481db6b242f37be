package sim

import (
	"fmt"
	"math/big"
	"slices"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/chain"
)

// Paging of the blockcenter list-utxos route, as the legacy contract has it.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
)

const blockcenterPrefix = "/api/v1/btm"

type bcIO struct {
	UTXOID  string `json:"utxo_id"`
	Script  string `json:"script"`
	Address string `json:"address"`
	Asset   string `json:"asset"`
	Amount  uint64 `json:"amount"`
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
	Fee                 uint64      `json:"fee"`
	Balances            []bcBalance `json:"balances"`
}

func bcOK(ctx *fiber.Ctx, result any) error {
	return ctx.JSON(fiber.Map{"code": 200, "msg": "", "result": result})
}

func bcFail(ctx *fiber.Ctx, msg string) error {
	return ctx.JSON(fiber.Map{"code": 300, "msg": msg})
}

type bcListRequest struct {
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

// bcPage reads the start and limit query parameters.
func bcPage(ctx *fiber.Ctx) (start, limit int, msg string) {
	start, limit = 0, defaultListLimit
	if s := ctx.Query("start"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, 0, "invalid start"
		}
		start = n
	}
	if s := ctx.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return 0, 0, "invalid limit"
		}
		limit = min(n, maxListLimit)
	}
	return start, limit, ""
}

// check reports what is wrong with a listing request, or "".
func (r *bcListRequest) check() string {
	switch {
	case !isHash(r.Filter.Asset) || !isProgram(r.Filter.Script):
		return "filter needs a 64 hex asset and a hex script"
	case r.Sort.Order != "" && r.Sort.Order != "asc" && r.Sort.Order != "desc":
		return "invalid sort order"
	case r.Sort.By != "" && r.Sort.By != "amount":
		return "invalid sort field"
	}
	return ""
}

func (c *Chain) bcListUTXOs(ctx *fiber.Ctx) error {
	var req bcListRequest
	if err := decodeLenient(ctx, &req); err != nil {
		return bcFail(ctx, "invalid request body")
	}
	start, limit, msg := bcPage(ctx)
	if msg == "" {
		msg = req.check()
	}
	if msg != "" {
		return bcFail(ctx, msg)
	}
	f := req.Filter
	c.mu.Lock()
	list := c.listLocked(f.Asset, f.Script, f.Unconfirmed)
	c.mu.Unlock()
	if req.Sort.By == "amount" {
		list = sortedByAmount(list, req.Sort.Order == "desc")
	}
	type item struct {
		Hash   string `json:"hash"`
		Asset  string `json:"asset"`
		Amount uint64 `json:"amount"`
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

// sortedByAmount returns a copy of a listing ordered by amount, keeping
// creation order on ties (the listing itself is shared with the cache).
func sortedByAmount(list []utxoView, desc bool) []utxoView {
	out := slices.Clone(list)
	slices.SortStableFunc(out, func(a, b utxoView) int {
		if desc {
			a, b = b, a
		}
		switch {
		case a.amount < b.amount:
			return -1
		case a.amount > b.amount:
			return 1
		}
		return 0
	})
	return out
}

func (c *Chain) bcGetTransaction(ctx *fiber.Ctx) error {
	var req struct {
		TxID string `json:"tx_id"`
	}
	if err := decodeLenient(ctx, &req); err != nil || !isHash(req.TxID) {
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
	return bcOK(ctx, fiber.Map{"data": toBcTx(v)})
}

func toBcTx(v txView) bcTx {
	ct := v.toChain()
	return bcTx{Hash: v.id, StatusFail: v.fail, Size: v.size(), SubmissionTimestamp: unix(v.submitted),
		BlockHeight: v.height, BlockTimestamp: unix(v.blockTime),
		Inputs: toBcIOs(ct.Inputs), Outputs: toBcIOs(ct.Outputs), Balances: bcBalances(ct)}
}

func toBcIOs(ios []chain.TxIO) []bcIO {
	out := make([]bcIO, len(ios))
	for i, io := range ios {
		out[i] = bcIO{UTXOID: io.UTXO, Script: io.Program, Address: io.Address, Asset: io.Asset, Amount: io.Amount, Type: io.Type}
	}
	return out
}

// bcBalances is the net change per asset: outputs minus the outputs spent,
// exact whatever the sums.
func bcBalances(t *chain.Tx) []bcBalance {
	delta := map[string]*big.Int{}
	var assets []string
	add := func(asset string, amount uint64, sign int) {
		d := delta[asset]
		if d == nil {
			d = new(big.Int)
			delta[asset] = d
			assets = append(assets, asset)
		}
		a := new(big.Int).SetUint64(amount)
		if sign < 0 {
			a.Neg(a)
		}
		d.Add(d, a)
	}
	for _, in := range t.Inputs {
		if in.Type == "spend" {
			add(in.Asset, in.Amount, -1)
		}
	}
	for _, o := range t.Outputs {
		add(o.Asset, o.Amount, 1)
	}
	out := make([]bcBalance, len(assets))
	for i, a := range assets {
		out[i] = bcBalance{Asset: a, Amount: delta[a].String()}
	}
	return out
}

func (c *Chain) bcChainStatus(ctx *fiber.Ctx) error {
	tip := c.Tip()
	return bcOK(ctx, fiber.Map{"data": fiber.Map{"block_height": tip.Height, "block_hash": tip.BlockHash}})
}
