package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/bufferd/bufferd/lockmgr"
)

// Limits of the v1 reservation requests.
const (
	maxReserveHashes = 100
	maxReserveCount  = 100
	defaultTTLSecs   = 600
	maxTTLSecs       = 3600
	maxWaitSecs      = 30
	maxOwnerLen      = 64
	maxIdemKeyLen    = 128
)

// Messages shown to clients for bad reservation input.
var (
	errBadJSON       = badInput("request body must be one JSON object")
	errUnknownField  = badInput("request body has an unknown or repeated field")
	errBadPoolRef    = badInput(`give either "pool" or both "asset" and "program"`)
	errBadPoolField  = badInput("pool must be a positive integer")
	errBadMode       = badInput(`give exactly one of "hashes", "count" or "amount"`)
	errBadHashes     = badInput("hashes must be a list of 1 to 100 distinct 64-character hex hashes")
	errBadCount      = badInput("count must be an integer from 1 to 100")
	errBadReserveAmt = badInput("amount must be a positive integer up to 18446744073709551615 (a JSON number or a decimal string)")
	errBadCombine    = badInput(`combine must be a boolean and needs "amount"`)
	errBadTTL        = badInput("ttl_seconds must be an integer from 1 to 3600")
	errBadWait       = badInput("wait_seconds must be an integer from 0 to 30")
	errBadOwner      = badInput(`owner must be at most 64 printable characters and not "legacy"`)
	errBadIdemKey    = badInput("Idempotency-Key must be 1 to 128 printable characters")
	errNeedTTL       = badInput("ttl_seconds is required")
	errNeedTxID      = badInput("tx_id is required")
)

// strictObject reads body as exactly one JSON object whose keys are all in
// allowed (compared exactly, each at most once) and returns the raw value of
// each key present. A null value counts as absent.
func strictObject(body []byte, allowed ...string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errBadJSON
	}
	out := make(map[string]json.RawMessage, len(allowed))
	seen := make(map[string]bool, len(allowed))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errBadJSON
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errBadJSON
		}
		known := false
		for _, a := range allowed {
			if key == a {
				known = true
				break
			}
		}
		if !known || seen[key] {
			return nil, errUnknownField
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errBadJSON
		}
		if !bytes.Equal(raw, []byte("null")) {
			out[key] = raw
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errBadJSON
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errBadJSON // trailing data
	}
	return out, nil
}

// field decodes the raw value of key into v when present; bad reports a wrong type or value.
func field(obj map[string]json.RawMessage, key string, v any, bad error) (bool, error) {
	raw, ok := obj[key]
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, bad
	}
	return true, nil
}

// intField decodes an optional integer field and checks lo <= n <= hi.
func intField(obj map[string]json.RawMessage, key string, lo, hi int64, bad error) (int64, bool, error) {
	var n int64
	ok, err := field(obj, key, &n, bad)
	if err != nil {
		return 0, ok, err
	}
	if ok && (n < lo || n > hi) {
		return 0, ok, bad
	}
	return n, ok, nil
}

// amountField decodes an optional amount: an integer from 1 to 2^64-1, as a
// JSON number or a decimal string, exactly (never through a float64).
func amountField(obj map[string]json.RawMessage, key string, bad error) (uint64, bool, error) {
	raw, ok := obj[key]
	if !ok {
		return 0, false, nil
	}
	s := string(raw)
	if len(s) >= 2 && s[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, true, bad
		}
	}
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, true, bad
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, true, bad
	}
	return n, true, nil
}

// isPrintable reports whether s is only printable ASCII (spaces included).
func isPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// reserveReq is a validated POST /v1/reservations body.
type reserveReq struct {
	PoolID  int64         `json:"pool,omitempty"`    // set when the pool was given by id
	Asset   string        `json:"asset,omitempty"`   // set (with Program) when the pool was given by asset and program
	Program string        `json:"program,omitempty"` // ...
	Hashes  []string      `json:"hashes,omitempty"`  // lower case, distinct
	Count   int           `json:"count,omitempty"`
	Amount  uint64        `json:"amount,omitempty"`
	Combine bool          `json:"combine,omitempty"`
	Owner   string        `json:"owner"`
	TTL     time.Duration `json:"ttl"`
	Wait    time.Duration `json:"wait"`
}

// request is the lockmgr request of r in pool; with an idempotency key it
// carries r's fingerprint (its canonical form: decoded and encoded again).
func (r reserveReq) request(pool int64, idemKey string) lockmgr.Request {
	lr := lockmgr.Request{
		PoolID:         pool,
		Hashes:         r.Hashes,
		Count:          r.Count,
		Amount:         r.Amount,
		Combine:        r.Combine,
		Owner:          r.Owner,
		TTL:            r.TTL,
		IdempotencyKey: idemKey,
	}
	if idemKey != "" {
		canonical, _ := json.Marshal(r) // a struct of plain fields always encodes
		lr.Fingerprint = lockmgr.Fingerprint("POST", "/v1/reservations", r.Owner, canonical)
	}
	return lr
}

