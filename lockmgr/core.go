package lockmgr

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/lockmgr/internal/scripts"
)

// core is what every concern of a Manager shares: the Redis connection, the
// key prefix (the layout under it is scripts.KeysOf, documented in
// internal/scripts/prelude.lua) and the leadership epoch its sync writes
// carry (see Manager.Fenced). The concerns of one Manager point at one core,
// so they cannot disagree on the epoch.
type core struct {
	rdb    redis.UniversalClient
	prefix string
	epoch  int64 // leadership epoch of the sync job writing through it, 0 for none
}

// keys returns the keys of pool (their layout is in internal/scripts).
func (c *core) keys(pool int64) scripts.Keys { return scripts.KeysOf(c.prefix, pool) }

// scriptError maps the scripts' error replies to sentinel errors.
func scriptError(err error) error {
	// Redis may put its generic "ERR " code before a script's error text.
	msg := strings.TrimPrefix(err.Error(), "ERR ")
	word, rest, _ := strings.Cut(msg, " ")
	switch word {
	case "LOCKED":
		return fmt.Errorf("%w: %s", ErrLocked, rest)
	case "UNKNOWN":
		return fmt.Errorf("%w: %s", ErrUnknownUTXO, rest)
	case "UNAVAILABLE":
		return ErrNoUTXOAvailable
	case "NOTLOADED":
		return ErrRebuilding
	case "NOTFOUND":
		return ErrNotFound
	case "NOTHELD":
		return ErrNotHeld
	case "LIFETIME":
		return ErrLifetime
	case "TXMISMATCH":
		return ErrTxMismatch
	case "STALE":
		return ErrStaleSnapshot
	case "IDEMMISMATCH":
		return ErrKeyReused
	case "STALEEPOCH":
		return fmt.Errorf("%w: %s", ErrStaleEpoch, rest)
	}
	return fmt.Errorf("lockmgr: redis: %w", err)
}

// fieldsOf reads a flat {name, value, ...} reply.
func fieldsOf(raw []any) (map[string]string, error) {
	if len(raw)%2 != 0 {
		return nil, fmt.Errorf("lockmgr: reply of %d values is not a list of fields", len(raw))
	}
	f := make(map[string]string, len(raw)/2)
	for i := 0; i < len(raw); i += 2 {
		name, ok := raw[i].(string)
		if !ok {
			return nil, fmt.Errorf("lockmgr: bad field name %v in reply", raw[i])
		}
		switch v := raw[i+1].(type) {
		case string:
			f[name] = v
		case int64:
			f[name] = strconv.FormatInt(v, 10)
		default:
			return nil, fmt.Errorf("lockmgr: bad value of %s in reply: %v", name, raw[i+1])
		}
	}
	return f, nil
}

// resOf builds a reservation from the fields of a reply.
func resOf(pool int64, f map[string]string) (*Reservation, error) {
	fence, err1 := strconv.ParseInt(f["fence"], 10, 64)
	created, err2 := strconv.ParseInt(f["created"], 10, 64)
	expires, err3 := strconv.ParseInt(f["expires"], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil || f["id"] == "" {
		return nil, fmt.Errorf("lockmgr: bad reservation reply: %w", errors.Join(err, errors.New("fields "+fmt.Sprint(f))))
	}
	var hashes, amounts []string
	if f["hashes"] != "" {
		hashes, amounts = strings.Split(f["hashes"], ","), strings.Split(f["amounts"], ",")
	}
	if len(hashes) != len(amounts) {
		return nil, errors.New("lockmgr: bad reservation reply: hashes and amounts differ")
	}
	items := make([]Item, len(hashes))
	for i, h := range hashes {
		a, err := strconv.ParseUint(amounts[i], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("lockmgr: bad amount %q: %w", amounts[i], err)
		}
		items[i] = Item{Hash: h, Amount: a}
	}
	res := &Reservation{
		ID: f["id"], PoolID: pool, Fence: fence, Owner: f["owner"], State: f["state"], TxID: f["txid"], Items: items, Load: f["load"],
		CreatedAt: time.UnixMilli(created).UTC(), ExpiresAt: time.UnixMilli(expires).UTC(),
	}
	if ended, err := strconv.ParseInt(f["ended"], 10, 64); err == nil {
		res.UpdatedAt = time.UnixMilli(ended).UTC()
	}
	return res, nil
}

// pad20 writes an amount as the 20 decimal digits the scripts compare.
func pad20(a uint64) string {
	s := strconv.FormatUint(a, 10)
	return strings.Repeat("0", 20-len(s)) + s
}

// decodeItems reads a flat {hash, amount, ...} reply.
func decodeItems(raw []any) ([]Item, error) {
	items := make([]Item, 0, len(raw)/2)
	for i := 0; i+1 < len(raw); i += 2 {
		h, _ := raw[i].(string)
		as, _ := raw[i+1].(string)
		a, err := strconv.ParseUint(as, 10, 64)
		if h == "" || err != nil {
			return nil, fmt.Errorf("lockmgr: bad item in reply: %v %v", raw[i], raw[i+1])
		}
		items = append(items, Item{Hash: h, Amount: a})
	}
	return items, nil
}
