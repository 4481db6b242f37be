package handlers

import (
	"errors"
	"strings"
	"testing"
)

var (
	hexLower = strings.Repeat("ab", 32)
	hexUpper = strings.Repeat("AB", 32)
	hexMixed = strings.Repeat("aB", 32)
)

func TestIsHexAndNormHash(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{hexLower, hexLower, true},
		{hexUpper, hexLower, true},
		{hexMixed, hexLower, true},
		{"", "", false},
		{hexLower[:63], "", false},
		{hexLower + "a", "", false},
		{strings.Repeat("g", 64), "", false},
		{"0x" + hexLower[:62], "", false},
		{strings.Repeat(" ", 64), "", false},
		{strings.Repeat("é", 32), "", false}, // 64 bytes, not hex
	}
	for _, tt := range tests {
		got, err := normHash64(tt.in, errBadHash)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("normHash64(%q) = %q, %v; want %q ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestNormProgram(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"0014AB", "0014ab", true},
		{"00", "00", true},
		{"", "", false},
		{"001", "", false},
		{"zz", "", false},
		{strings.Repeat("00", maxProgramLen/2), strings.Repeat("00", maxProgramLen/2), true},
		{strings.Repeat("00", maxProgramLen/2+1), "", false},
	}
	for _, tt := range tests {
		got, err := normProgram(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("normProgram(%.20q) = %.20q, %v; want ok=%v", tt.in, got, err, tt.ok)
		}
	}
}

