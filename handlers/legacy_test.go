package handlers

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/storage"
)

func TestHeadDapp(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	status, body := do(t, f.app, http.MethodHead, "/dapp", "")
	if status != http.StatusOK || len(body) != 0 {
		t.Fatalf("HEAD /dapp = %d %q, want 200 and no body", status, body)
	}
}

// TestLegacyEnvelopeBytes pins the exact bytes of every envelope shape. The
// original built "result" as a Go map, so its keys came out sorted ("_links"
// first) and encoding/json escaped "&" as \u0026; these are the bytes it sent.
func TestLegacyEnvelopeBytes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 100, 300, 200)
	byAmount := map[uint64]string{}
	for _, u := range f.utxos {
		byAmount[u.Amount] = u.Hash
	}
	body := fmt.Sprintf(`{"asset":%q,"program":%q,"sort":{"by":"amount","order":"desc"}}`, f.pool.Asset, f.pool.Program)
	a := f.pool.Asset

	t.Run("paginated with next", func(t *testing.T) {
		status, got := do(t, f.app, http.MethodPost, "/dapp/list-utxos?limit=2", body)
		want := `{"code":200,"msg":"","result":{"_links":{"next":"/dapp/list-utxos?limit=2\u0026start=2"},"data":[` +
			`{"hash":"` + byAmount[300] + `","asset":"` + a + `","amount":300},` +
			`{"hash":"` + byAmount[200] + `","asset":"` + a + `","amount":200}],"limit":2,"start":0}}`
		if status != 200 || string(got) != want {
			t.Fatalf("got %d\n%s\nwant\n%s", status, got, want)
		}
	})
	t.Run("paginated last page", func(t *testing.T) {
		_, got := do(t, f.app, http.MethodPost, "/dapp/list-utxos?limit=2&start=2", body)
		want := `{"code":200,"msg":"","result":{"_links":{},"data":[` +
			`{"hash":"` + byAmount[100] + `","asset":"` + a + `","amount":100}],"limit":2,"start":2}}`
		if string(got) != want {
			t.Fatalf("got\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("paginated defaults", func(t *testing.T) {
		other := fmt.Sprintf(`{"asset":%q,"program":"00"}`, strings.Repeat("0", 64))
		_, got := do(t, f.app, http.MethodPost, "/dapp/list-utxos", other)
		want := `{"code":200,"msg":"","result":{"_links":{},"data":[],"limit":100,"start":0}}`
		if string(got) != want {
			t.Fatalf("got\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("success null", func(t *testing.T) {
		status, got := do(t, f.app, http.MethodPost, "/dapp/update-utxo", fmt.Sprintf(`{"hash":%q}`, byAmount[100]))
		if want := `{"code":200,"msg":"","result":{"data":null}}`; status != 200 || string(got) != want {
			t.Fatalf("got %d %s, want %s", status, got, want)
		}
	})
	t.Run("success data", func(t *testing.T) {
		ctx := testCtx(t)
		created := time.Unix(1700000000, 0)
		row := storage.Balance{Address: "bm1qenvelope", Asset: a, Amount: -42, TxID: strings.Repeat("c", 64),
			State: storage.BalanceConfirmed, CreatedAt: created, UpdatedAt: created}
		if err := f.store.DB().WithContext(ctx).Create(&row).Error; err != nil {
			t.Fatal(err)
		}
		_, got := do(t, f.app, http.MethodPost, "/dapp/list-balances", fmt.Sprintf(`{"address":"bm1qenvelope","asset":%q}`, strings.ToUpper(a)))
		want := `{"code":200,"msg":"","result":{"data":[{"address":"bm1qenvelope","asset":"` + a + `","amount":-42,"create_at":1700000000}]}}`
		if string(got) != want {
			t.Fatalf("got\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("error", func(t *testing.T) {
		status, got := do(t, f.app, http.MethodPost, "/dapp/update-utxo", `{"hash":"nothex"}`)
		if want := `{"code":300,"msg":"hash must be 64 hex characters"}`; status != 200 || string(got) != want {
			t.Fatalf("got %d %s, want %s", status, got, want)
		}
	})
	t.Run("headers", func(t *testing.T) {
		req := newJSONRequest(t, "/dapp/update-utxo", `{}`)
		resp, err := f.app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("Content-Type = %q", ct)
		}
		if resp.Header.Get("X-Request-ID") == "" {
			t.Error("no X-Request-ID")
		}
	})
}

// TestUpdateUTXOConcurrent: of 50 concurrent update-utxo calls on one hash,
// exactly one wins; the UTXO then leaves list-utxos.
func TestUpdateUTXOConcurrent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, 20, 30)
	target := f.utxos[1].Hash
	const n = 50
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		codes = map[int]int{}
		msgs  = map[string]int{}
		start = make(chan struct{})
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := legacyCall(t, f.app, "/dapp/update-utxo", fmt.Sprintf(`{"hash":%q}`, target))
			mu.Lock()
			codes[r.Code]++
			msgs[r.Msg]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if codes[200] != 1 || codes[300] != n-1 || msgs[msgLocked] != n-1 {
		t.Fatalf("codes %v msgs %v; want one 200 and %d x 300 %q", codes, msgs, n-1, msgLocked)
	}
	got := hashesOf(f.listUTXOs("", "desc"))
	if contains(got, target) || len(got) != 2 {
		t.Fatalf("list-utxos after lock = %v, still lists %s or lost others", got, target)
	}
	if d, held := f.heldFor(f.pool.ID, target); !held || d < 590*time.Second {
		t.Fatalf("held for %v (held=%v), want the 600 s default", d, held)
	}
}

func TestUpdateUTXOOutcomes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, 20)
	ctx := testCtx(t)

	// Upper-case input is the same UTXO.
	if r := f.updateUTXO(strings.ToUpper(f.utxos[0].Hash)); r.Code != 200 {
		t.Fatalf("upper-case hash: %+v", r)
	}
	if r := f.updateUTXO(f.utxos[0].Hash); r.Code != 300 || r.Msg != msgLocked {
		t.Fatalf("second lock: %+v", r)
	}
	if r := f.updateUTXO(randHex(t, 32)); r.Code != 300 || r.Msg != msgNotFound {
		t.Fatalf("unknown hash: %+v", r)
	}
	// A UTXO the chain no longer has cannot be locked.
	if _, err := f.store.ReconcilePool(ctx, f.pool, f.utxos[:1]); err != nil {
		t.Fatal(err)
	}
	if err := f.locks.ApplyChain(ctx, f.pool.ID, nil, []string{f.utxos[1].Hash}); err != nil {
		t.Fatal(err)
	}
	if r := f.updateUTXO(f.utxos[1].Hash); r.Code != 300 || r.Msg != msgNotFound {
		t.Fatalf("spent hash: %+v", r)
	}
}

