package lockmgr

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Reservation ids are 32 hex characters (16 bytes): a marker byte, the pool
// id as an unsigned varint, and random bytes for the rest. The API finds the
// Redis keys of a reservation from its id alone, without reading the
// journal. Ids minted before the marker existed are fully random; PoolOfID
// may take one in 256 of them for an id of some pool, so a caller that finds
// no reservation under the pool PoolOfID names must look in the journal.
const (
	idBytes  = 16
	idMarker = 0xb1
	// minRandomBytes is the least randomness an id keeps (pools with ids
	// up to 2^49 leave at least 8 random bytes).
	minRandomBytes = 8
)

// newID returns a reservation id of pool.
func newID(pool int64) (string, error) {
	var b [idBytes]byte
	b[0] = idMarker
	n := 1 + binary.PutUvarint(b[1:], uint64(pool))
	if pool <= 0 || idBytes-n < minRandomBytes {
		return "", fmt.Errorf("%w: pool id %d", ErrBadRequest, pool)
	}
	if _, err := rand.Read(b[n:]); err != nil {
		return "", fmt.Errorf("lockmgr: random id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// PoolOfID returns the pool an id names, if it has the shape of one minted
// by this package; see the note above on older ids.
func PoolOfID(id string) (int64, bool) {
	if len(id) != 2*idBytes {
		return 0, false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return 0, false // ids are lower-case hex
		}
	}
	var b [idBytes]byte
	if _, err := hex.Decode(b[:], []byte(id)); err != nil || b[0] != idMarker {
		return 0, false
	}
	pool, n := binary.Uvarint(b[1:])
	var canonical [binary.MaxVarintLen64]byte
	if n <= 0 || idBytes-1-n < minRandomBytes || pool == 0 || binary.PutUvarint(canonical[:], pool) != n {
		return 0, false // not as newID writes it
	}
	return int64(pool), true
}

// newNonce returns 16 random bytes as 32 hex characters.
func newNonce() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("lockmgr: random nonce: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// NewLoadID names a new load of a pool into Redis (Snapshot.Load).
func NewLoadID() (string, error) { return newNonce() }
