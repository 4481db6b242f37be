package chain

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The responses of a real bytomd v1.1.0 node (solonet) in
// testdata/bytomd-v1.1.0, replayed to the Bytomd client.

const recordedDir = "testdata/bytomd-v1.1.0"

// Facts of the recorded chain.
const (
	recMiner    = "0014da507dcc70f5e52c89c0dc5586b13c86919897ea"
	recMinerAdr = "sm1qmfg8mnrs7hjjezwqm32cdvfus6ge39l2l72dlp"
	recGold     = "78017a4f87e607814946c4d9456a083bcdbbdd391de07a9773f006d0b4136c47"
	recTransfer = "3bc5247349eb6c434ab8afa242bf8ec5aa834dd941d983c8d8a3b773aebd3a46"
)

var zeroHash = strings.Repeat("0", 64)

// recording is one recorded call.
type recording struct {
	Route      string          `json:"route"`
	Request    json.RawMessage `json:"request"`
	HTTPStatus int             `json:"http_status"`
	Response   json.RawMessage `json:"response"`
}

func loadRecording(t *testing.T, name string) recording {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(recordedDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var r recording
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

// decodeExact decodes JSON keeping numbers as written.
func decodeExact(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(a, b []byte) bool {
	va, erra := decodeExact(a)
	vb, errb := decodeExact(b)
	return erra == nil && errb == nil && reflect.DeepEqual(va, vb)
}

// replay returns a client of a node answering with recs: a call gets the
// recording of its route whose request equals its body, or else the first
// one of its route; a route without recording gets the node's answer to an
// unknown route.
func replay(t *testing.T, recs ...recording) *Bytomd {
	t.Helper()
	unknown := loadRecording(t, "unknown-route-error.json")
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec, found := unknown, false
		for _, c := range recs {
			if c.Route != r.URL.Path {
				continue
			}
			if !found || sameJSON(c.Request, body) {
				rec, found = c, true
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rec.HTTPStatus)
		_, _ = w.Write(rec.Response)
	})
	return NewBytomd(srv.URL)
}

// replayFiles is replay of recorded files.
func replayFiles(t *testing.T, names ...string) *Bytomd {
	t.Helper()
	recs := make([]recording, len(names))
	for i, n := range names {
		recs[i] = loadRecording(t, n)
	}
	return replay(t, recs...)
}

func sameIO(t *testing.T, what string, got, want TxIO) {
	t.Helper()
	if got != want {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

func TestRecordedGenesisBlock(t *testing.T) {
	blk, err := replayFiles(t, "get-block-genesis.json").GetBlock(ctxT(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	const hash = "ce4fe9431cd0225b3a811f8f8ec922f2b07a921bb12a8dddae9a85540072c770"
	if blk.Hash != hash || blk.Height != 0 || blk.PreviousHash != zeroHash || !blk.Time.Equal(time.Unix(1528945000, 0)) || len(blk.Txs) != 1 {
		t.Fatalf("block %+v", blk)
	}
	cb := blk.Txs[0]
	if cb.ID != "158d7d7c6a8d2464725d508fafca76f0838d998eacaacb42ccc58cfb0c155352" || !cb.Coinbase() || cb.StatusFail ||
		cb.Height != 0 || cb.BlockHash != hash || len(cb.Inputs) != 1 || len(cb.Outputs) != 1 {
		t.Fatalf("coinbase %+v", cb)
	}
	sameIO(t, "coinbase input", cb.Inputs[0], TxIO{Type: "coinbase", Asset: zeroHash})
	sameIO(t, "genesis output", cb.Outputs[0], TxIO{Type: "control",
		UTXO:    "e3325bf07c4385af4b60ad6ecc682ee0773f9b96e1cfbbae9f0f12b86b5f1093",
		Address: "sm1q3jwsv0lhfmndnlag3kp6avpcq6pkd3xyxg7z8f", Asset: BTMAsset,
		Program: "00148c9d063ff74ee6d9ffa88d83aeb038068366c4c4", Amount: 140700041250000000})
}

func TestRecordedCoinbaseBlock(t *testing.T) {
	blk, err := replayFiles(t, "get-block-coinbase.json").GetBlock(ctxT(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	if blk.Hash != "17cd6d73544ded6cc9bd109e9a22d67e6737d9d4674885e28839bc5a8c77ee3f" ||
		blk.PreviousHash != "0c3cd9a9dc8045768372e8472cdbcb647ea26583068de6b77350b13b4bf1a4c9" || len(blk.Txs) != 1 {
		t.Fatalf("block %+v", blk)
	}
	cb := blk.Txs[0]
	if !cb.Coinbase() || !cb.Confirmed() || cb.Height != 2 {
		t.Fatalf("coinbase %+v", cb)
	}
	sameIO(t, "reward", cb.Outputs[0], TxIO{Type: "control",
		UTXO:    "2b7981a17d85385a3563f42fd3a631f9923bb1457a864a5656abc69622c616e9",
		Address: recMinerAdr, Asset: BTMAsset, Program: recMiner, Amount: 41250000000})
}

func TestRecordedTransferBlock(t *testing.T) {
	blk, err := replayFiles(t, "get-block-with-transfer.json").GetBlock(ctxT(t), 110)
	if err != nil {
		t.Fatal(err)
	}
	if len(blk.Txs) != 3 || !blk.Txs[0].Coinbase() || blk.Txs[1].Coinbase() || blk.Txs[1].ID != recTransfer {
		t.Fatalf("block %+v", blk)
	}
	if got := blk.Txs[0].Outputs[0].Amount; got != 41270000000 {
		t.Fatalf("reward with fees %d", got)
	}
	tx := blk.Txs[1]
	if tx.Height != 110 || tx.BlockHash != blk.Hash || !tx.BlockTime.Equal(time.Unix(1796388118, 0)) || len(tx.Inputs) != 1 || len(tx.Outputs) != 2 {
		t.Fatalf("transfer %+v", tx)
	}
	sameIO(t, "spend", tx.Inputs[0], TxIO{Type: "spend",
		UTXO:    "e22cdb3c9bcb93e1d8b63a6b7cf5d54f70ff5571c93e2bf554d3b9308be23a33",
		Address: recMinerAdr, Asset: BTMAsset, Program: recMiner, Amount: 41250000000})
	sameIO(t, "payment", tx.Outputs[0], TxIO{Type: "control",
		UTXO:    "2d2cfc3752b0b94ad63304c7b537da725ba73822beca81caedeb103747636e41",
		Address: "sm1qdja0t96hkcw5nafehttgfjvtd8wvfgpk38689c", Asset: BTMAsset,
		Program: "00146cbaf59757b61d49f539bad684c98b69dcc4a036", Amount: 41140000000})
	// The winner of the double spend.
	if w := blk.Txs[2]; w.ID != "880c9705c9bc5c327537192e91e3d485b12b1e8a58ba5fb457a17a21a7429f21" ||
		w.Inputs[0].UTXO != "75bc73d97ac206f200f0e6b03b7b1975ec9ab727be3595fd275d7f8c2297d4ab" {
		t.Fatalf("double-spend winner %+v", w)
	}
}

func TestRecordedContractSpendBlock(t *testing.T) {
	blk, err := replayFiles(t, "get-block-with-contract-spend.json").GetBlock(ctxT(t), 116)
	if err != nil {
		t.Fatal(err)
	}
	tx := blk.Txs[1]
	if len(blk.Txs) != 2 || tx.StatusFail || len(tx.Inputs) != 2 || !tx.Moves(recGold) {
		t.Fatalf("block %+v", blk)
	}
	// A non-P2W program has no address key: the input has no address.
	sameIO(t, "contract input", tx.Inputs[0], TxIO{Type: "spend",
		UTXO:  "cdd1ac72767fb66e1759ab6a6441799fd739893b895f40a77c5b03129f7debde",
		Asset: recGold, Program: "5151", Amount: 1000000})
	sameIO(t, "fee input", tx.Inputs[1], TxIO{Type: "spend",
		UTXO:    "cceb296d7d8ffac6281984dc4a5b687de78972e3b2826d0125a92b574851c607",
		Address: "sm1qc9ychjx7ghv0eh5js6arwlj3cyczlhw34q8qwj", Asset: BTMAsset,
		Program: "0014c1498bc8de45d8fcde9286ba377e51c1302fddd1", Amount: 90000000})
}

func TestRecordedIssueBlock(t *testing.T) {
	blk, err := replayFiles(t, "get-block-with-issue-and-p2wsh-output.json").GetBlock(ctxT(t), 119)
	if err != nil {
		t.Fatal(err)
	}
	if len(blk.Txs) != 3 {
		t.Fatalf("block %+v", blk)
	}
	p2wsh := blk.Txs[1].Outputs[1]
	if p2wsh.Program != "00204010f14ac56506b4af686efeec307fb13272ad27d0a1cfa7644fc9141f701469" ||
		p2wsh.Address != "sm1qgqg0zjk9v5rtftmgdmlwcvrlkye89tf86zsulfmyfly3g8msz35sd4k8tq" || p2wsh.Amount != 200000000 {
		t.Fatalf("P2WSH output %+v", p2wsh)
	}
	tx := blk.Txs[2]
	// An issue input spends nothing and has no control program.
	sameIO(t, "issue input", tx.Inputs[1], TxIO{Type: "issue", Asset: recGold, Amount: 9007199254740993})
	sameIO(t, "issued output", tx.Outputs[1], TxIO{Type: "control",
		UTXO:  "21844b486130bba55cb72a983505fe314ff232c8c8fc7b07578b28bbb60ac3e8",
		Asset: recGold, Program: "5151", Amount: 9007199254740993})
}

// setJSON sets the value at path (object keys, or array indexes as ints) in
// a recorded response.
func setJSON(t *testing.T, rec recording, value any, path ...any) recording {
	t.Helper()
	root, err := decodeExact(rec.Response)
	if err != nil {
		t.Fatal(err)
	}
	v := root
	for i, p := range path {
		last := i == len(path)-1
		switch k := p.(type) {
		case string:
			if last {
				v.(map[string]any)[k] = value
			} else {
				v = v.(map[string]any)[k]
			}
		case int:
			if last {
				v.([]any)[k] = value
			} else {
				v = v.([]any)[k]
			}
		}
	}
	if rec.Response, err = json.Marshal(root); err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestRecordedStatusFail(t *testing.T) {
	rec := loadRecording(t, "get-block-with-contract-spend.json")
	rec = setJSON(t, rec, true, "data", "transactions", 1, "status_fail")
	blk, err := replay(t, rec).GetBlock(ctxT(t), 116)
	if err != nil {
		t.Fatal(err)
	}
	tx := blk.Txs[1]
	if !tx.StatusFail || !tx.Moves(BTMAsset) || tx.Moves(recGold) || blk.Txs[0].StatusFail {
		t.Fatalf("failed tx %+v", tx)
	}
	if tx.Inputs[0].Amount != 1000000 || tx.Outputs[1].Asset != recGold {
		t.Fatalf("a failed transaction keeps its inputs and outputs: %+v", tx)
	}
}

func TestRecordedBlockCount(t *testing.T) {
	for name, want := range map[string]uint64{
		"get-block-count.json":                     9,
		"get-block-count-at-immature-listing.json": 99,
		"get-block-count-at-immature-build.json":   125,
	} {
		if n, err := replayFiles(t, name).blockCount(ctxT(t)); err != nil || n != want {
			t.Errorf("%s: %d, %v; want %d", name, n, err, want)
		}
	}
}

func TestRecordedMempool(t *testing.T) {
	ids, err := replayFiles(t, "list-unconfirmed-transactions.json").Mempool(ctxT(t))
	if err != nil || len(ids) != 1 || ids[0] != recTransfer {
		t.Fatalf("mempool %v, %v", ids, err)
	}
	if ids, err := replayFiles(t, "list-unconfirmed-transactions-empty.json").Mempool(ctxT(t)); err != nil || len(ids) != 0 {
		t.Fatalf("empty mempool %v, %v", ids, err)
	}
}

func TestRecordedMempoolTx(t *testing.T) {
	tx, err := replayFiles(t, "get-unconfirmed-transaction.json").MempoolTx(ctxT(t), recTransfer)
	if err != nil {
		t.Fatal(err)
	}
	if tx.ID != recTransfer || tx.Confirmed() || tx.BlockHash != "" || tx.StatusFail || len(tx.Inputs) != 1 || len(tx.Outputs) != 2 {
		t.Fatalf("pending tx %+v", tx)
	}
	sameIO(t, "spend", tx.Inputs[0], TxIO{Type: "spend",
		UTXO:    "e22cdb3c9bcb93e1d8b63a6b7cf5d54f70ff5571c93e2bf554d3b9308be23a33",
		Address: recMinerAdr, Asset: BTMAsset, Program: recMiner, Amount: 41250000000})
	sameIO(t, "change", tx.Outputs[1], TxIO{Type: "control",
		UTXO:    "e333258ff4c777bd8db9321bbdc91fedb12431acbf37af93dde856bb9c3103a6",
		Address: recMinerAdr, Asset: BTMAsset, Program: recMiner, Amount: 100000000})

	const contract = "9e4431482ddca3cdfef4bb19d9291cbdc386d9f3003f5ec28f72f4bd54549305"
	tx, err = replayFiles(t, "get-unconfirmed-transaction-contract-spend.json").MempoolTx(ctxT(t), contract)
	if err != nil {
		t.Fatal(err)
	}
	sameIO(t, "contract input", tx.Inputs[0], TxIO{Type: "spend",
		UTXO:  "cdd1ac72767fb66e1759ab6a6441799fd739893b895f40a77c5b03129f7debde",
		Asset: recGold, Program: "5151", Amount: 1000000})
}

// wantAPIError checks err is an *APIError of bytomd with these fields.
func wantAPIError(t *testing.T, err error, path string, status int, code, msg string) {
	t.Helper()
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("want an *APIError, got %v", err)
	}
	want := APIError{Source: "bytomd", Path: path, HTTPStatus: status, Code: code, Msg: msg}
	if *apiErr != want {
		t.Fatalf("api error:\n got  %+v\n want %+v", *apiErr, want)
	}
}

func TestRecordedBlockErrors(t *testing.T) {
	ctx := ctxT(t)
	bt := replayFiles(t, "get-block-beyond-tip-error.json", "get-block-count.json")
	_, err := bt.GetBlock(ctx, 999999)
	if !errors.Is(err, ErrBlockNotFound) {
		t.Fatalf("beyond the tip: %v", err)
	}
	wantAPIError(t, err, "/get-block", http.StatusOK, "BTM000", "Bytom API Error: can't find block in given height")

	bt = replayFiles(t, "get-block-malformed-body-error.json", "get-block-count.json")
	_, err = bt.GetBlock(ctx, 5)
	if errors.Is(err, ErrBlockNotFound) {
		t.Fatalf("a bad request is not a missing block: %v", err)
	}
	wantAPIError(t, err, "/get-block", http.StatusBadRequest, "BTM002", "Invalid request body: json: cannot unmarshal string "+
		"into Go struct field BlockReq.block_height of type uint64: check request parameters for missing and/or incorrect values")

	_, err = replayFiles(t).blockCount(ctx)
	wantAPIError(t, err, "/get-block-count", http.StatusInternalServerError, "BTM000", "Bytom API Error: not Found")
}

func TestRecordedMempoolTxErrors(t *testing.T) {
	for _, name := range []string{"get-unconfirmed-transaction-unknown-error.json", "get-unconfirmed-transaction-after-confirmation-error.json"} {
		rec := loadRecording(t, name)
		var req struct {
			TxID string `json:"tx_id"`
		}
		if err := json.Unmarshal(rec.Request, &req); err != nil {
			t.Fatal(err)
		}
		_, err := replay(t, rec).MempoolTx(ctxT(t), req.TxID)
		if !errors.Is(err, ErrTxNotFound) {
			t.Fatalf("%s: %v", name, err)
		}
		wantAPIError(t, err, "/get-unconfirmed-transaction", http.StatusOK, "BTM000", "Bytom API Error: transaction are not existed in the mempool")
	}
}

// TestRecordedEnvelopes sends every recorded request and checks the client
// reads its answer: data for a success, an *APIError with the envelope's
// code and detail for a failure, whatever the route.
func TestRecordedEnvelopes(t *testing.T) {
	names, err := filepath.Glob(filepath.Join(recordedDir, "*.json"))
	if err != nil || len(names) < 40 {
		t.Fatalf("recordings: %d, %v", len(names), err)
	}
	for _, path := range names {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			rec := loadRecording(t, name)
			var env struct {
				Status      string          `json:"status"`
				Data        json.RawMessage `json:"data"`
				Code        string          `json:"code"`
				Msg         string          `json:"msg"`
				ErrorDetail string          `json:"error_detail"`
				Detail      string          `json:"detail"`
			}
			if err := json.Unmarshal(rec.Response, &env); err != nil {
				t.Fatal(err)
			}
			var data json.RawMessage
			err := replay(t, rec).call(ctxT(t), rec.Route, rec.Request, &data)
			if env.Status == "success" {
				if err != nil || !sameJSON(data, env.Data) {
					t.Fatalf("data %s, %v", data, err)
				}
				return
			}
			detail := env.ErrorDetail
			if rec.HTTPStatus != http.StatusOK {
				detail = env.Detail // request-decoding errors and unknown routes
			}
			if detail == "" {
				t.Fatal("a failure without detail")
			}
			wantAPIError(t, err, rec.Route, rec.HTTPStatus, env.Code, env.Msg+": "+detail)
		})
	}
}