func TestListUTXOsOrderAndPaging(t *testing.T) {
	t.Parallel()
	amounts := []uint64{5, 1, 4, 2, 3}
	f := newFixture(t, amounts...)

	desc := f.listUTXOs("", "desc")
	asc := f.listUTXOs("", "asc")
	dflt := f.listUTXOs("", "")
	for i := range 5 {
		if desc[i].Amount != uint64(5-i) || asc[i].Amount != uint64(i+1) || dflt[i].Amount != desc[i].Amount {
			t.Fatalf("desc %v asc %v default %v", desc, asc, dflt)
		}
		if desc[i].Asset != f.pool.Asset {
			t.Fatalf("asset %q", desc[i].Asset)
		}
	}

	// Walk the pages following _links.next.
	next := "/dapp/list-utxos?limit=2"
	var walked []uint64
	body := fmt.Sprintf(`{"asset":%q,"program":%q,"sort":{"by":"amount","order":"asc"}}`, f.pool.Asset, strings.ToUpper(f.pool.Program))
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		r := f.legacy(next, body)
		var page struct {
			Data  []legacyUTXO `json:"data"`
			Links struct {
				Next string `json:"next"`
			} `json:"_links"`
		}
		if err := json.Unmarshal(r.Result, &page); err != nil {
			t.Fatal(err)
		}
		for _, u := range page.Data {
			walked = append(walked, u.Amount)
		}
		next = page.Links.Next
	}
	if fmt.Sprint(walked) != "[1 2 3 4 5]" {
		t.Fatalf("walked %v", walked)
	}

	// A limit above 1000 is clamped, as in the original.
	r := f.legacy("/dapp/list-utxos?limit=5000", body)
	var page struct {
		Limit int `json:"limit"`
	}
	if err := json.Unmarshal(r.Result, &page); err != nil || page.Limit != 1000 {
		t.Fatalf("limit=5000 -> %s", r.Result)
	}
	for _, q := range []string{"?start=-1", "?start=x", "?limit=0", "?limit=-5", "?limit=ten"} {
		if r := f.legacy("/dapp/list-utxos"+q, body); r.Code != 300 || r.Result != nil {
			t.Errorf("%s: %+v, want code 300", q, r)
		}
	}
}