// decodeReserve decodes and validates a POST /v1/reservations body: the pool
// (by id, or by asset and program), exactly one of hashes, count and amount,
// and the optional combine, ttl_seconds, owner and wait_seconds. Unknown fields
// are refused.
func decodeReserve(body []byte) (reserveReq, error) {
	obj, err := strictObject(body, "pool", "asset", "program", "hashes", "count", "amount", "combine",
		"ttl_seconds", "owner", "wait_seconds")
	if err != nil {
		return reserveReq{}, err
	}
	var req reserveReq

	// Pool: by id, or by asset and program.
	_, hasAsset := obj["asset"]
	_, hasProgram := obj["program"]
	pool, hasPool, err := intField(obj, "pool", 1, 1<<63-1, errBadPoolField)
	switch {
	case err != nil:
		return reserveReq{}, err
	case hasPool && (hasAsset || hasProgram), !hasPool && (!hasAsset || !hasProgram):
		return reserveReq{}, errBadPoolRef
	case hasPool:
		req.PoolID = pool
	default:
		var ap assetProgram
		if _, err := field(obj, "asset", &ap.Asset, errBadAsset); err != nil {
			return reserveReq{}, err
		}
		if _, err := field(obj, "program", &ap.Program, errBadProgram); err != nil {
			return reserveReq{}, err
		}
		if ap, err = ap.normalize(); err != nil {
			return reserveReq{}, err
		}
		req.Asset, req.Program = ap.Asset, ap.Program
	}

	// Mode: exactly one of hashes, count, amount.
	var hashes []string
	hasHashes, err := field(obj, "hashes", &hashes, errBadHashes)
	if err != nil {
		return reserveReq{}, err
	}
	count, hasCount, err := intField(obj, "count", 1, maxReserveCount, errBadCount)
	if err != nil {
		return reserveReq{}, err
	}
	amount, hasAmount, err := amountField(obj, "amount", errBadReserveAmt)
	if err != nil {
		return reserveReq{}, err
	}
	modes := 0
	for _, has := range []bool{hasHashes, hasCount, hasAmount} {
		if has {
			modes++
		}
	}
	if modes != 1 {
		return reserveReq{}, errBadMode
	}
	switch {
	case hasHashes:
		if len(hashes) == 0 || len(hashes) > maxReserveHashes {
			return reserveReq{}, errBadHashes
		}
		seen := make(map[string]bool, len(hashes))
		req.Hashes = make([]string, len(hashes))
		for i, h := range hashes {
			if req.Hashes[i], err = normHash64(h, errBadHashes); err != nil {
				return reserveReq{}, err
			}
			if seen[req.Hashes[i]] {
				return reserveReq{}, errBadHashes
			}
			seen[req.Hashes[i]] = true
		}
	case hasCount:
		req.Count = int(count)
	default:
		req.Amount = amount
	}
	if _, err := field(obj, "combine", &req.Combine, errBadCombine); err != nil {
		return reserveReq{}, err
	}
	if req.Combine && !hasAmount {
		return reserveReq{}, errBadCombine
	}

	ttl, hasTTL, err := intField(obj, "ttl_seconds", 1, maxTTLSecs, errBadTTL)
	if err != nil {
		return reserveReq{}, err
	}
	if !hasTTL {
		ttl = defaultTTLSecs
	}
	req.TTL = time.Duration(ttl) * time.Second

	wait, _, err := intField(obj, "wait_seconds", 0, maxWaitSecs, errBadWait)
	if err != nil {
		return reserveReq{}, err
	}
	req.Wait = time.Duration(wait) * time.Second

	if _, err := field(obj, "owner", &req.Owner, errBadOwner); err != nil {
		return reserveReq{}, err
	}
	if len(req.Owner) > maxOwnerLen || !isPrintable(req.Owner) || req.Owner == lockmgr.LegacyOwner {
		return reserveReq{}, errBadOwner
	}
	return req, nil
}

// checkIdempotencyKey validates the optional Idempotency-Key header (empty means none).
func checkIdempotencyKey(k string) error {
	if len(k) > maxIdemKeyLen || !isPrintable(k) {
		return errBadIdemKey
	}
	return nil
}

// decodeExtend decodes and validates a POST /v1/reservations/:id/extend body
// {"ttl_seconds"} (required, 1..3600).
func decodeExtend(body []byte) (time.Duration, error) {
	obj, err := strictObject(body, "ttl_seconds")
	if err != nil {
		return 0, err
	}
	ttl, ok, err := intField(obj, "ttl_seconds", 1, maxTTLSecs, errBadTTL)
	switch {
	case err != nil:
		return 0, err
	case !ok:
		return 0, errNeedTTL
	}
	return time.Duration(ttl) * time.Second, nil
}

// decodeSubmit decodes and validates a POST /v1/reservations/:id/submit body
// {"tx_id"} and returns the lower-case transaction id.
func decodeSubmit(body []byte) (string, error) {
	obj, err := strictObject(body, "tx_id")
	if err != nil {
		return "", err
	}
	var tx string
	ok, err := field(obj, "tx_id", &tx, errBadTxID)
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", errNeedTxID
	}
	return normHash64(tx, errBadTxID)
}
