package lockmgr

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Chain states of a UTXO, as the syncer keeps them (see the package doc).
const (
	UTXOAvailable   = "available"
	UTXOImmature    = "immature"
	UTXOSpent       = "spent"
	UTXOInvalidated = "invalidated"
)

// UTXOState is the chain state of one UTXO of a reservation.
type UTXOState struct {
	Hash    string
	State   string // one of the UTXO* states
	SpentTx string // the spending transaction of a spent UTXO, when known
}

// NextState applies the chain's events to a reservation: given its state,
// its transaction, its expiry and the chain states of its UTXOs at now, it
// returns the state it moves to and the transaction to record with it (the
// package doc has the table). A reservation that does not move gets its own
// state and transaction back.
func NextState(state, txID string, expiresAt, now time.Time, utxos []UTXOState) (string, string) {
	var invalid, spent bool
	spender := "" // the first known spender
	foreign := false
	for _, u := range utxos {
		switch u.State {
		case UTXOInvalidated:
			invalid = true
		case UTXOSpent:
			spent = true
			if u.SpentTx != "" {
				if spender == "" {
					spender = u.SpentTx
				}
				if state == StateSubmitted && u.SpentTx != txID {
					foreign = true
				}
			}
		}
	}
	switch state {
	case StateHeld, StateSubmitted:
		switch {
		case !expiresAt.After(now):
			return StateExpired, txID
		case invalid:
			return StateInvalidated, txID
		case !spent:
			return state, txID
		case state == StateHeld:
			return StateSpent, spender
		case foreign:
			// Another transaction took a UTXO of the submitted one: that one
			// can no longer be mined.
			return StateInvalidated, txID
		default:
			return StateSpent, txID
		}
	case StateSpent:
		switch {
		case invalid:
			return StateInvalidated, txID
		case !spent:
			// Its spend failed or vanished: the UTXOs are back on chain.
			return StateReleased, txID
		}
	}
	return state, txID
}

// Fingerprint returns the fingerprint of a request for idempotency: a digest
// of its method, route, owner and canonical body (a client's request decoded
// and encoded again, so that spacing and key order do not count).
func Fingerprint(method, route, owner string, body []byte) string {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(method), []byte(route), []byte(owner), body} {
		h.Write([]byte{byte(len(part) >> 24), byte(len(part) >> 16), byte(len(part) >> 8), byte(len(part))})
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// KeyDigest returns the digest an idempotency key is stored under.
func KeyDigest(key string) string {
	if key == "" {
		return ""
	}
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:16])
}
