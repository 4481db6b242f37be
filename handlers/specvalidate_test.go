package handlers

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// The v1 parameters are checked against openapi.yaml (checkParams) with the
// answers the hand-written checks gave: the same status, code and message.
func TestSpecParams(t *testing.T) {
	f := newFixture(t, 1, 2)
	utxos := fmt.Sprintf("/v1/pools/%d/utxos", f.pool.ID)
	txs := fmt.Sprintf("/v1/transactions?pool=%d", f.pool.ID)
	for target, want := range map[string]string{
		utxos + "?state=available":                   "",
		utxos + "?state=reserved":                    "",
		utxos + "?state=immature":                    "",
		utxos + "?state=":                            "", // empty is absent
		utxos + "?state=Available":                   errBadState.Error(),
		utxos + "?state=x":                           errBadState.Error(),
		utxos + "?limit=1000":                        "",
		utxos + "?limit=":                            "",
		utxos + "?limit=0":                           errBadPageLimit.Error(),
		utxos + "?limit=1001":                        errBadPageLimit.Error(),
		utxos + "?limit=abc":                         errBadPageLimit.Error(),
		utxos + "?limit=0x10":                        errBadPageLimit.Error(),
		utxos + "?limit=-1":                          errBadPageLimit.Error(),
		utxos + "?cursor=17":                         "",
		utxos + "?cursor=0":                          errBadCursor.Error(),
		utxos + "?cursor=+5":                         errBadCursor.Error(),
		utxos + "?cursor=99999999999999999999":       errBadCursor.Error(),
		"/v1/pools/0/utxos":                          errBadPoolID.Error(),
		"/v1/pools/abc":                              errBadPoolID.Error(),
		"/v1/pools/1e3":                              errBadPoolID.Error(),
		txs:                                          "",
		txs + "&address=bm1qxyz":                     "",
		txs + "&address=":                            "",
		txs + "&address=a%20b":                       errBadAddress.Error(),
		txs + "&address=" + strings.Repeat("a", 257): errBadAddress.Error(),
		txs + "&limit=1001":                          errBadPageLimit.Error(),
		"/v1/transactions":                           errBadPoolID.Error(),
		"/v1/transactions?pool=0":                    errBadPoolID.Error(),
		"/v1/transactions?pool=x":                    errBadPoolID.Error(),
	} {
		status, b := do(t, f.app, http.MethodGet, target, "")
		if want == "" {
			if status != http.StatusOK {
				t.Errorf("%s: %d %s; want 200", target, status, b)
			}
			continue
		}
		if e := decode[apiErr](t, b); status != http.StatusBadRequest || e.Code != "bad_request" || e.Detail != want {
			t.Errorf("%s: %d %s; want 400 %q", target, status, b, want)
		}
	}
	// A malformed reservation id is answered like an unknown one.
	for _, id := range []string{"abc", strings.Repeat("A", 32), strings.Repeat("0", 33), strings.Repeat("0", 32)} {
		for _, m := range []struct{ method, suffix, body string }{
			{http.MethodGet, "", ""}, {http.MethodDelete, "", ""},
			{http.MethodPost, "/extend", `{"ttl_seconds":60}`},
			{http.MethodPost, "/submit", `{"tx_id":"` + strings.Repeat("a", 64) + `"}`},
		} {
			status, b := do(t, f.app, m.method, "/v1/reservations/"+id+m.suffix, m.body)
			if e := decode[apiErr](t, b); status != http.StatusNotFound || e.Code != "reservation_not_found" {
				t.Errorf("%s %s%s: %d %s", m.method, id, m.suffix, status, b)
			}
		}
	}
}
