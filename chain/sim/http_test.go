package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
)

// serve serves c on a loopback port until the test ends and returns its URL.
func serve(t *testing.T, c *sim.Chain) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := c.Handler()
	done := make(chan error, 1)
	go func() { done <- app.Listener(ln) }()
	t.Cleanup(func() {
		if err := app.ShutdownWithTimeout(5 * time.Second); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		_ = ln.Close() // ends a Listener that began after the shutdown ran
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, net.ErrClosed) {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("server did not shut down")
		}
	})
	return "http://" + ln.Addr().String()
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// countingClient counts the requests it sends.
type countingClient struct{ n atomic.Int32 }

func (cc *countingClient) RoundTrip(r *http.Request) (*http.Response, error) {
	cc.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// postRaw sends a JSON body (a string is sent as it is) and returns the HTTP
// status and the answer.
func postRaw(t *testing.T, url string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequestWithContext(testCtx(t), http.MethodPost, url, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw
}

// post is postRaw decoding the JSON answer into out.
func post(t *testing.T, url string, body, out any) int {
	t.Helper()
	status, raw := postRaw(t, url, body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s: %v: %s", url, err, raw)
		}
	}
	return status
}

func TestBlockcenterClientAgainstSim(t *testing.T) {
	c := sim.New()
	amounts := make([]uint64, 2500)
	for i := range amounts {
		amounts[i] = uint64(i + 1)
	}
	funding := mustAdd(t, c, amounts...)
	base := serve(t, c)
	ctx := testCtx(t)
	f := chain.Filter{Asset: asset, Program: program, Unconfirmed: true}

	for _, pageSize := range []int{1000, 5000} { // the sim caps a page at 1000
		cc := &countingClient{}
		bc := chain.NewBlockcenter(base, chain.WithPageSize(pageSize), chain.WithHTTPClient(&http.Client{Transport: cc, Timeout: 5 * time.Second}))
		got, err := bc.ListUTXOs(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2500 {
			t.Fatalf("page size %d: %d utxos", pageSize, len(got))
		}
		seen := map[string]bool{}
		var sum uint64
		for _, u := range got {
			if seen[u.Hash] {
				t.Fatalf("duplicate %s", u.Hash)
			}
			seen[u.Hash] = true
			sum += u.Amount
			if u.Asset != asset || u.Program != program {
				t.Fatalf("utxo %+v", u)
			}
		}
		if sum != 2500*2501/2 {
			t.Fatalf("amounts sum to %d", sum)
		}
		if cc.n.Load() != 3 {
			t.Fatalf("page size %d: %d requests, want 3", pageSize, cc.n.Load())
		}
	}

	bc := chain.NewBlockcenter(base)
	spent, spentOut := mustSpend(t, c, funding[:2], false, out(asset, program, 3))
	failing, _ := mustSpend(t, c, funding[2:3], true, out(asset, program, 3))

	got, err := bc.ListUTXOs(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	sameSet(t, "unconfirmed view", hashes(got), hashes(c.UTXOs(asset, program, true)))
	if seen := hashes(got); slices.Contains(seen, funding[0]) || !slices.Contains(seen, spentOut[0]) {
		t.Fatal("spend not reflected in the unconfirmed view")
	}
	got, err = bc.ListUTXOs(ctx, chain.Filter{Asset: asset, Program: program})
	if err != nil {
		t.Fatal(err)
	}
	sameSet(t, "confirmed view", hashes(got), funding)
	if !got[0].Confirmed {
		t.Fatal("confirmed listing not marked confirmed")
	}

	// Transactions: pending, mined, failed, unknown.
	tx, err := bc.GetTransaction(ctx, spent)
	if err != nil || tx.ID != spent || tx.Confirmed() || len(tx.Inputs) != 2 || tx.Inputs[0].UTXO != funding[0] ||
		tx.Inputs[0].Amount != 1 || tx.Outputs[0].UTXO != spentOut[0] || tx.Outputs[0].Program != program ||
		tx.Outputs[0].Address != sim.Address(program) {
		t.Fatalf("pending tx %+v, %v", tx, err)
	}
	tip := mustMine(t, c, 1)
	tx, err = bc.GetTransaction(ctx, spent)
	if err != nil || tx.Height != tip.Height || tx.StatusFail || tx.BlockTime.IsZero() {
		t.Fatalf("mined tx %+v, %v", tx, err)
	}
	tx, err = bc.GetTransaction(ctx, failing)
	if err != nil || !tx.StatusFail || tx.Height != tip.Height {
		t.Fatalf("failed tx %+v, %v", tx, err)
	}
	_, err = bc.GetTransaction(ctx, strings.Repeat("9", 64))
	var apiErr *chain.APIError
	if !errors.Is(err, chain.ErrTxNotFound) || !errors.As(err, &apiErr) || apiErr.Code != "300" {
		t.Fatalf("unknown tx: %v", err)
	}

	st, err := bc.ChainStatus(ctx)
	if err != nil || st != c.Tip() {
		t.Fatalf("status %+v, %v; tip %+v", st, err, c.Tip())
	}

	// A bad filter is a code-300 envelope.
	if _, err := bc.ListUTXOs(ctx, chain.Filter{Asset: "x", Program: program}); !errors.As(err, &apiErr) || apiErr.Code != "300" {
		t.Fatalf("bad filter: %v", err)
	}
}

func TestBlockcenterRawListing(t *testing.T) {
	c := sim.New()
	mustAdd(t, c, 5, 1, 9, 3)
	base := serve(t, c)
	var res struct {
		Code   int `json:"code"`
		Result struct {
			Data []struct {
				Hash   string `json:"hash"`
				Asset  string `json:"asset"`
				Amount uint64 `json:"amount"`
			} `json:"data"`
			Start int `json:"start"`
			Limit int `json:"limit"`
			Links struct {
				Next string `json:"next"`
			} `json:"_links"`
		} `json:"result"`
	}
	body := map[string]any{"filter": map[string]any{"asset": asset, "script": program, "unconfirmed": true},
		"sort": map[string]any{"by": "amount", "order": "desc"}}
	if st := post(t, base+"/api/v1/btm/q/list-utxos?start=1&limit=2", body, &res); st != 200 || res.Code != 200 {
		t.Fatalf("status %d code %d", st, res.Code)
	}
	if len(res.Result.Data) != 2 || res.Result.Data[0].Amount != 5 || res.Result.Data[1].Amount != 3 ||
		res.Result.Start != 1 || res.Result.Limit != 2 || res.Result.Links.Next != "/api/v1/btm/q/list-utxos?limit=2&start=3" {
		t.Fatalf("result %+v", res.Result)
	}
	var fail struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	}
	body["sort"] = map[string]any{"by": "amount", "order": "desc; drop table"}
	post(t, base+"/api/v1/btm/q/list-utxos", body, &fail)
	if fail.Code != 300 || fail.Msg == "" {
		t.Fatalf("bad order accepted: %+v", fail)
	}
}

// The explorer routes answer the shapes server.go documents (bufferd has no
// client of them: they are checked here at the JSON level).
func TestExplorerRoutes(t *testing.T) {
	c := sim.New()
	funding := mustAdd(t, c, 10, 20)
	mined, _ := mustSpend(t, c, funding[:1], false, out(asset, program, 10))
	failed, _ := mustSpend(t, c, funding[1:], true, out(asset, other, 20))
	mustMine(t, c, 2)
	pending, _ := mustSpend(t, c, funding[1:], false, out(asset, program, 20))
	base := serve(t, c)

	type exTx struct {
		ID         string `json:"id"`
		Height     uint64 `json:"height"`
		BlockHash  string `json:"block_hash"`
		StatusFail bool   `json:"status_fail"`
		Detail     []struct {
			Direction string `json:"direction"`
			UTXOID    string `json:"utxo_id"`
			AssetID   string `json:"asset_id"`
			Amount    uint64 `json:"amount"`
		} `json:"detail"`
	}
	for _, id := range []string{mined, failed, pending} {
		status, b := get(t, base+"/transaction/"+id)
		var got exTx
		if err := json.Unmarshal(b, &got); status != http.StatusOK || err != nil {
			t.Fatalf("tx %s: %d %s (%v)", id, status, b, err)
		}
		want, _ := c.Tx(id)
		if got.ID != id || got.Height != want.Height || got.BlockHash != want.BlockHash ||
			got.StatusFail != want.StatusFail || len(got.Detail) != len(want.Inputs)+len(want.Outputs) {
			t.Fatalf("tx %s: got %+v, want %+v", id, got, want)
		}
	}
	if status, b := get(t, base+"/transaction/"+strings.Repeat("9", 64)); status != http.StatusNotFound {
		t.Fatalf("unknown tx: %d %s", status, b)
	}
	for h := uint64(0); h <= c.Tip().Height; h++ {
		status, b := get(t, base+"/block/"+strconv.FormatUint(h, 10))
		var got struct {
			Hash         string `json:"hash"`
			Height       uint64 `json:"height"`
			PreviousHash string `json:"previous_block_hash"`
			Transactions []exTx `json:"transactions"`
		}
		if err := json.Unmarshal(b, &got); status != http.StatusOK || err != nil {
			t.Fatalf("block %d: %d %s (%v)", h, status, b, err)
		}
		want, _ := c.Block(h)
		if got.Hash != want.Hash || got.Height != h || got.PreviousHash != want.PreviousHash ||
			len(got.Transactions) != len(want.Txs) {
			t.Fatalf("block %d: got %+v, want %+v", h, got, want)
		}
	}
	if status, b := get(t, base+"/block/"+strconv.FormatUint(c.Tip().Height+1, 10)); status != http.StatusNotFound {
		t.Fatalf("block above the tip: %d %s", status, b)
	}
	var st struct {
		Height uint64 `json:"height"`
		Hash   string `json:"hash"`
	}
	if status, b := get(t, base+"/status"); status != http.StatusOK || json.Unmarshal(b, &st) != nil ||
		st.Height != c.Tip().Height || st.Hash != c.Tip().BlockHash {
		t.Fatalf("status: %d %s, tip %+v", status, b, c.Tip())
	}
}

type errBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func TestControlRoutes(t *testing.T) {
	c := sim.New()
	base := serve(t, c)

	var u struct {
		Hashes []string `json:"hashes"`
	}
	if st := post(t, base+"/sim/utxos", `{"asset":"`+asset+`","program":"`+program+`","amounts":[5,18446744073709551615]}`, &u); st != 200 || len(u.Hashes) != 2 {
		t.Fatalf("utxos: %d %+v", st, u)
	}
	sameSet(t, "created", hashes(c.UTXOs(asset, program, true)), u.Hashes)
	if us := c.UTXOs(asset, program, false); us[1].Amount != math.MaxUint64 {
		t.Fatalf("amount %d", us[1].Amount)
	}

	var sp struct {
		TxID    string   `json:"tx_id"`
		Outputs []string `json:"outputs"`
	}
	spend := map[string]any{"hashes": u.Hashes[:1], "outputs": []map[string]any{{"asset": asset, "program": other, "amount": 5}}, "fail": false}
	if st := post(t, base+"/sim/spend", spend, &sp); st != 200 || !sim.IsHash(sp.TxID) || len(sp.Outputs) != 1 {
		t.Fatalf("spend: %d %+v", st, sp)
	}
	// The mempool takes a second spend of the same output, as bytomd's does.
	var sp2 struct {
		TxID string `json:"tx_id"`
	}
	if st := post(t, base+"/sim/spend", spend, &sp2); st != 200 || sp2.TxID == sp.TxID {
		t.Fatalf("double spend: %d %+v", st, sp2)
	}
	var e errBody
	unknown := map[string]any{"hashes": []string{strings.Repeat("7", 64)}, "outputs": spend["outputs"]}
	if st := post(t, base+"/sim/spend", unknown, &e); st != http.StatusNotFound || e.Error.Code != "unknown_output" {
		t.Fatalf("unknown input: %d %+v", st, e)
	}
	reward := mustBlock(t, c, 1).Txs[0].Outputs[0].UTXO
	immature := map[string]any{"hashes": []string{reward}, "outputs": []map[string]any{{"asset": btm, "program": program, "amount": 5}}}
	if st := post(t, base+"/sim/spend", immature, &e); st != http.StatusConflict || e.Error.Code != "immature" {
		t.Fatalf("immature coinbase: %d %+v", st, e)
	}
	toContract := map[string]any{"asset": btm, "program": contract, "amounts": []int{5}}
	if st := post(t, base+"/sim/utxos", toContract, &e); st != http.StatusBadRequest || e.Error.Code != "not_standard" {
		t.Fatalf("BTM to a contract: %d %+v", st, e)
	}

	var tip struct {
		Height uint64 `json:"height"`
		Hash   string `json:"hash"`
	}
	if st := post(t, base+"/sim/mine", map[string]int{"blocks": 2}, &tip); st != 200 || tip.Height != 3 || tip.Hash != c.Tip().BlockHash {
		t.Fatalf("mine: %d %+v", st, tip)
	}
	if tx, _ := c.Tx(sp.TxID); tx.Height != 2 {
		t.Fatalf("spend mined at %d", tx.Height)
	}
	gone(t, c, sp2.TxID)
	old := tip.Hash
	if st := post(t, base+"/sim/reorg", map[string]any{"depth": 2}, &tip); st != 200 || tip.Height != 4 || tip.Hash == old {
		t.Fatalf("reorg: %d %+v", st, tip)
	}
	if st := post(t, base+"/sim/mine", "", &tip); st != 200 || tip.Height != 5 {
		t.Fatalf("mine with no body: %d %+v", st, tip)
	}

	p, _ := mustSpend(t, c, u.Hashes[1:], false, out(asset, program, 6))
	if st := post(t, base+"/sim/drop", map[string]string{"tx_id": p}, nil); st != 200 || len(c.Pending()) != 0 {
		t.Fatalf("drop: %d, mempool %v", st, c.Pending())
	}
	if st := post(t, base+"/sim/drop", map[string]string{"tx_id": p}, &e); st != http.StatusNotFound {
		t.Fatalf("drop twice: %d %+v", st, e)
	}
	if st := post(t, base+"/sim/drop", map[string]string{"tx_id": sp.TxID}, &e); st != http.StatusConflict || e.Error.Code != "not_pending" {
		t.Fatalf("drop mined: %d %+v", st, e)
	}
}

func TestControlRoutesRejectBadInput(t *testing.T) {
	c := sim.New()
	hs := mustAdd(t, c, 5)
	base := serve(t, c)
	outs := []map[string]any{{"asset": asset, "program": program, "amount": 1}}
	bad := []struct {
		route string
		body  any
	}{
		{"/sim/utxos", `{"asset":`},
		{"/sim/utxos", `{"asset":"` + asset + `","program":"` + program + `","amounts":[1],"extra":1}`},
		{"/sim/utxos", map[string]any{"asset": asset[:63], "program": program, "amounts": []int{1}}},
		{"/sim/utxos", map[string]any{"asset": strings.ToUpper(asset), "program": program, "amounts": []int{1}}},
		{"/sim/utxos", map[string]any{"asset": asset, "program": "abc", "amounts": []int{1}}},
		{"/sim/utxos", map[string]any{"asset": asset, "program": "zz", "amounts": []int{1}}},
		{"/sim/utxos", map[string]any{"asset": asset, "program": program, "amounts": []int{1, 0}}},
		{"/sim/utxos", map[string]any{"asset": asset, "program": program, "amounts": []int{-1}}},
		{"/sim/utxos", map[string]any{"asset": asset, "program": program, "amounts": []int{}}},
		{"/sim/utxos", `{"asset":"` + asset + `","program":"` + program + `","amounts":[1.5]}`},
		{"/sim/utxos", `{"asset":"` + asset + `","program":"` + program + `","amounts":[18446744073709551616]}`},
		{"/sim/spend", map[string]any{"hashes": []string{"xyz"}, "outputs": outs}},
		{"/sim/spend", map[string]any{"hashes": []string{}, "outputs": outs}},
		{"/sim/spend", map[string]any{"hashes": hs, "outputs": []map[string]any{{"asset": asset, "program": program, "amount": 0}}}},
		{"/sim/spend", map[string]any{"hashes": []string{hs[0], hs[0]}, "outputs": outs}},
		{"/sim/mine", map[string]any{"blocks": 0}},
		{"/sim/mine", map[string]any{"blocks": sim.MaxBlocks + 1}},
		{"/sim/mine", `{"blocks":"2"}`},
		{"/sim/reorg", map[string]any{"depth": 0}},
		{"/sim/reorg", map[string]any{"depth": 2}}, // deeper than the chain above genesis
		{"/sim/drop", map[string]any{"tx_id": "nothex"}},
	}
	tip, utxos := c.Tip(), hashes(c.UTXOs(asset, program, true))
	for _, b := range bad {
		var e errBody
		st := post(t, base+b.route, b.body, &e)
		if st != http.StatusBadRequest || e.Error.Code != "bad_request" || e.Error.Message == "" {
			t.Errorf("%s %v: status %d, body %+v", b.route, b.body, st, e)
		}
	}
	if c.Tip() != tip || !slices.Equal(hashes(c.UTXOs(asset, program, true)), utxos) || len(c.Pending()) != 0 {
		t.Fatal("rejected input changed the chain")
	}
}
