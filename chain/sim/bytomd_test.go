package sim_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
)

func TestBytomdClientAgainstSim(t *testing.T) {
	c := sim.New()
	funding := mustAdd(t, c, 10, 20, 30)
	mustAddTo(t, c, asset2, contract, math.MaxUint64, 1<<53+1)
	old, _ := mustSpend(t, c, funding[:1], false, out(asset, program, 10))
	mustMine(t, c, 3)
	recent, _ := mustSpend(t, c, funding[1:2], true, out(asset, program, 20))
	mustMine(t, c, 1)
	pending, _ := mustSpend(t, c, funding[2:], false, out(asset, other, 30))
	loser, _ := mustSpend(t, c, funding[2:], false, out(asset, program, 30))
	base := serve(t, c)
	bt := chain.NewBytomd(base)
	ctx := testCtx(t)

	if st, err := bt.ChainStatus(ctx); err != nil || st != c.Tip() {
		t.Fatalf("status %+v, %v; tip %+v", st, err, c.Tip())
	}
	for h := uint64(0); h <= c.Tip().Height; h++ {
		got, err := bt.GetBlock(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if want := mustBlock(t, c, h); !reflect.DeepEqual(got, want) {
			t.Fatalf("block %d:\n got  %+v\n want %+v", h, got, want)
		}
	}
	if _, err := bt.GetBlock(ctx, c.Tip().Height+1); !errors.Is(err, chain.ErrBlockNotFound) {
		t.Fatalf("block above tip: %v", err)
	}

	if ids, err := bt.Mempool(ctx); err != nil || !slices.Equal(ids, []string{pending, loser}) {
		t.Fatalf("mempool %v, %v", ids, err)
	}
	coinbase := mustBlock(t, c, 2).Txs[0].ID
	for _, id := range []string{pending, loser, recent, old, coinbase} {
		got, err := bt.GetTransaction(ctx, id)
		if err != nil {
			t.Fatalf("tx %s: %v", id, err)
		}
		want, _ := c.Tx(id)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("tx %s:\n got  %+v\n want %+v", id, got, want)
		}
	}
	if tx, err := bt.MempoolTx(ctx, pending); err != nil || tx.ID != pending || tx.Confirmed() {
		t.Fatalf("mempool tx %+v, %v", tx, err)
	}
	if _, err := bt.MempoolTx(ctx, old); !errors.Is(err, chain.ErrTxNotFound) {
		t.Fatalf("mined tx in the mempool: %v", err)
	}
	// old is 5 blocks deep: a scan of 2 blocks misses it.
	if _, err := chain.NewBytomd(base, chain.WithScanDepth(2)).GetTransaction(ctx, old); !errors.Is(err, chain.ErrTxNotFound) {
		t.Fatalf("shallow scan: %v", err)
	}
	if _, err := bt.GetTransaction(ctx, strings.Repeat("9", 64)); !errors.Is(err, chain.ErrTxNotFound) {
		t.Fatalf("unknown tx: %v", err)
	}

	// The block takes the first spend; the loser vanishes without a status.
	mustMine(t, c, 1)
	for _, get := range []func() (*chain.Tx, error){
		func() (*chain.Tx, error) { return bt.MempoolTx(ctx, loser) },
		func() (*chain.Tx, error) { return bt.GetTransaction(ctx, loser) },
	} {
		if tx, err := get(); !errors.Is(err, chain.ErrTxNotFound) {
			t.Fatalf("double-spend loser: %+v, %v", tx, err)
		}
	}
	if tx, err := bt.GetTransaction(ctx, pending); err != nil || tx.Height != c.Tip().Height {
		t.Fatalf("double-spend winner: %+v, %v", tx, err)
	}
}

// btmAnswer is a bytomd envelope.
type btmAnswer struct {
	Status      string          `json:"status"`
	Data        json.RawMessage `json:"data"`
	Code        string          `json:"code"`
	Msg         string          `json:"msg"`
	ErrorDetail string          `json:"error_detail"`
	Detail      string          `json:"detail"`
	Temporary   *bool           `json:"temporary"`
}

// btmPost calls a bytomd route of the simulator.
func btmPost(t *testing.T, url string, body any) (int, btmAnswer) {
	t.Helper()
	var a btmAnswer
	st := post(t, url, body, &a)
	return st, a
}

