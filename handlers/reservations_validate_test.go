package handlers

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestDecodeReserve(t *testing.T) {
	h1, h2 := strings.Repeat("a1", 32), strings.Repeat("b2", 32)
	asset, prog := hexLower, "0014ab"
	tests := []struct {
		name string
		body string
		want *reserveReq // nil: refused
	}{
		{"count by pool", `{"pool":7,"count":3}`, &reserveReq{PoolID: 7, Count: 3, TTL: 600 * time.Second}},
		{"hashes by asset and program", `{"asset":"` + hexUpper + `","program":"0014AB","hashes":["` + strings.ToUpper(h1) + `","` + h2 + `"]}`,
			&reserveReq{Asset: asset, Program: prog, Hashes: []string{h1, h2}, TTL: 600 * time.Second}},
		{"amount combine and options", `{"pool":1,"amount":500,"combine":true,"ttl_seconds":3600,"owner":"alice 1","wait_seconds":30}`,
			&reserveReq{PoolID: 1, Amount: 500, Combine: true, TTL: time.Hour, Owner: "alice 1", Wait: 30 * time.Second}},
		{"min ttl, no wait", `{"pool":1,"amount":1,"ttl_seconds":1,"wait_seconds":0}`, &reserveReq{PoolID: 1, Amount: 1, TTL: time.Second}},
		{"combine false without amount", `{"pool":1,"count":1,"combine":false}`, &reserveReq{PoolID: 1, Count: 1, TTL: 600 * time.Second}},
		{"nulls are absent", `{"pool":1,"count":1,"hashes":null,"owner":null,"ttl_seconds":null}`, &reserveReq{PoolID: 1, Count: 1, TTL: 600 * time.Second}},
		{"max count, 64-char owner", `{"pool":1,"count":100,"owner":"` + strings.Repeat("o", 64) + `"}`,
			&reserveReq{PoolID: 1, Count: 100, Owner: strings.Repeat("o", 64), TTL: 600 * time.Second}},
		{"whitespace around", " \n{\"pool\":1,\"count\":1}\n ", &reserveReq{PoolID: 1, Count: 1, TTL: 600 * time.Second}},

		{"empty body", ``, nil},
		{"not an object", `[]`, nil},
		{"null", `null`, nil},
		{"truncated", `{"pool":1,"count":1`, nil},
		{"trailing data", `{"pool":1,"count":1}{}`, nil},
		{"trailing garbage", `{"pool":1,"count":1} x`, nil},
		{"unknown field", `{"pool":1,"count":1,"ttl":5}`, nil},
		{"case variant field", `{"pool":1,"Count":1}`, nil},
		{"repeated field", `{"pool":1,"count":1,"count":2}`, nil},
		{"no pool", `{"count":1}`, nil},
		{"pool zero", `{"pool":0,"count":1}`, nil},
		{"pool negative", `{"pool":-3,"count":1}`, nil},
		{"pool string", `{"pool":"1","count":1}`, nil},
		{"pool fraction", `{"pool":1.5,"count":1}`, nil},
		{"pool and asset", `{"pool":1,"asset":"` + asset + `","program":"00","count":1}`, nil},
		{"asset without program", `{"asset":"` + asset + `","count":1}`, nil},
		{"bad asset", `{"asset":"zz","program":"00","count":1}`, nil},
		{"bad program", `{"asset":"` + asset + `","program":"0","count":1}`, nil},
		{"no mode", `{"pool":1}`, nil},
		{"two modes", `{"pool":1,"count":1,"amount":5}`, nil},
		{"hashes and count", `{"pool":1,"hashes":["` + h1 + `"],"count":1}`, nil},
		{"empty hashes", `{"pool":1,"hashes":[]}`, nil},
		{"too many hashes", `{"pool":1,"hashes":[` + strings.TrimSuffix(strings.Repeat(`"`+h1+`",`, 101), ",") + `]}`, nil},
		{"duplicate hashes by case", `{"pool":1,"hashes":["` + h1 + `","` + strings.ToUpper(h1) + `"]}`, nil},
		{"short hash", `{"pool":1,"hashes":["` + h1[:63] + `"]}`, nil},
		{"non-hex hash", `{"pool":1,"hashes":["` + strings.Repeat("z", 64) + `"]}`, nil},
		{"null hash", `{"pool":1,"hashes":[null]}`, nil},
		{"hashes not a list", `{"pool":1,"hashes":"` + h1 + `"}`, nil},
		{"count zero", `{"pool":1,"count":0}`, nil},
		{"count too big", `{"pool":1,"count":101}`, nil},
		{"count fraction", `{"pool":1,"count":1.0}`, nil},
		{"amount zero", `{"pool":1,"amount":0}`, nil},
		{"amount negative", `{"pool":1,"amount":-5}`, nil},
		// Amounts are uint64: every integer up to 2^64-1 exactly, as a JSON
		// number or a decimal string (before this version the cap was 2^63-1).
		{"amount 2^63", `{"pool":1,"amount":9223372036854775808}`, &reserveReq{PoolID: 1, Amount: 1 << 63, TTL: 600 * time.Second}},
		{"amount max", `{"pool":1,"amount":18446744073709551615}`, &reserveReq{PoolID: 1, Amount: 1<<64 - 1, TTL: 600 * time.Second}},
		{"amount 2^53+1", `{"pool":1,"amount":9007199254740993}`, &reserveReq{PoolID: 1, Amount: 1<<53 + 1, TTL: 600 * time.Second}},
		{"amount as a string", `{"pool":1,"amount":"18446744073709551615"}`, &reserveReq{PoolID: 1, Amount: 1<<64 - 1, TTL: 600 * time.Second}},
		{"amount as a short string", `{"pool":1,"amount":"9007199254740993","combine":true}`,
			&reserveReq{PoolID: 1, Amount: 1<<53 + 1, Combine: true, TTL: 600 * time.Second}},
		{"amount overflow", `{"pool":1,"amount":18446744073709551616}`, nil},
		{"amount overflow string", `{"pool":1,"amount":"18446744073709551616"}`, nil},
		{"amount fraction", `{"pool":1,"amount":1.5}`, nil},
		{"amount integral fraction", `{"pool":1,"amount":2.0}`, nil},
		{"amount exponent", `{"pool":1,"amount":1e3}`, nil},
		{"amount string fraction", `{"pool":1,"amount":"1.5"}`, nil},
		{"amount string word", `{"pool":1,"amount":"x"}`, nil},
		{"amount string empty", `{"pool":1,"amount":""}`, nil},
		{"amount string negative", `{"pool":1,"amount":"-1"}`, nil},
		{"amount string plus", `{"pool":1,"amount":"+1"}`, nil},
		{"amount string zero", `{"pool":1,"amount":"0"}`, nil},
		{"amount string spaces", `{"pool":1,"amount":" 1"}`, nil},
		{"amount bool", `{"pool":1,"amount":true}`, nil},
		{"amount list", `{"pool":1,"amount":[1]}`, nil},
		{"amount negative zero", `{"pool":1,"amount":-0}`, nil},
		{"amount huge exponent", `{"pool":1,"amount":1e400}`, nil},
		{"combine with count", `{"pool":1,"count":1,"combine":true}`, nil},
		{"combine not bool", `{"pool":1,"amount":1,"combine":"yes"}`, nil},
		{"ttl zero", `{"pool":1,"count":1,"ttl_seconds":0}`, nil},
		{"ttl too long", `{"pool":1,"count":1,"ttl_seconds":3601}`, nil},
		{"ttl string", `{"pool":1,"count":1,"ttl_seconds":"600"}`, nil},
		{"wait negative", `{"pool":1,"count":1,"wait_seconds":-1}`, nil},
		{"wait too long", `{"pool":1,"count":1,"wait_seconds":31}`, nil},
		{"owner legacy", `{"pool":1,"count":1,"owner":"legacy"}`, nil},
		{"owner too long", `{"pool":1,"count":1,"owner":"` + strings.Repeat("o", 65) + `"}`, nil},
		{"owner control char", `{"pool":1,"count":1,"owner":"a\nb"}`, nil},
		{"owner non-ascii", `{"pool":1,"count":1,"owner":"é"}`, nil},
		{"owner number", `{"pool":1,"count":1,"owner":5}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeReserve([]byte(tt.body))
			checkDecodeErr(t, err)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("accepted %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", *tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, *tt.want)
			}
		})
	}
}

func TestDecodeExtendAndSubmit(t *testing.T) {
	for body, want := range map[string]time.Duration{
		`{"ttl_seconds":1}`: time.Second, `{"ttl_seconds":3600}`: time.Hour,
		``: -1, `{}`: -1, `{"ttl_seconds":null}`: -1, `{"ttl_seconds":0}`: -1, `{"ttl_seconds":3601}`: -1,
		`{"ttl_seconds":"60"}`: -1, `{"ttl_seconds":60,"x":1}`: -1, `{"ttl":60}`: -1, `{"ttl_seconds":60}[]`: -1,
	} {
		got, err := decodeExtend([]byte(body))
		checkDecodeErr(t, err)
		if want < 0 && err == nil || want >= 0 && (err != nil || got != want) {
			t.Errorf("decodeExtend(%s) = %v, %v; want %v", body, got, err, want)
		}
	}
	for body, want := range map[string]string{
		`{"tx_id":"` + hexUpper + `"}`: hexLower, `{"tx_id":"` + hexMixed + `"}`: hexLower,
		``: "", `{}`: "", `{"tx_id":""}`: "", `{"tx_id":"` + hexLower[:63] + `"}`: "", `{"tx_id":1}`: "",
		`{"tx_id":"` + strings.Repeat("x", 64) + `"}`: "", `{"tx_id":"` + hexLower + `","ttl_seconds":5}`: "",
		`{"txid":"` + hexLower + `"}`: "",
	} {
		got, err := decodeSubmit([]byte(body))
		checkDecodeErr(t, err)
		if want == "" && err == nil || want != "" && (err != nil || got != want) {
			t.Errorf("decodeSubmit(%s) = %q, %v; want %q", body, got, err, want)
		}
	}
}

func TestIdempotencyKeyAndReservationID(t *testing.T) {
	for k, ok := range map[string]bool{
		"": true, "k": true, "order 42/retry": true, strings.Repeat("k", 128): true,
		strings.Repeat("k", 129): false, "a\tb": false, "é": false, "\x7f": false,
	} {
		if err := checkIdempotencyKey(k); (err == nil) != ok {
			t.Errorf("checkIdempotencyKey(%q) = %v, want ok=%v", k, err, ok)
		}
	}
	for id, ok := range map[string]bool{
		strings.Repeat("0f", 16): true, strings.Repeat("0F", 16): false, strings.Repeat("0f", 16) + "0": false,
		strings.Repeat("0f", 15): false, "": false, strings.Repeat("zz", 16): false,
	} {
		if validReservationID(id) != ok {
			t.Errorf("validReservationID(%q) != %v", id, ok)
		}
	}
}

// checkReserveReq fails unless r satisfies every rule of a reserve request.
func checkReserveReq(t *testing.T, r reserveReq) {
	t.Helper()
	byID := r.PoolID > 0 && r.Asset == "" && r.Program == ""
	byAP := r.PoolID == 0 && lowerHex64(r.Asset) && r.Program != "" && len(r.Program)%2 == 0 &&
		strings.Trim(r.Program, "0123456789abcdef") == ""
	if !byID && !byAP {
		t.Fatalf("accepted pool selector %+v", r)
	}
	modes := 0
	if len(r.Hashes) > 0 {
		modes++
		if len(r.Hashes) > maxReserveHashes {
			t.Fatalf("accepted %d hashes", len(r.Hashes))
		}
		seen := map[string]bool{}
		for _, h := range r.Hashes {
			if !lowerHex64(h) || seen[h] {
				t.Fatalf("accepted hashes %q", r.Hashes)
			}
			seen[h] = true
		}
	}
	if r.Count != 0 {
		modes++
		if r.Count < 1 || r.Count > maxReserveCount {
			t.Fatalf("accepted count %d", r.Count)
		}
	}
	if r.Amount != 0 { // a uint64: no negative amount gets this far
		modes++
	}
	switch {
	case modes != 1:
		t.Fatalf("accepted %d modes: %+v", modes, r)
	case r.Combine && r.Amount == 0:
		t.Fatalf("accepted combine without amount")
	case r.TTL < time.Second || r.TTL > time.Hour || r.TTL%time.Second != 0:
		t.Fatalf("accepted ttl %v", r.TTL)
	case r.Wait < 0 || r.Wait > 30*time.Second:
		t.Fatalf("accepted wait %v", r.Wait)
	case len(r.Owner) > maxOwnerLen || !isPrintable(r.Owner) || r.Owner == "legacy":
		t.Fatalf("accepted owner %q", r.Owner)
	}
}

func FuzzDecodeReserve(f *testing.F) {
	f.Add([]byte(`{"pool":1,"count":1}`))
	f.Add([]byte(`{"asset":"` + hexUpper + `","program":"0014AB","hashes":["` + hexMixed + `"],"ttl_seconds":5}`))
	f.Add([]byte(`{"pool":9,"amount":100,"combine":true,"owner":"bob","wait_seconds":3}`))
	f.Add([]byte(`{"pool":1,"hashes":["` + hexLower + `","` + hexUpper + `"]}`))
	f.Add([]byte(`{"pool":1,"count":1,"Count":2}`))
	f.Add([]byte(`{"pool":1e3,"amount":-1,"owner":"legacy"}`))
	f.Add([]byte(`{"pool":null,"asset":null}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeReserve(body)
		checkDecodeErr(t, err)
		if err == nil {
			checkReserveReq(t, r)
		}
	})
}

func FuzzDecodeExtend(f *testing.F) {
	f.Add([]byte(`{"ttl_seconds":60}`))
	f.Add([]byte(`{"ttl_seconds":0}`))
	f.Add([]byte(`{"ttl_seconds":1e9}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ttl, err := decodeExtend(body)
		checkDecodeErr(t, err)
		if err == nil && (ttl < time.Second || ttl > time.Hour || ttl%time.Second != 0) {
			t.Fatalf("accepted ttl %v", ttl)
		}
	})
}

func FuzzDecodeSubmit(f *testing.F) {
	f.Add([]byte(`{"tx_id":"` + hexUpper + `"}`))
	f.Add([]byte(`{"tx_id":""}`))
	f.Add([]byte(`{"tx_id":"` + hexLower + `","tx_id":"` + hexLower + `"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tx, err := decodeSubmit(body)
		checkDecodeErr(t, err)
		if err == nil && !lowerHex64(tx) {
			t.Fatalf("accepted tx_id %q", tx)
		}
	})
}
