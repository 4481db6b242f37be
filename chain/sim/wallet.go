package sim

import (
	"cmp"
	"slices"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/chain"
)

// The node's wallet: its /list-unspent-outputs route is a wallet view, not a
// chain index. With smart_contract:false it lists the P2W outputs of the
// wallet's one account (MinerProgram), with smart_contract:true every non-P2W
// output on the chain; a P2W output of another program is in neither.

// unspentReq is the body of /list-unspent-outputs.
type unspentReq struct {
	AccountID     string `json:"account_id"`
	AccountAlias  string `json:"account_alias"`
	ID            string `json:"id"`
	Unconfirmed   bool   `json:"unconfirmed"`
	SmartContract bool   `json:"smart_contract"`
	From          uint   `json:"from"`
	Count         uint   `json:"count"`
}

// btmUnspent is one entry of the listing.
type btmUnspent struct {
	AccountAlias        string `json:"account_alias"`
	ID                  string `json:"id"`
	AssetID             string `json:"asset_id"`
	AssetAlias          string `json:"asset_alias"`
	Amount              uint64 `json:"amount"`
	AccountID           string `json:"account_id"`
	Address             string `json:"address"`
	ControlProgramIndex uint64 `json:"control_program_index"`
	Program             string `json:"program"`
	SourceID            string `json:"source_id"`
	SourcePos           int    `json:"source_pos"`
	ValidHeight         uint64 `json:"valid_height"`
	Change              bool   `json:"change"`
	DeriveRule          int    `json:"derive_rule"`
}

func (c *Chain) btmListUnspent(ctx *fiber.Ctx) error {
	var req unspentReq
	if err := decodeLenient(ctx, &req); err != nil {
		return btmBadRequest(ctx, err)
	}
	return btmOK(ctx, c.walletUnspent(req))
}

// walletUnspent lists like the node: the confirmed outputs (also those a
// mempool transaction spends), then with unconfirmed the outputs of mempool
// transactions, each group by descending id; then the page from, count.
func (c *Chain) walletUnspent(req unspentReq) []btmUnspent {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := walletEntries(c.unspent, req)
	if req.Unconfirmed {
		out = append(out, walletEntries(c.pending, req)...)
	}
	start, end := pageRange(len(out), req.From, req.Count)
	return out[start:end]
}

func walletEntries(set map[string]*utxo, req unspentReq) []btmUnspent {
	out := []btmUnspent{}
	for _, u := range set {
		if e, ok := walletEntry(u, req.SmartContract); ok && req.selects(e) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b btmUnspent) int { return cmp.Compare(b.ID, a.ID) })
	return out
}

// walletEntry is the entry of u in the listing asked for, if it has one.
func walletEntry(u *utxo, smartContract bool) (btmUnspent, bool) {
	e := btmUnspent{ID: u.hash, AssetID: u.asset, AssetAlias: assetAlias(u.asset), Amount: u.amount,
		Program: u.program, SourceID: muxID(u.txID), SourcePos: u.pos, ValidHeight: u.validHeight}
	switch {
	case smartContract && !isP2W(u.program):
		return e, true
	case !smartContract && u.program == MinerProgram:
		e.AccountAlias, e.AccountID, e.Address, e.ControlProgramIndex = minerAccountAlias, minerAccountID, u.address, 1
		return e, true
	}
	return btmUnspent{}, false
}

// selects reports whether e passes the request's id and account filters.
func (r unspentReq) selects(e btmUnspent) bool {
	return (r.ID == "" || r.ID == e.ID) &&
		(r.AccountID == "" || r.AccountID == e.AccountID) &&
		(r.AccountAlias == "" || r.AccountAlias == e.AccountAlias)
}

// assetAlias is the wallet's name of an asset: only BTM has one here.
func assetAlias(asset string) string {
	if asset == chain.BTMAsset {
		return "BTM"
	}
	return ""
}

// pageRange is bytomd's: from 0 and count 0 is everything.
func pageRange(total int, from, count uint) (start, end uint) {
	n := uint(total)
	if from == 0 && count == 0 {
		return 0, n
	}
	start, end = min(from, n), n
	if count < n-start {
		end = start + count
	}
	return start, end
}
