package chain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const (
	testAsset   = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
	testProgram = "0014aabbccdd"
	testTx      = "1111111111111111111111111111111111111111111111111111111111111111"
)

func server(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestBlockcenterBasePath(t *testing.T) {
	var paths []string
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.Method+" "+r.URL.Path)
		writeJSON(w, 200, map[string]any{"code": 200, "msg": "", "result": map[string]any{
			"data": map[string]any{"block_height": 7, "block_hash": testTx}}})
	})
	for _, base := range []string{srv.URL, srv.URL + "/", srv.URL + "/custom/prefix/"} {
		st, err := NewBlockcenter(base).ChainStatus(ctxT(t))
		if err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		if st.Height != 7 || st.BlockHash != testTx {
			t.Fatalf("status %+v", st)
		}
	}
	want := []string{"GET /api/v1/btm/q/chain-status", "GET /api/v1/btm/q/chain-status", "GET /custom/prefix/q/chain-status"}
	if strings.Join(paths, ",") != strings.Join(want, ",") {
		t.Fatalf("paths %v, want %v", paths, want)
	}
}

func TestBlockcenterHTTPErrorIsTypedAndShort(t *testing.T) {
	huge := strings.Repeat("x", 100_000)
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte(huge))
	})
	_, err := NewBlockcenter(srv.URL).ListUTXOs(ctxT(t), Filter{Asset: testAsset, Program: testProgram})
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("want *APIError, got %v", err)
	}
	if apiErr.HTTPStatus != http.StatusBadGateway || apiErr.Source != "blockcenter" || apiErr.Path != "/q/list-utxos" {
		t.Fatalf("api error %+v", apiErr)
	}
	if len(err.Error()) > 400 {
		t.Fatalf("error message is %d bytes long", len(err.Error()))
	}
}

func TestBlockcenterCode300(t *testing.T) {
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"code": 300, "msg": "no such thing"})
	})
	bc := NewBlockcenter(srv.URL)

	_, err := bc.ListUTXOs(ctxT(t), Filter{Asset: testAsset, Program: testProgram})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Code != "300" || apiErr.Msg != "no such thing" {
		t.Fatalf("list: want code 300 APIError, got %v", err)
	}
	if errors.Is(err, ErrTxNotFound) {
		t.Fatalf("list: a listing error is not ErrTxNotFound")
	}

	_, err = bc.GetTransaction(ctxT(t), testTx)
	if !errors.Is(err, ErrTxNotFound) {
		t.Fatalf("get-transaction: want ErrTxNotFound, got %v", err)
	}
	if !errors.As(err, &apiErr) || apiErr.Code != "300" {
		t.Fatalf("get-transaction: the APIError must stay reachable, got %v", err)
	}
}

func TestInvalidJSONIsBadResponse(t *testing.T) {
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		_, _ = w.Write([]byte(`{"code":200,"result":{"data":[{"hash":`))
	})
	ctx := ctxT(t)
	f := Filter{Asset: testAsset, Program: testProgram}
	calls := map[string]func() error{
		"blockcenter list":   func() error { _, err := NewBlockcenter(srv.URL).ListUTXOs(ctx, f); return err },
		"blockcenter tx":     func() error { _, err := NewBlockcenter(srv.URL).GetTransaction(ctx, testTx); return err },
		"blockcenter status": func() error { _, err := NewBlockcenter(srv.URL).ChainStatus(ctx); return err },
		"bytomd mempool":     func() error { _, err := NewBytomd(srv.URL).Mempool(ctx); return err },
		"bytomd mempool tx":  func() error { _, err := NewBytomd(srv.URL).MempoolTx(ctx, testTx); return err },
		"bytomd status":      func() error { _, err := NewBytomd(srv.URL).ChainStatus(ctx); return err },
		"bytomd block":       func() error { _, err := NewBytomd(srv.URL).GetBlock(ctx, 1); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrBadResponse) {
			t.Errorf("%s: want ErrBadResponse, got %v", name, err)
		}
	}
}

func TestSlowServerHitsTimeout(t *testing.T) {
	done := make(chan struct{})
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-done:
		}
	})
	t.Cleanup(func() { close(done) }) // runs before srv.Close
	ctx := ctxT(t)
	opt := WithTimeout(100 * time.Millisecond)
	f := Filter{Asset: testAsset, Program: testProgram}
	calls := map[string]func() error{
		"blockcenter": func() error { _, err := NewBlockcenter(srv.URL, opt).ListUTXOs(ctx, f); return err },
		"bytomd":      func() error { _, err := NewBytomd(srv.URL, opt).ChainStatus(ctx); return err },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: want a deadline error, got %v", name, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %v", name, d)
		}
	}

	// The caller's context still bounds the call when it is shorter.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := NewBlockcenter(srv.URL).ChainStatus(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caller deadline: got %v", err)
	}
}

