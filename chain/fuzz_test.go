package chain

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fuzzServer answers every request with the body set last; the fuzz targets
// feed the clients' response decoders through real HTTP.
func fuzzServer(f *testing.F) (string, func([]byte)) {
	var body atomic.Pointer[[]byte]
	empty := []byte{}
	body.Store(&empty)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*body.Load())
	}))
	f.Cleanup(srv.Close)
	return srv.URL, func(b []byte) { body.Store(&b) }
}

func fuzzCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var (
	fuzzHash  = strings.Repeat("ab", 32)
	fuzzAsset = strings.Repeat("ff", 32)
)

func FuzzBlockcenterListUTXOs(f *testing.F) {
	f.Add([]byte(`{"code":200,"msg":"","result":{"data":[{"hash":"` + fuzzHash + `","asset":"` + fuzzAsset + `","amount":100}],"start":0,"limit":10}}`))
	f.Add([]byte(`{"code":200,"result":{"data":[{"hash":"a","amount":"12"},{"hash":"a","amount":1}],"limit":2}}`))
	f.Add([]byte(`{"code":300,"msg":"bad"}`))
	f.Add([]byte(`{"code":200,"result":{"data":null}}`))
	u, set := fuzzServer(f)
	c := NewBlockcenter(u, WithPageSize(2))
	f.Fuzz(func(t *testing.T, body []byte) {
		set(body)
		utxos, err := c.ListUTXOs(fuzzCtx(t), Filter{Asset: fuzzAsset, Program: "0014aa"})
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, u := range utxos {
			if u.Hash == "" || seen[u.Hash] {
				t.Fatalf("listed an empty or repeated hash: %+v", utxos)
			}
			seen[u.Hash] = true
		}
	})
}

func FuzzBlockcenterGetTransaction(f *testing.F) {
	f.Add([]byte(`{"code":200,"result":{"data":{"hash":"` + fuzzHash + `","status_fail":false,"block_height":7,"block_timestamp":1700000000,
		"inputs":[{"script":"0014aa","address":"bm1q","asset":"` + fuzzAsset + `","amount":5,"type":"spend"}],
		"outputs":[{"utxo_id":"` + fuzzHash + `","script":"0014bb","address":"bm1r","asset":"` + fuzzAsset + `","amount":"4","type":"control"}]}}}`))
	f.Add([]byte(`{"code":300,"msg":"tx not found"}`))
	f.Add([]byte(`{"code":200,"result":{"data":{"hash":"other"}}}`))
	u, set := fuzzServer(f)
	c := NewBlockcenter(u)
	f.Fuzz(func(t *testing.T, body []byte) {
		set(body)
		tx, err := c.GetTransaction(fuzzCtx(t), fuzzHash)
		if err == nil && tx == nil {
			t.Fatal("no error and no transaction")
		}
	})
}

func FuzzBlockcenterChainStatus(f *testing.F) {
	f.Add([]byte(`{"code":200,"result":{"data":{"block_height":12,"block_hash":"` + fuzzHash + `"}}}`))
	f.Add([]byte(`{"code":200,"result":{"data":{"block_height":"x"}}}`))
	u, set := fuzzServer(f)
	c := NewBlockcenter(u)
	f.Fuzz(func(t *testing.T, body []byte) {
		set(body)
		_, _ = c.ChainStatus(fuzzCtx(t))
	})
}

func FuzzBytomdGetBlock(f *testing.F) {
	f.Add([]byte(`{"status":"success","data":{"hash":"` + fuzzHash + `","height":3,"previous_block_hash":"` + fuzzHash + `","timestamp":1700000000,
		"transactions":[{"id":"` + fuzzHash + `","status_fail":false,"inputs":[{"type":"spend","asset_id":"` + fuzzAsset + `","amount":5,
		"control_program":"0014aa","spent_output_id":"` + fuzzHash + `"}],"outputs":[{"type":"control","id":"` + fuzzHash + `","asset_id":"` + fuzzAsset + `",
		"amount":4,"control_program":"0014bb","address":"bm1q"}]}]}}`))
	f.Add([]byte(`{"status":"fail","code":"BTM000","msg":"not found"}`))
	f.Add([]byte(`{"status":"success","data":{"block_count":2}}`))
	u, set := fuzzServer(f)
	c := NewBytomd(u)
	f.Fuzz(func(t *testing.T, body []byte) {
		set(body)
		blk, err := c.GetBlock(fuzzCtx(t), 3)
		if err != nil {
			return
		}
		if blk.Height != 3 || blk.Hash == "" {
			t.Fatalf("asked block 3, got %+v", blk)
		}
		for _, tx := range blk.Txs {
			if tx.ID == "" || tx.Height != 3 || tx.BlockHash != blk.Hash {
				t.Fatalf("transaction not placed in its block: %+v", tx)
			}
		}
	})
}