// btmData calls a bytomd route that must succeed and decodes its data.
func btmData(t *testing.T, url string, body, out any) {
	t.Helper()
	st, a := btmPost(t, url, body)
	if st != http.StatusOK || a.Status != "success" {
		t.Fatalf("%s: %d %+v", url, st, a)
	}
	if err := json.Unmarshal(a.Data, out); err != nil {
		t.Fatalf("%s: %v: %s", url, err, a.Data)
	}
}

func TestBytomdErrorAnswers(t *testing.T) {
	c := sim.New()
	base := serve(t, c)
	handler := []struct {
		route  string
		body   any
		detail string
	}{
		{"/get-block", map[string]any{"block_height": 1}, "can't find block in given height"},
		{"/get-block", map[string]any{"block_hash": strings.Repeat("ab", 32)}, "can't find block in given hash"},
		{"/get-block-header", map[string]any{"block_height": 7}, "can't find block header in given height"},
		{"/get-unconfirmed-transaction", map[string]any{"tx_id": strings.Repeat("ab", 32)}, "transaction are not existed in the mempool"},
	}
	for _, h := range handler {
		st, a := btmPost(t, base+h.route, h.body)
		if st != http.StatusOK || a.Status != "fail" || a.Code != "BTM000" || a.Msg != "Bytom API Error" || a.ErrorDetail != h.detail || a.Temporary != nil {
			t.Errorf("%s %v: %d %+v", h.route, h.body, st, a)
		}
	}
	badBody := []struct {
		route string
		body  string
	}{
		{"/get-block", `{"block_height":"abc"}`},
		{"/get-block", `{"block_height":-1}`},
		{"/get-block", `{"block_hash":"xyz"}`},
		{"/get-block-header", `{"block_height":1.5}`},
		{"/get-unconfirmed-transaction", `{"tx_id":"zz"}`},
		{"/list-unspent-outputs", `{"from":-1}`},
		{"/list-unspent-outputs", `{"smart_contract":"yes"}`},
	}
	for _, b := range badBody {
		st, a := btmPost(t, base+b.route, b.body)
		if st != http.StatusBadRequest || a.Status != "fail" || a.Code != "BTM002" || a.Msg != "Invalid request body" ||
			!strings.HasSuffix(a.Detail, ": check request parameters for missing and/or incorrect values") || a.Temporary == nil || *a.Temporary {
			t.Errorf("%s %s: %d %+v", b.route, b.body, st, a)
		}
	}
	for _, route := range []string{"/no-such-route", "/get-transaction", "/submit-transaction", "/build-transaction", "/nope"} {
		st, a := btmPost(t, base+route, "{}")
		if st != http.StatusInternalServerError || a.Status != "fail" || a.Code != "BTM000" || a.Msg != "Bytom API Error" ||
			a.Detail != "not Found" || a.Temporary == nil || !*a.Temporary {
			t.Errorf("%s: %d %+v", route, st, a)
		}
	}
}

func TestBytomdChainRoutes(t *testing.T) {
	c := sim.New()
	mustMine(t, c, 2)
	base := serve(t, c)
	tip := c.Tip()

	var count struct {
		BlockCount uint64 `json:"block_count"`
	}
	btmData(t, base+"/get-block-count", "{}", &count)
	var hash struct {
		BlockHash string `json:"block_hash"`
	}
	btmData(t, base+"/get-block-hash", "", &hash)
	if count.BlockCount != tip.Height || hash.BlockHash != tip.BlockHash {
		t.Fatalf("count %+v, hash %+v; tip %+v", count, hash, tip)
	}

	type header struct {
		BlockHeader string `json:"block_header"`
		Reward      uint64 `json:"reward"`
	}
	var byHeight, byHash header
	btmData(t, base+"/get-block-header", map[string]any{"block_height": 1}, &byHeight)
	btmData(t, base+"/get-block-header", map[string]any{"block_hash": mustBlock(t, c, 1).Hash}, &byHash)
	if byHeight != byHash || byHeight.Reward != sim.CoinbaseReward || len(byHeight.BlockHeader) < 100 || !isLowerHex(byHeight.BlockHeader) {
		t.Fatalf("header %+v, by hash %+v", byHeight, byHash)
	}

	// By hash, in any case, like bytomd's hex decoding; a hash of another length asks by height.
	type blockID struct {
		Hash   string `json:"hash"`
		Height uint64 `json:"height"`
	}
	for _, body := range []map[string]any{
		{"block_hash": tip.BlockHash},
		{"block_hash": strings.ToUpper(tip.BlockHash), "block_height": 1},
		{"block_hash": "abcd", "block_height": tip.Height},
		{"block_height": tip.Height},
	} {
		var b blockID
		btmData(t, base+"/get-block", body, &b)
		if b.Hash != tip.BlockHash || b.Height != tip.Height {
			t.Fatalf("get-block %v: %+v", body, b)
		}
	}
}