func TestDefaultHTTPClientHasTimeout(t *testing.T) {
	if c := newConfig(nil); c.client.Timeout != defaultTimeout || c.timeout != defaultTimeout {
		t.Fatalf("default client timeout %v, call timeout %v", c.client.Timeout, c.timeout)
	}
	if c := newConfig([]Option{WithTimeout(3 * time.Second)}); c.client.Timeout != 3*time.Second {
		t.Fatalf("client timeout %v, want 3s", c.client.Timeout)
	}
	mine := &http.Client{}
	if c := newConfig([]Option{WithHTTPClient(mine)}); c.client != mine {
		t.Fatal("WithHTTPClient ignored")
	}
}

// pagingServer serves n UTXOs, capping the limit at maxLimit and ignoring start
// when ignoreStart is set.
func pagingServer(t *testing.T, n, maxLimit int, ignoreStart bool, requests *atomic.Int32) *httptest.Server {
	return server(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		start, _ := strconv.Atoi(r.URL.Query().Get("start"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		if ignoreStart {
			start = 0
		}
		limit = min(limit, maxLimit)
		data := []map[string]any{}
		for i := start; i < n && i < start+limit; i++ {
			data = append(data, map[string]any{"hash": fmt.Sprintf("%064x", i), "asset": testAsset, "amount": strconv.Itoa(i + 1)})
		}
		writeJSON(w, 200, map[string]any{"code": 200, "msg": "", "result": map[string]any{
			"data": data, "start": start, "limit": limit, "_links": map[string]any{}}})
	})
}

func TestBlockcenterPaging(t *testing.T) {
	f := Filter{Asset: testAsset, Program: testProgram, Unconfirmed: true}
	cases := []struct {
		name     string
		n, max   int
		pageSize int
		requests int32
	}{
		{"exact pages", 3000, 1000, 1000, 4},
		{"partial last page", 2500, 1000, 1000, 3},
		{"server caps the limit", 250, 100, 1000, 3},
		{"empty", 0, 1000, 1000, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var reqs atomic.Int32
			srv := pagingServer(t, tc.n, tc.max, false, &reqs)
			got, err := NewBlockcenter(srv.URL, WithPageSize(tc.pageSize)).ListUTXOs(ctxT(t), f)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.n {
				t.Fatalf("got %d utxos, want %d", len(got), tc.n)
			}
			seen := map[string]bool{}
			for i, u := range got {
				if seen[u.Hash] {
					t.Fatalf("duplicate %s", u.Hash)
				}
				seen[u.Hash] = true
				if u.Amount != uint64(i+1) || u.Program != testProgram || u.Asset != testAsset || u.Confirmed {
					t.Fatalf("utxo %d: %+v", i, u)
				}
			}
			if reqs.Load() != tc.requests {
				t.Fatalf("%d requests, want %d", reqs.Load(), tc.requests)
			}
		})
	}
}

func TestBlockcenterPagingLoopStops(t *testing.T) {
	var reqs atomic.Int32
	srv := pagingServer(t, 5000, 1000, true, &reqs)
	_, err := NewBlockcenter(srv.URL).ListUTXOs(ctxT(t), Filter{Asset: testAsset, Program: testProgram})
	if !errors.Is(err, errPaging) {
		t.Fatalf("want errPaging, got %v", err)
	}
	if reqs.Load() != 2 {
		t.Fatalf("%d requests, want 2", reqs.Load())
	}
}

func TestBlockcenterPagingMaxPages(t *testing.T) {
	old := maxPages
	maxPages = 5
	t.Cleanup(func() { maxPages = old })
	var reqs atomic.Int32
	srv := pagingServer(t, 1_000_000, 10, false, &reqs)
	_, err := NewBlockcenter(srv.URL, WithPageSize(10)).ListUTXOs(ctxT(t), Filter{Asset: testAsset, Program: testProgram})
	if !errors.Is(err, errPaging) {
		t.Fatalf("want errPaging, got %v", err)
	}
	if reqs.Load() != 5 {
		t.Fatalf("%d requests, want 5", reqs.Load())
	}
}