func FuzzBytomdMempoolTx(f *testing.F) {
	f.Add([]byte(`{"status":"success","data":{"id":"` + fuzzHash + `","version":1,"size":332,"time_range":0,
		"inputs":[{"type":"spend","asset_id":"` + fuzzAsset + `","asset_definition":{},"amount":41250000000,"control_program":"0014aa",
		"address":"sm1q","spent_output_id":"` + fuzzHash + `","input_id":"` + fuzzHash + `","witness_arguments":null,"sign_data":"` + fuzzHash + `"}],
		"outputs":[{"type":"control","id":"` + fuzzHash + `","position":0,"asset_id":"` + fuzzAsset + `","asset_definition":{},
		"amount":18446744073709551615,"control_program":"5151"}],"status_fail":false,"mux_id":"` + fuzzHash + `"}}`))
	f.Add([]byte(`{"status":"fail","code":"BTM000","msg":"Bytom API Error","error_detail":"transaction are not existed in the mempool"}`))
	f.Add([]byte(`{"status":"success","data":{"id":"` + fuzzHash + `","inputs":[{"type":"spend","amount":-1}]}}`))
	u, set := fuzzServer(f)
	c := NewBytomd(u)
	f.Fuzz(func(t *testing.T, body []byte) {
		set(body)
		tx, err := c.MempoolTx(fuzzCtx(t), fuzzHash)
		if err != nil {
			return
		}
		if tx.ID != fuzzHash || tx.Confirmed() {
			t.Fatalf("asked pending transaction %s, got %+v", fuzzHash, tx)
		}
		for _, in := range tx.Inputs {
			if in.Type == "spend" && in.UTXO == "" {
				t.Fatalf("a spend input without the output it spends: %+v", tx)
			}
		}
	})
}

func FuzzBytomdMempool(f *testing.F) {
	f.Add([]byte(`{"status":"success","data":{"total":1,"tx_ids":["` + fuzzHash + `"]}}`))
	f.Add([]byte(`{"status":"success","data":{"tx_ids":["zz"]}}`))
	u, set := fuzzServer(f)
	c := NewBytomd(u)
	f.Fuzz(func(t *testing.T, body []byte) {
		set(body)
		ids, err := c.Mempool(fuzzCtx(t))
		if err != nil {
			return
		}
		for _, id := range ids {
			if _, herr := hex.DecodeString(id); len(id) != 64 || herr != nil {
				t.Fatalf("listed a malformed transaction id %q", id)
			}
		}
	})
}