func isLowerHex(s string) bool {
	return len(s)%2 == 0 && strings.Trim(s, "0123456789abcdef") == ""
}

// jsonTree decodes a JSON text keeping numbers as written.
func jsonTree(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

// at follows a path of object keys and array indexes in a JSON tree.
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not an object at %q", path, k)
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("%v: no element %d", path, k)
			}
			v = a[k]
		}
	}
	return v
}

func hasKey(v any, key string) bool {
	_, ok := v.(map[string]any)[key]
	return ok
}

func TestBytomdBlockJSON(t *testing.T) {
	c := sim.New()
	issued := mustAddTo(t, c, asset, contract, math.MaxUint64) // block 1
	fee := mustAddTo(t, c, btm, program, 1000)                 // block 2
	spend, _ := mustSpend(t, c, []string{issued[0], fee[0]}, true, out(btm, program, 900), out(asset, other, math.MaxUint64))
	mustMine(t, c, 1) // block 3
	base := serve(t, c)

	block := func(h int) any {
		_, raw := postRaw(t, base+"/get-block", map[string]any{"block_height": h})
		return jsonTree(t, raw)
	}
	b1 := block(1)
	if d := at(t, b1, "data", "difficulty"); d != "20" {
		t.Fatalf("difficulty %#v", d)
	}
	if bits := at(t, b1, "data", "bits"); bits != json.Number("2305843009214532812") {
		t.Fatalf("bits %#v", bits)
	}
	cb := at(t, b1, "data", "transactions", 0, "inputs", 0)
	if at(t, cb, "type") != "coinbase" || at(t, cb, "arbitrary") != "0031" || at(t, cb, "witness_arguments") != nil ||
		at(t, cb, "amount") != json.Number("0") || hasKey(cb, "spent_output_id") || hasKey(cb, "control_program") {
		t.Fatalf("coinbase input %v", cb)
	}
	issue := at(t, b1, "data", "transactions", 1, "inputs", 0)
	if at(t, issue, "type") != "issue" || at(t, issue, "amount") != json.Number("18446744073709551615") ||
		!hasKey(issue, "issuance_program") || hasKey(issue, "spent_output_id") || hasKey(issue, "control_program") || hasKey(issue, "address") {
		t.Fatalf("issue input %v", issue)
	}
	// A non-P2W program has no address key at all.
	issuedOut := at(t, b1, "data", "transactions", 1, "outputs", 0)
	if at(t, issuedOut, "amount") != json.Number("18446744073709551615") || hasKey(issuedOut, "address") {
		t.Fatalf("output to a contract %v", issuedOut)
	}

	tx := at(t, block(3), "data", "transactions", 1)
	if failed, _ := at(t, tx, "status_fail").(bool); at(t, tx, "id") != spend || !failed {
		t.Fatalf("failed tx %v", tx)
	}
	contractIn, feeIn := at(t, tx, "inputs", 0), at(t, tx, "inputs", 1)
	if at(t, contractIn, "control_program") != contract || hasKey(contractIn, "address") || at(t, contractIn, "witness_arguments") != nil ||
		at(t, contractIn, "spent_output_id") != issued[0] {
		t.Fatalf("contract input %v", contractIn)
	}
	if at(t, feeIn, "address") != sim.Address(program) || len(at(t, feeIn, "witness_arguments").([]any)) != 2 {
		t.Fatalf("P2W input %v", feeIn)
	}
	if a := at(t, tx, "outputs", 1, "amount"); a != json.Number("18446744073709551615") {
		t.Fatalf("amount %v", a)
	}
}