func TestLegacyBadBodies(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	for _, path := range []string{"/dapp/list-utxos", "/dapp/list-balances", "/dapp/update-utxo", "/dapp/update-balance"} {
		for _, body := range []string{`{`, `not json`, `{"hash":1,"asset":1,"address":1}`, `[1,2]`} {
			r := f.legacy(path, body)
			if r.Code != 300 || r.Msg != "invalid request body" {
				t.Errorf("%s %s: %+v", path, body, r)
			}
		}
	}
	// Bodies above the limit are refused in the legacy envelope.
	// app.Test reports the server's read error, so this goes through a real listener.
	// Only the request head is sent: the server refuses the body from its
	// Content-Length alone, and a client still writing the body could see the
	// connection reset before it reads the answer.
	base := serve(t, f.app)
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "POST /dapp/update-utxo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", bodyLimit+100); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `{"code":300,"msg":"request body too large"}` {
		t.Fatalf("big body: %d %s", resp.StatusCode, b)
	}
	if got := f.listUTXOs("", "desc"); len(got) != 1 {
		t.Fatalf("bad bodies changed state: %v", got)
	}
}

func TestListBalances(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := testCtx(t)
	asset := f.pool.Asset
	addRow := func(addr string, amount int64, state string, fail bool, at int64) {
		row := storage.Balance{Address: addr, Asset: asset, Amount: amount, TxID: randHex(t, 32), State: state,
			StatusFail: fail, CreatedAt: time.Unix(at, 0), UpdatedAt: time.Unix(at, 0)}
		if err := f.store.DB().WithContext(ctx).Create(&row).Error; err != nil {
			t.Fatal(err)
		}
	}
	addRow("bm1qa", 10, storage.BalanceConfirmed, false, 1000)
	addRow("bm1qa", -3, storage.BalanceConfirmed, false, 2000)
	addRow("bm1qa", 99, storage.BalanceConfirmed, true, 3000) // failed on chain
	addRow("bm1qa", 77, storage.BalancePending, false, 4000)  // not yet verified
	addRow("bm1qb", 5, storage.BalanceConfirmed, false, 5000) // another address

	r := f.legacy("/dapp/list-balances", fmt.Sprintf(`{"address":"bm1qa","asset":%q}`, asset))
	var page struct {
		Data []legacyBalance `json:"data"`
	}
	if err := json.Unmarshal(r.Result, &page); err != nil || r.Code != 200 {
		t.Fatalf("%+v %v", r, err)
	}
	got := map[int64]int64{}
	for _, b := range page.Data {
		if b.Address != "bm1qa" || b.Asset != asset {
			t.Fatalf("foreign row %+v", b)
		}
		got[b.Amount] = b.CreateAt
	}
	if len(got) != 2 || got[10] != 1000 || got[-3] != 2000 {
		t.Fatalf("balances %+v, want the two confirmed successful rows", page.Data)
	}
}

