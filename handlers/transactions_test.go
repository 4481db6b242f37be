package handlers

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/bufferd/bufferd/storage"
)

func TestListTransactionsPagesAndFilters(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, 20, 30, 40, 50)
	pool := f.pool
	// Five blocks with one spend each; every other one pays alice.
	var ids []string
	for i := range 5 {
		to := "bm1qbob"
		if i%2 == 0 {
			to = "bm1qalice"
		}
		id := fmt.Sprintf("%064x", i+1)
		ids = append(ids, id)
		f.applyBlock(spendBlock(pool.ID, int64(i+1), map[string]string{f.utxos[i].Hash: id},
			storage.CrawledTx{TxID: id,
				Inputs:  []storage.TxIO{{Address: "bm1qpool", Asset: pool.Asset, Amount: f.utxos[i].Amount, UTXO: f.utxos[i].Hash}},
				Outputs: []storage.TxIO{{Address: to, Asset: pool.Asset, Amount: f.utxos[i].Amount}}}))
	}
	type page struct {
		Transactions []transactionJSON `json:"transactions"`
		NextCursor   string            `json:"next_cursor"`
	}
	list := func(query string) (int, page) {
		t.Helper()
		status, body := f.call(http.MethodGet, "/v1/transactions?"+query, "")
		var p page
		if status == http.StatusOK {
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("%s: %v %s", query, err, body)
			}
		}
		return status, p
	}
	// Newest first, two at a time, until the cursor comes back empty.
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		status, p := list(fmt.Sprintf("pool=%d&limit=2&cursor=%s", pool.ID, cursor))
		if status != http.StatusOK {
			t.Fatalf("page %d: %d", pages, status)
		}
		for _, tx := range p.Transactions {
			got = append(got, tx.TxID)
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("pages gave %v, want %v", got, want)
	}
	_, p := list(fmt.Sprintf("pool=%d&address=bm1qalice", pool.ID))
	if len(p.Transactions) != 3 || p.Transactions[0].TxID != ids[4] || p.Transactions[0].Outputs[0].Address != "bm1qalice" {
		t.Fatalf("alice's transactions: %+v", p.Transactions)
	}
	if _, p := list(fmt.Sprintf("pool=%d&address=bm1qpool", pool.ID)); len(p.Transactions) != 5 {
		t.Fatalf("by an input address: %d transactions, want 5", len(p.Transactions))
	}
	for _, bad := range []string{"", "pool=0", "pool=x", fmt.Sprintf("pool=%d&limit=0", pool.ID),
		fmt.Sprintf("pool=%d&limit=1001", pool.ID), fmt.Sprintf("pool=%d&cursor=-1", pool.ID),
		fmt.Sprintf("pool=%d&address=has%%20space", pool.ID)} {
		if status, _ := list(bad); status != http.StatusBadRequest {
			t.Errorf("%q: %d, want 400", bad, status)
		}
	}
	if status, _ := list("pool=424242"); status != http.StatusNotFound {
		t.Errorf("unknown pool: %d, want 404", status)
	}
}