// unspent is an entry of /list-unspent-outputs.
type unspent struct {
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

func unspentIDs(us []unspent) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.ID
	}
	return out
}

// descending reports whether ids are in descending order, the node's.
func descending(ids []string) bool {
	return slices.IsSortedFunc(ids, func(a, b string) int { return strings.Compare(b, a) })
}

func TestWalletListing(t *testing.T) {
	c := sim.New()
	mustMine(t, c, 2)                                           // blocks 1, 2: rewards
	gold := mustAddTo(t, c, asset, contract, 7, math.MaxUint64) // block 3
	stranger := mustAddTo(t, c, btm, other, 5)                  // block 4: P2W, not the wallet's
	mustAddTo(t, c, asset, p2wsh, 6)                            // block 5: P2W, not the wallet's
	_, pouts := mustSpend(t, c, gold[:1], false, out(asset, contract, 6), out(asset, sim.MinerProgram, 1))
	base := serve(t, c)

	list := func(req map[string]any) []unspent {
		t.Helper()
		var us []unspent
		btmData(t, base+"/list-unspent-outputs", req, &us)
		return us
	}
	var rewards []string
	for h := uint64(1); h <= 5; h++ {
		rewards = append(rewards, mustBlock(t, c, h).Txs[0].Outputs[0].UTXO)
	}

	// smart_contract:false lists the wallet's P2W outputs, immature coinbases included.
	mine := list(map[string]any{"smart_contract": false})
	sameSet(t, "wallet outputs", unspentIDs(mine), rewards)
	if !descending(unspentIDs(mine)) {
		t.Fatalf("order %v", unspentIDs(mine))
	}
	for _, u := range mine {
		blk := mustBlock(t, c, u.ValidHeight-chain.CoinbaseMaturity)
		cb := blk.Txs[0]
		var raw struct {
			Transactions []struct {
				MuxID string `json:"mux_id"`
			} `json:"transactions"`
		}
		btmData(t, base+"/get-block", map[string]any{"block_height": blk.Height}, &raw)
		want := unspent{AccountAlias: sim.MinerAccountAlias, ID: cb.Outputs[0].UTXO, AssetID: btm, AssetAlias: "BTM",
			Amount: sim.CoinbaseReward, AccountID: sim.MinerAccountID, Address: sim.Address(sim.MinerProgram),
			ControlProgramIndex: 1, Program: sim.MinerProgram, SourceID: raw.Transactions[0].MuxID, ValidHeight: blk.Height + chain.CoinbaseMaturity}
		if u != want {
			t.Fatalf("entry\n got  %+v\n want %+v", u, want)
		}
	}
	// unconfirmed:true adds the mempool's outputs after the confirmed ones.
	withPending := list(map[string]any{"smart_contract": false, "unconfirmed": true, "account_alias": sim.MinerAccountAlias})
	if ids := unspentIDs(withPending); !slices.Equal(ids, append(unspentIDs(mine), pouts[1])) {
		t.Fatalf("with the mempool %v", ids)
	}
	if last := withPending[len(withPending)-1]; last.ValidHeight != 0 || last.AssetID != asset || last.Amount != 1 || last.AssetAlias != "" {
		t.Fatalf("pending entry %+v", last)
	}

	// smart_contract:true lists every non-P2W output, also one a mempool transaction spends.
	contracts := list(map[string]any{"smart_contract": true})
	sameSet(t, "contract outputs", unspentIDs(contracts), gold)
	for _, u := range contracts {
		if u.AccountAlias != "" || u.AccountID != "" || u.Address != "" || u.Program != contract || u.ValidHeight != 0 || u.ControlProgramIndex != 0 {
			t.Fatalf("contract entry %+v", u)
		}
	}
	contracts = list(map[string]any{"smart_contract": true, "unconfirmed": true})
	if ids := unspentIDs(contracts); len(ids) != 3 || ids[2] != pouts[0] || !slices.Contains(ids, gold[0]) {
		t.Fatalf("contract outputs with the mempool %v", ids)
	}
	for _, u := range append(mine, contracts...) {
		if u.ID == stranger[0] {
			t.Fatal("a P2W output the wallet does not own is listed")
		}
	}

	// id, account and paging filters.
	if got := list(map[string]any{"smart_contract": true, "id": gold[1]}); len(got) != 1 || got[0].Amount != math.MaxUint64 {
		t.Fatalf("by id %+v", got)
	}
	if got := list(map[string]any{"smart_contract": true, "account_alias": sim.MinerAccountAlias}); len(got) != 0 {
		t.Fatalf("contract outputs of an account %+v", got)
	}
	if got := list(map[string]any{"smart_contract": false, "account_alias": "alice"}); len(got) != 0 {
		t.Fatalf("another account %+v", got)
	}
	if got := list(map[string]any{"account_id": sim.MinerAccountID}); len(got) != len(mine) {
		t.Fatalf("by account id %+v", got)
	}
	all := unspentIDs(mine)
	for _, p := range []struct {
		from, count int
		want        []string
	}{
		{0, 0, all}, {0, 2, all[:2]}, {1, 3, all[1:4]}, {3, 100, all[3:]}, {2, 0, nil}, {100, 1, nil},
	} {
		got := unspentIDs(list(map[string]any{"from": p.from, "count": p.count}))
		if len(got) != len(p.want) || (len(got) > 0 && !slices.Equal(got, p.want)) {
			t.Fatalf("from %d count %d: %v, want %v", p.from, p.count, got, p.want)
		}
	}

	// Once mined, the spent contract output is gone and the new one confirmed.
	mustMine(t, c, 1)
	sameSet(t, "contract outputs after mining", unspentIDs(list(map[string]any{"smart_contract": true})), []string{gold[1], pouts[0]})
}