// frontendPick is the Bytom DApp frontend's choice in a list sorted largest
// first: an exact amount, else the smallest worth at least want, else the largest.
func frontendPick(list []legacyUTXO, want uint64) string {
	best := -1
	for i, u := range list {
		if u.Amount == want {
			return u.Hash
		}
		if u.Amount >= want && (best < 0 || u.Amount < list[best].Amount) {
			best = i
		}
	}
	if best < 0 {
		best = 0
	}
	return list[best].Hash
}

// Issue 14: frontends that take the UTXO fitting their amount best from the
// same list all pick the same one. Consecutive callers of the first page get
// disjoint samples, each still sorted and offering the largest UTXO, so their
// picks differ and each wins its update-utxo.
func TestListUTXOsSpreadsConcurrentFrontends(t *testing.T) {
	t.Parallel()
	amounts := make([]uint64, 64)
	for i := range amounts {
		amounts[i] = uint64(100 + i) // 100..163
	}
	f := newResFixture(t, amounts...)
	f.app = f.newApp(Config{LegacyListSample: 8})
	const callers = 8 // one turn of samples: 64 free / 8
	lists := make([][]legacyUTXO, callers)
	for i := range lists {
		lists[i] = f.listUTXOs("", "desc")
	}
	picks := map[string]bool{}
	seen := map[string]int{}
	for _, l := range lists {
		if len(l) < 8 || len(l) > 9 || l[0].Amount != 163 {
			t.Fatalf("sample %v: want about 8 UTXOs, the largest first", l)
		}
		for j := 1; j < len(l); j++ {
			if l[j].Amount >= l[j-1].Amount {
				t.Fatalf("sample not sorted largest first: %v", l)
			}
		}
		for _, u := range l {
			seen[u.Hash]++
		}
		picks[frontendPick(l, 120)] = true
	}
	if len(seen) != len(amounts) {
		t.Fatalf("%d samples showed %d of %d UTXOs", callers, len(seen), len(amounts))
	}
	if len(picks) != callers {
		t.Fatalf("%d frontends wanting 120 picked %d different UTXOs", callers, len(picks))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for h := range picks {
		wg.Go(func() {
			if r := legacyCall(t, f.app, "/dapp/update-utxo", fmt.Sprintf(`{"hash":%q}`, h)); r.Code == 200 {
				mu.Lock()
				won++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if won != callers {
		t.Fatalf("%d of %d picks won", won, callers)
	}

	// update-utxo of a listed UTXO the chain has since spent: not found,
	// although this API remembers the pool it listed it in.
	spent := lists[0][len(lists[0])-1].Hash
	left := slices.DeleteFunc(slices.Clone(f.utxos), func(u chain.UTXO) bool { return u.Hash == spent })
	if _, err := f.store.ReconcilePool(testCtx(t), f.pool, left); err != nil {
		t.Fatal(err)
	}
	if err := f.locks.ApplyChain(testCtx(t), f.pool.ID, nil, []string{spent}); err != nil {
		t.Fatal(err)
	}
	if r := f.updateUTXO(spent); r.Code != 300 || r.Msg != msgNotFound {
		t.Fatalf("spent listed hash: %+v", r)
	}

	// A caller that pages gets the plain ranking.
	for _, q := range []string{"?start=1&limit=3", "?limit=3", "?start=0"} {
		r := f.legacy("/dapp/list-utxos"+q, fmt.Sprintf(`{"asset":%q,"program":%q}`, f.pool.Asset, f.pool.Program))
		var page struct {
			Data []legacyUTXO `json:"data"`
		}
		if err := json.Unmarshal(r.Result, &page); err != nil || len(page.Data) < 3 || page.Data[1].Amount != page.Data[0].Amount-1 {
			t.Fatalf("%s: %s, %v; want the plain ranking", q, r.Result, err)
		}
	}
}