func TestBlockcenterTransactionMapping(t *testing.T) {
	var body map[string]string
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/btm/merchant/get-transaction" || r.Method != http.MethodPost {
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		tx := map[string]any{"hash": testTx, "status_fail": true, "block_height": "12", "block_timestamp": 1700000000,
			"inputs":  []map[string]any{{"script": "00", "address": "bm1qa", "asset": testAsset, "amount": 5, "type": "spend"}},
			"outputs": []map[string]any{{"utxo_id": testAsset, "script": "01", "address": "bm1qb", "asset": testAsset, "amount": "4", "type": "control"}}}
		writeJSON(w, 200, map[string]any{"code": 200, "msg": "", "result": map[string]any{"data": tx}})
	})
	tx, err := NewBlockcenter(srv.URL).GetTransaction(ctxT(t), testTx)
	if err != nil {
		t.Fatal(err)
	}
	if body["tx_id"] != testTx {
		t.Fatalf("request body %v", body)
	}
	if tx.ID != testTx || !tx.StatusFail || tx.Height != 12 || !tx.Confirmed() || tx.BlockTime.Unix() != 1700000000 {
		t.Fatalf("tx %+v", tx)
	}
	if len(tx.Inputs) != 1 || tx.Inputs[0].Amount != 5 || tx.Inputs[0].Program != "00" || tx.Inputs[0].Address != "bm1qa" {
		t.Fatalf("inputs %+v", tx.Inputs)
	}
	if len(tx.Outputs) != 1 || tx.Outputs[0].UTXO != testAsset || tx.Outputs[0].Amount != 4 || tx.Outputs[0].Type != "control" {
		t.Fatalf("outputs %+v", tx.Outputs)
	}
}

func TestBytomdFailEnvelope(t *testing.T) {
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/get-block-count":
			writeJSON(w, 200, map[string]any{"status": "success", "data": map[string]any{"block_count": 5}})
		default:
			writeJSON(w, 400, map[string]any{"status": "fail", "code": "BTM107", "msg": "Invalid", "error_detail": "detail"})
		}
	})
	bt := NewBytomd(srv.URL)
	ctx := ctxT(t)
	var apiErr *APIError
	_, err := bt.Mempool(ctx)
	if !errors.As(err, &apiErr) || apiErr.Code != "BTM107" || apiErr.Msg != "Invalid: detail" || apiErr.HTTPStatus != 400 {
		t.Fatalf("mempool: %v", err)
	}
	// Only a handler error (HTTP 200) says the transaction is not in the mempool.
	if _, err := bt.MempoolTx(ctx, testTx); errors.Is(err, ErrTxNotFound) || !errors.As(err, &apiErr) {
		t.Fatalf("mempool tx: %v", err)
	}
	// Above the block count a failed get-block is ErrBlockNotFound; below it is not.
	if _, err := bt.GetBlock(ctx, 6); !errors.Is(err, ErrBlockNotFound) || !errors.As(err, &apiErr) {
		t.Fatalf("block 6: %v", err)
	}
	if _, err := bt.GetBlock(ctx, 5); errors.Is(err, ErrBlockNotFound) || !errors.As(err, &apiErr) {
		t.Fatalf("block 5: %v", err)
	}
}

func TestNew(t *testing.T) {
	if s, err := New("blockcenter", "http://127.0.0.1:1"); err != nil {
		t.Fatal(err)
	} else if _, ok := s.(*Blockcenter); !ok {
		t.Fatalf("blockcenter: got %T", s)
	}
	if s, err := New("bytomd", "http://127.0.0.1:1"); err != nil {
		t.Fatal(err)
	} else if _, ok := s.(*Bytomd); !ok {
		t.Fatalf("bytomd: got %T", s)
	}
	if _, err := New("ethereum", "http://127.0.0.1:1"); !errors.Is(err, errUnknownKind) {
		t.Fatalf("unknown kind: %v", err)
	}
}

func TestFlexInt(t *testing.T) {
	for in, want := range map[string]int64{`12`: 12, `"12"`: 12, `null`: 0, `""`: 0, `-3`: -3} {
		var n flexInt
		if err := json.Unmarshal([]byte(in), &n); err != nil || int64(n) != want {
			t.Errorf("%s: got %d, %v", in, n, err)
		}
	}
	for _, in := range []string{`1.5`, `"x"`, `true`, `"99999999999999999999"`} {
		var n flexInt
		if err := json.Unmarshal([]byte(in), &n); err == nil {
			t.Errorf("%s: accepted", in)
		}
	}
}

func TestFlexUint(t *testing.T) {
	for in, want := range map[string]uint64{
		`12`: 12, `"12"`: 12, `null`: 0, `""`: 0,
		`9007199254740993`:     9007199254740993, // 2^53+1: a float64 would round it
		`140700041250000000`:   140700041250000000,
		`18446744073709551615`: 18446744073709551615,
	} {
		var n flexUint
		if err := json.Unmarshal([]byte(in), &n); err != nil || uint64(n) != want {
			t.Errorf("%s: got %d, %v", in, n, err)
		}
	}
	for _, in := range []string{`-1`, `1.5`, `1e3`, `"x"`, `true`, `18446744073709551616`} {
		var n flexUint
		if err := json.Unmarshal([]byte(in), &n); err == nil {
			t.Errorf("%s: accepted", in)
		}
	}
}