// FuzzDecodeSuccess checks the fast decoder of node answers against
// encoding/json, for every shape the bytomd client decodes: whatever it
// accepts, encoding/json accepts too, with the same status and the same
// value. Seeds: every recorded answer of a real node.
func FuzzDecodeSuccess(f *testing.F) {
	files, err := os.ReadDir(recordedDir)
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		if filepath.Ext(file.Name()) != ".json" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(recordedDir, file.Name()))
		if err != nil {
			f.Fatal(err)
		}
		var rec recording
		if json.Unmarshal(b, &rec) == nil && len(rec.Response) > 0 {
			f.Add([]byte(rec.Response))
		}
	}
	f.Add([]byte(`{"status":"success","data":{"hash":"` + fuzzHash + `","height":"7","transactions":[{"id":"a","inputs":[{"type":"spend","amount":18446744073709551615}]}]}}`))
	f.Add([]byte(`{"status":"success","data":{"block_count":"12","total":1,"tx_ids":["` + fuzzHash + `"]}}`))
	f.Add([]byte(`{"status":"success","data":null}`))
	f.Add([]byte(`{"status":"success","status":"fail","data":{}}`))
	f.Add([]byte(`{"Status":"success","DATA":{"Hash":"x"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		agreeWithEncodingJSON[btmBlock](t, body)
		agreeWithEncodingJSON[btmTx](t, body)
		agreeWithEncodingJSON[struct {
			Total int      `json:"total"`
			TxIDs []string `json:"tx_ids"`
		}](t, body)
		agreeWithEncodingJSON[struct {
			BlockCount *flexUint `json:"block_count"`
		}](t, body)
	})
}

// agreeWithEncodingJSON fails t when decodeSuccess accepts body as a success
// carrying a T that encoding/json does not decode to the same value.
func agreeWithEncodingJSON[T any](t *testing.T, body []byte) {
	var fast T
	if !decodeSuccess(body, &fast) {
		return
	}
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Status != "success" {
		t.Fatalf("%T: fast decoder accepted what encoding/json does not: err %v, status %q", fast, err, env.Status)
	}
	var std T
	if len(env.Data) > 0 {
		if err := json.Unmarshal(env.Data, &std); err != nil {
			t.Fatalf("%T: fast decoder accepted data encoding/json refuses: %v", fast, err)
		}
	}
	if !reflect.DeepEqual(fast, std) {
		t.Fatalf("decoders disagree on a %T:\nfast %+v\nstd  %+v", fast, fast, std)
	}
}

// FuzzDecodeBCResult checks the fast decoder of blockcenter answers against
// encoding/json, for the shapes the blockcenter client decodes: whatever it
// accepts, encoding/json accepts too, as a code 200 envelope with a result,
// decoded to the same value.
func FuzzDecodeBCResult(f *testing.F) {
	f.Add([]byte(`{"code":200,"msg":"","result":{"data":[{"hash":"` + fuzzHash + `","asset":"` + fuzzAsset + `","amount":100}],"start":0,"limit":10}}`))
	f.Add([]byte(`{"code":200,"result":{"data":[{"hash":"a","amount":"12"},{"hash":"a","amount":18446744073709551615}],"limit":2,"_links":{"next":"x"}}}`))
	f.Add([]byte(`{"code":200,"result":null}`))
	f.Add([]byte(`{"code":200}`))
	f.Add([]byte(`{"code":300,"msg":"bad","result":{"data":[]}}`))
	f.Add([]byte(`{"code":200,"code":300,"result":{"data":[]}}`))
	f.Add([]byte(`{"CODE":200,"Result":{"Data":[{"Hash":"b","amount":"7"}]}}`))
	f.Add([]byte(`{"code":200,"result":{"data":{"block_height":12,"block_hash":"` + fuzzHash + `"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		agreeOnBCResult[bcResult[[]bcUTXO]](t, body)
		agreeOnBCResult[bcResult[struct {
			BlockHeight flexUint `json:"block_height"`
			BlockHash   string   `json:"block_hash"`
		}]](t, body)
	})
}

// agreeOnBCResult fails t when decodeBCResult accepts body as a success
// carrying a T that encoding/json does not decode to the same value.
func agreeOnBCResult[T any](t *testing.T, body []byte) {
	var fast T
	if !decodeBCResult(body, &fast) {
		return
	}
	var env bcEnvelope
	if err := json.Unmarshal(body, &env); err != nil || env.Code == nil || *env.Code != 200 ||
		len(env.Result) == 0 || string(env.Result) == "null" {
		t.Fatalf("%T: fast decoder accepted what encoding/json does not: err %v, envelope %+v", fast, err, env)
	}
	var std T
	if err := json.Unmarshal(env.Result, &std); err != nil {
		t.Fatalf("%T: fast decoder accepted a result encoding/json refuses: %v", fast, err)
	}
	if !reflect.DeepEqual(fast, std) {
		t.Fatalf("decoders disagree on a %T:\nfast %+v\nstd  %+v", fast, fast, std)
	}
}