func TestAmountsSurviveEveryRoute(t *testing.T) {
	const maxAmount = "18446744073709551615"
	c := sim.New()
	hs := mustAddTo(t, c, asset, contract, math.MaxUint64, 1<<53+1)
	pending, _ := mustSpend(t, c, hs[1:], false, out(asset, contract, math.MaxUint64))
	base := serve(t, c)
	ctx := testCtx(t)

	calls := map[string]func() (int, []byte){
		"get-block": func() (int, []byte) { return postRaw(t, base+"/get-block", map[string]any{"block_height": 1}) },
		"get-unconfirmed": func() (int, []byte) {
			return postRaw(t, base+"/get-unconfirmed-transaction", map[string]any{"tx_id": pending})
		},
		"list-unspent": func() (int, []byte) {
			return postRaw(t, base+"/list-unspent-outputs", map[string]any{"smart_contract": true})
		},
		"blockcenter list": func() (int, []byte) { return postRaw(t, base+"/api/v1/btm/q/list-utxos", bcFilter(contract)) },
		"blockcenter tx": func() (int, []byte) {
			return postRaw(t, base+"/api/v1/btm/merchant/get-transaction", map[string]any{"tx_id": pending})
		},
		"explorer block": func() (int, []byte) { return get(t, base+"/block/1") },
		"explorer tx":    func() (int, []byte) { return get(t, base+"/transaction/"+pending) },
	}
	for name, call := range calls {
		st, raw := call()
		if st != http.StatusOK || !bytes.Contains(raw, []byte(maxAmount)) || bytes.Contains(raw, []byte("e+19")) {
			t.Errorf("%s: %d %s", name, st, raw)
		}
	}

	us, err := chain.NewBlockcenter(base).ListUTXOs(ctx, chain.Filter{Asset: asset, Program: contract, Unconfirmed: true})
	if err != nil || len(us) != 2 || us[0].Amount != math.MaxUint64 || us[1].Amount != math.MaxUint64 {
		t.Fatalf("blockcenter listing %+v, %v", us, err)
	}
	blk, err := chain.NewBytomd(base).GetBlock(ctx, 1)
	if err != nil || blk.Txs[1].Outputs[0].Amount != math.MaxUint64 || blk.Txs[1].Outputs[1].Amount != 1<<53+1 {
		t.Fatalf("bytomd block %+v, %v", blk, err)
	}
}

func bcFilter(program string) map[string]any {
	return map[string]any{"filter": map[string]any{"asset": asset, "script": program, "unconfirmed": true}}
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(testCtx(t), http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, buf.Bytes()
}
