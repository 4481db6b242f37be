package handlers

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/storage"
)

// Input limits.
const (
	hashLen       = 64    // hex characters of a UTXO hash, asset id or transaction id
	maxProgramLen = 20000 // hex characters of a control program
	maxAddressLen = 256
	defaultLimit  = 100
	maxLimit      = 1000
	maxStart      = math.MaxInt32
)

// inputError is a client mistake; its message is safe to show.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }

func badInput(msg string) error { return &inputError{msg: msg} }

// Messages shown to clients for bad input.
var (
	errBadBody    = badInput("invalid request body")
	errBadHash    = badInput("hash must be 64 hex characters")
	errBadAsset   = badInput("asset must be 64 hex characters")
	errBadProgram = badInput("program must be non-empty hex of even length")
	errBadSortBy  = badInput(`sort.by must be "amount" or empty`)
	errBadOrder   = badInput(`sort.order must be "asc", "desc" or empty`)
	errBadStart   = badInput("start must be a non-negative integer")
	errBadLimit   = badInput("limit must be a positive integer")
	// errBadPageLimit is v1's: it refuses a limit over maxLimit, not only a zero one.
	errBadPageLimit = badInput("limit must be an integer from 1 to 1000")
	errBadAddress   = badInput("address is required: at most 256 printable characters without spaces")
	errBadAmount    = badInput("amount must be a non-zero integer")
	errBadTxID      = badInput("tx_id must be 64 hex characters")
	errBadState     = badInput(`state must be "available", "reserved", "spent", "invalidated", "immature" or empty`)
	errBadCursor    = badInput("cursor is invalid")
	errBadPoolID    = badInput("pool id must be a positive integer")
)

// isHex reports whether s is non-empty and only hex digits (either case).
func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// normHash64 checks a 64-character hex string and returns it in lower case.
func normHash64(s string, bad error) (string, error) {
	if len(s) != hashLen || !isHex(s) {
		return "", bad
	}
	return strings.ToLower(s), nil
}

// normProgram checks a control program (non-empty, even-length hex) and returns it in lower case.
func normProgram(s string) (string, error) {
	if len(s) > maxProgramLen || len(s)%2 != 0 || !isHex(s) {
		return "", errBadProgram
	}
	return strings.ToLower(s), nil
}

// checkAddress accepts 1..256 printable ASCII characters without spaces.
func checkAddress(s string) error {
	if s == "" || len(s) > maxAddressLen {
		return errBadAddress
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return errBadAddress
		}
	}
	return nil
}

// decodeJSON unmarshals a request body; unknown fields are allowed.
func decodeJSON(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return errBadBody
	}
	return nil
}

// assetProgram is the pool selector of several legacy and v1 requests.
type assetProgram struct {
	Asset   string `json:"asset"`
	Program string `json:"program"`
}

func (ap assetProgram) normalize() (assetProgram, error) {
	var err error
	if ap.Asset, err = normHash64(ap.Asset, errBadAsset); err != nil {
		return assetProgram{}, err
	}
	if ap.Program, err = normProgram(ap.Program); err != nil {
		return assetProgram{}, err
	}
	return ap, nil
}

// decodeAssetProgram decodes and validates {"asset","program"} (update-base, POST /v1/pools).
func decodeAssetProgram(body []byte) (assetProgram, error) {
	var req assetProgram
	if err := decodeJSON(body, &req); err != nil {
		return assetProgram{}, err
	}
	return req.normalize()
}

// createPoolReq is a validated POST /v1/pools body.
type createPoolReq struct {
	assetProgram
	Options storage.PoolOptions
}

var (
	errBadFromHeight  = badInput("from_height must be an integer from 0 to 2^63-1")
	errBadUnconfirmed = badInput("unconfirmed must be a boolean")
)

// decodeCreatePool decodes and validates {"asset","program","from_height"?,"unconfirmed"?}.
func decodeCreatePool(body []byte) (createPoolReq, error) {
	obj, err := strictObject(body, "asset", "program", "from_height", "unconfirmed")
	if err != nil {
		return createPoolReq{}, err
	}
	var req createPoolReq
	if _, err := field(obj, "asset", &req.Asset, errBadAsset); err != nil {
		return createPoolReq{}, err
	}
	if _, err := field(obj, "program", &req.Program, errBadProgram); err != nil {
		return createPoolReq{}, err
	}
	if req.assetProgram, err = req.normalize(); err != nil {
		return createPoolReq{}, err
	}
	if req.Options.FromHeight, _, err = intField(obj, "from_height", 0, 1<<63-1, errBadFromHeight); err != nil {
		return createPoolReq{}, err
	}
	var unconfirmed bool
	if ok, err := field(obj, "unconfirmed", &unconfirmed, errBadUnconfirmed); err != nil {
		return createPoolReq{}, err
	} else if ok {
		req.Options.Unconfirmed = &unconfirmed
	}
	return req, nil
}