func TestDecodeListUTXOs(t *testing.T) {
	prog := "0014" + hexLower[:40]
	tests := []struct {
		name    string
		body    string
		want    listUTXOsQuery
		wantErr error
	}{
		{"defaults to desc", `{"asset":"` + hexUpper + `","program":"` + prog + `"}`, listUTXOsQuery{hexLower, prog, true}, nil},
		{"desc", `{"asset":"` + hexLower + `","program":"` + prog + `","sort":{"by":"amount","order":"desc"}}`, listUTXOsQuery{hexLower, prog, true}, nil},
		{"asc", `{"asset":"` + hexLower + `","program":"` + prog + `","sort":{"by":"amount","order":"asc"}}`, listUTXOsQuery{hexLower, prog, false}, nil},
		{"by empty asc", `{"asset":"` + hexLower + `","program":"` + prog + `","sort":{"order":"asc"}}`, listUTXOsQuery{hexLower, prog, false}, nil},
		{"unknown fields ok", `{"asset":"` + hexLower + `","program":"` + prog + `","extra":[1,2]}`, listUTXOsQuery{hexLower, prog, true}, nil},
		{"empty object", `{}`, listUTXOsQuery{}, errBadAsset},
		{"empty body", ``, listUTXOsQuery{}, errBadBody},
		{"malformed", `{"asset":`, listUTXOsQuery{}, errBadBody},
		{"trailing garbage", `{"asset":"` + hexLower + `","program":"` + prog + `"}x`, listUTXOsQuery{}, errBadBody},
		{"wrong type", `{"asset":1}`, listUTXOsQuery{}, errBadBody},
		{"no program", `{"asset":"` + hexLower + `"}`, listUTXOsQuery{}, errBadProgram},
		{"odd program", `{"asset":"` + hexLower + `","program":"001"}`, listUTXOsQuery{}, errBadProgram},
		{"injection in order", `{"asset":"` + hexLower + `","program":"` + prog + `","sort":{"by":"amount","order":"desc; DROP TABLE utxos"}}`, listUTXOsQuery{}, errBadOrder},
		{"upper order", `{"asset":"` + hexLower + `","program":"` + prog + `","sort":{"by":"amount","order":"DESC"}}`, listUTXOsQuery{}, errBadOrder},
		{"bad by", `{"asset":"` + hexLower + `","program":"` + prog + `","sort":{"by":"hash"}}`, listUTXOsQuery{}, errBadSortBy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeListUTXOs([]byte(tt.body))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeUpdateUTXO(t *testing.T) {
	tests := []struct {
		body    string
		want    string
		wantErr error
	}{
		{`{"hash":"` + hexMixed + `"}`, hexLower, nil},
		{`{}`, "", errBadHash},
		{`{"hash":""}`, "", errBadHash},
		{`{"hash":"abc"}`, "", errBadHash},
		{`{"hash":null}`, "", errBadHash},
		{`[]`, "", errBadBody},
		{`{"hash":12}`, "", errBadBody},
		{`null`, "", errBadHash},
	}
	for _, tt := range tests {
		got, err := decodeUpdateUTXO([]byte(tt.body))
		if !errors.Is(err, tt.wantErr) || got != tt.want {
			t.Errorf("decodeUpdateUTXO(%s) = %q, %v; want %q, %v", tt.body, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestDecodeListBalances(t *testing.T) {
	tests := []struct {
		body    string
		want    listBalancesReq
		wantErr error
	}{
		{`{"address":"bm1qxyz","asset":"` + hexUpper + `"}`, listBalancesReq{"bm1qxyz", hexLower}, nil},
		{`{}`, listBalancesReq{}, errBadAddress},
		{`{"address":"bm1qxyz"}`, listBalancesReq{}, errBadAsset},
		{`{"asset":"` + hexLower + `"}`, listBalancesReq{}, errBadAddress},
		{`{"address":"bm1 q","asset":"` + hexLower + `"}`, listBalancesReq{}, errBadAddress},
		{`{"address":"` + strings.Repeat("a", 257) + `","asset":"` + hexLower + `"}`, listBalancesReq{}, errBadAddress},
		{`{"address":"` + strings.Repeat("a", 256) + `","asset":"` + hexLower + `"}`, listBalancesReq{strings.Repeat("a", 256), hexLower}, nil},
	}
	for _, tt := range tests {
		got, err := decodeListBalances([]byte(tt.body))
		if !errors.Is(err, tt.wantErr) || got != tt.want {
			t.Errorf("decodeListBalances(%.40s) = %+v, %v; want %+v, %v", tt.body, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestDecodeUpdateBalance(t *testing.T) {
	ok := func(amount string) string {
		return `{"address":"bm1qxyz","asset":"` + hexLower + `","amount":` + amount + `,"tx_id":"` + hexUpper + `"}`
	}
	tests := []struct {
		name    string
		body    string
		want    updateBalanceReq
		wantErr error
	}{
		{"positive", ok("100"), updateBalanceReq{"bm1qxyz", hexLower, 100, hexLower}, nil},
		{"negative", ok("-100"), updateBalanceReq{"bm1qxyz", hexLower, -100, hexLower}, nil},
		{"zero", ok("0"), updateBalanceReq{}, errBadAmount},
		{"fraction", ok("1.5"), updateBalanceReq{}, errBadBody},
		{"string", ok(`"100"`), updateBalanceReq{}, errBadBody},
		{"overflow", ok("9223372036854775808"), updateBalanceReq{}, errBadBody},
		{"no tx", `{"address":"bm1qxyz","asset":"` + hexLower + `","amount":1}`, updateBalanceReq{}, errBadTxID},
		{"short tx", `{"address":"bm1qxyz","asset":"` + hexLower + `","amount":1,"tx_id":"abcd"}`, updateBalanceReq{}, errBadTxID},
		{"no address", `{"asset":"` + hexLower + `","amount":1,"tx_id":"` + hexLower + `"}`, updateBalanceReq{}, errBadAddress},
		{"bad asset", `{"address":"a","asset":"zz","amount":1,"tx_id":"` + hexLower + `"}`, updateBalanceReq{}, errBadAsset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeUpdateBalance([]byte(tt.body))
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseQueryParams(t *testing.T) {
	startTests := []struct {
		in   string
		want int
		ok   bool
	}{{"", 0, true}, {"0", 0, true}, {"250", 250, true}, {"-1", 0, false}, {"x", 0, false}, {"1e3", 0, false}, {"99999999999", 0, false}}
	for _, tt := range startTests {
		got, err := parseStart(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseStart(%q) = %d, %v", tt.in, got, err)
		}
	}
	limitTests := []struct {
		in     string
		strict bool
		want   int
		ok     bool
	}{
		{"", false, 100, true}, {"5", false, 5, true}, {"1000", false, 1000, true},
		{"5000", false, 1000, true}, {"5000", true, 0, false}, {"0", false, 0, false},
		{"-3", false, 0, false}, {"abc", true, 0, false}, {"1000", true, 1000, true},
	}
	for _, tt := range limitTests {
		got, err := parseLimit(tt.in, tt.strict)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseLimit(%q, %v) = %d, %v", tt.in, tt.strict, got, err)
		}
	}
	for in, ok := range map[string]bool{"1": true, "42": true, "0": false, "-1": false, "+1": false, "1x": false, "": false, "9223372036854775808": false} {
		if _, err := parsePoolID(in); (err == nil) != ok {
			t.Errorf("parsePoolID(%q) err = %v, want ok=%v", in, err, ok)
		}
	}
	for in, ok := range map[string]bool{"": true, "17": true, "0": false, "-5": false, "+5": false, "abc": false} {
		if _, err := parseCursor(in); (err == nil) != ok {
			t.Errorf("parseCursor(%q) err = %v, want ok=%v", in, err, ok)
		}
	}
	// The state filter is openapi.yaml's (TestSpecParams).
}

// lowerHex64 reports whether s is exactly 64 lower-case hex characters.
func lowerHex64(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}

// checkDecodeErr fails unless err is nil or an inputError (what clients may see).
func checkDecodeErr(t *testing.T, err error) {
	t.Helper()
	var in *inputError
	if err != nil && !errors.As(err, &in) {
		t.Fatalf("decoder returned a non-input error %T: %v", err, err)
	}
}

func FuzzDecodeListUTXOs(f *testing.F) {
	f.Add([]byte(`{"asset":"` + hexUpper + `","program":"0014ab","sort":{"by":"amount","order":"asc"}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"asset":"` + hexLower + `","program":"00","sort":{"order":"desc; DROP TABLE utxos"}}`))
	f.Add([]byte(`{"sort":null}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		q, err := decodeListUTXOs(body)
		checkDecodeErr(t, err)
		if err != nil {
			return
		}
		if !lowerHex64(q.Asset) {
			t.Fatalf("accepted asset %q", q.Asset)
		}
		if q.Program == "" || len(q.Program)%2 != 0 || strings.Trim(q.Program, "0123456789abcdef") != "" {
			t.Fatalf("accepted program %q", q.Program)
		}
	})
}

func FuzzDecodeUpdateUTXO(f *testing.F) {
	f.Add([]byte(`{"hash":"` + hexMixed + `"}`))
	f.Add([]byte(`{"hash":""}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := decodeUpdateUTXO(body)
		checkDecodeErr(t, err)
		if err == nil && !lowerHex64(h) {
			t.Fatalf("accepted hash %q", h)
		}
	})
}

func FuzzDecodeUpdateBalance(f *testing.F) {
	f.Add([]byte(`{"address":"bm1qxyz","asset":"` + hexLower + `","amount":-5,"tx_id":"` + hexUpper + `"}`))
	f.Add([]byte(`{"address":"","asset":"","amount":0,"tx_id":""}`))
	f.Add([]byte(`{"amount":1e400}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeUpdateBalance(body)
		checkDecodeErr(t, err)
		if err != nil {
			return
		}
		if r.Amount == 0 || !lowerHex64(r.Asset) || !lowerHex64(r.TxID) || checkAddress(r.Address) != nil {
			t.Fatalf("accepted %+v", r)
		}
	})
}

func FuzzDecodeListBalances(f *testing.F) {
	f.Add([]byte(`{"address":"bm1qxyz","asset":"` + hexLower + `"}`))
	f.Add([]byte(`{"address":"bm1 qxyz\n","asset":"` + hexLower + `"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeListBalances(body)
		checkDecodeErr(t, err)
		if err != nil {
			return
		}
		if r.Address == "" || len(r.Address) > maxAddressLen || strings.ContainsAny(r.Address, " \t\r\n") || !lowerHex64(r.Asset) {
			t.Fatalf("accepted %+v", r)
		}
	})
}