// listUTXOsReq is the legacy list-utxos body.
type listUTXOsReq struct {
	assetProgram
	Sort struct {
		By    string `json:"by"`
		Order string `json:"order"`
	} `json:"sort"`
}

// listUTXOsQuery is a validated list-utxos request.
type listUTXOsQuery struct {
	Asset   string
	Program string
	Desc    bool
}

// decodeListUTXOs decodes and validates a legacy list-utxos body. The order
// defaults to descending, as the original frontend asks.
func decodeListUTXOs(body []byte) (listUTXOsQuery, error) {
	var req listUTXOsReq
	if err := decodeJSON(body, &req); err != nil {
		return listUTXOsQuery{}, err
	}
	ap, err := req.assetProgram.normalize()
	if err != nil {
		return listUTXOsQuery{}, err
	}
	if req.Sort.By != "" && req.Sort.By != "amount" {
		return listUTXOsQuery{}, errBadSortBy
	}
	q := listUTXOsQuery{Asset: ap.Asset, Program: ap.Program}
	switch req.Sort.Order {
	case "", "desc":
		q.Desc = true
	case "asc":
	default:
		return listUTXOsQuery{}, errBadOrder
	}
	return q, nil
}

// decodeUpdateUTXO decodes and validates a legacy update-utxo body; it returns the lower-case hash.
func decodeUpdateUTXO(body []byte) (string, error) {
	var req struct {
		Hash string `json:"hash"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return "", err
	}
	return normHash64(req.Hash, errBadHash)
}

// listBalancesReq is the legacy list-balances body.
type listBalancesReq struct {
	Address string `json:"address"`
	Asset   string `json:"asset"`
}

// decodeListBalances decodes and validates a legacy list-balances body.
func decodeListBalances(body []byte) (listBalancesReq, error) {
	var req listBalancesReq
	if err := decodeJSON(body, &req); err != nil {
		return listBalancesReq{}, err
	}
	if err := checkAddress(req.Address); err != nil {
		return listBalancesReq{}, err
	}
	var err error
	if req.Asset, err = normHash64(req.Asset, errBadAsset); err != nil {
		return listBalancesReq{}, err
	}
	return req, nil
}

// updateBalanceReq is the legacy update-balance body.
type updateBalanceReq struct {
	Address string `json:"address"`
	Asset   string `json:"asset"`
	Amount  int64  `json:"amount"`
	TxID    string `json:"tx_id"`
}

// decodeUpdateBalance decodes and validates a legacy update-balance body.
func decodeUpdateBalance(body []byte) (updateBalanceReq, error) {
	var req updateBalanceReq
	if err := decodeJSON(body, &req); err != nil {
		return updateBalanceReq{}, err
	}
	if err := checkAddress(req.Address); err != nil {
		return updateBalanceReq{}, err
	}
	var err error
	if req.Asset, err = normHash64(req.Asset, errBadAsset); err != nil {
		return updateBalanceReq{}, err
	}
	if req.Amount == 0 {
		return updateBalanceReq{}, errBadAmount
	}
	if req.TxID, err = normHash64(req.TxID, errBadTxID); err != nil {
		return updateBalanceReq{}, err
	}
	return req, nil
}

// parseStart parses the legacy "start" query parameter (default 0).
func parseStart(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > maxStart {
		return 0, errBadStart
	}
	return int(n), nil
}

// parseLimit parses a "limit" query parameter: default 100; above 1000 it is
// clamped (legacy) or refused (strict, v1).
func parseLimit(s string, strict bool) (int, error) {
	if s == "" {
		return defaultLimit, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	switch {
	case strict && (err != nil || n == 0 || n > maxLimit):
		return 0, errBadPageLimit
	case err != nil || n == 0:
		return 0, errBadLimit
	}
	if n > maxLimit {
		n = maxLimit
	}
	return int(n), nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parsePoolID parses a pool id path parameter.
func parsePoolID(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || !isDigits(s) {
		return 0, errBadPoolID
	}
	return n, nil
}

// parseCursor parses the opaque v1 cursor: empty (start) or the last id seen.
// pageQuery reads the limit and cursor of a keyset-paginated v1 list.
func pageQuery(c *fiber.Ctx) (limit int, cursor int64, err error) {
	if limit, err = parseLimit(c.Query("limit"), true); err != nil {
		return 0, 0, err
	}
	cursor, err = parseCursor(c.Query("cursor"))
	return limit, cursor, err
}

func parseCursor(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || !isDigits(s) {
		return 0, errBadCursor
	}
	return n, nil
}
