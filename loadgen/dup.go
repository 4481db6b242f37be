package loadgen

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Hold is what a client knows for certain of one grant: the reservation was
// live at least from when its grant answer arrived (Granted) until its
// release was sent (Released; zero while the client still holds it).
type Hold struct {
	Hash     string
	ID       string
	Granted  time.Time
	Released time.Time
}

// Holds collects the grants of a scenario; safe for concurrent use.
type Holds struct {
	mu    sync.Mutex
	holds []*Hold
}

// Grant records a grant answered at t and returns it, to be released later.
func (h *Holds) Grant(hash, id string, t time.Time) *Hold {
	g := &Hold{Hash: hash, ID: id, Granted: t}
	h.mu.Lock()
	h.holds = append(h.holds, g)
	h.mu.Unlock()
	return g
}

// Release records that the release of g was sent at t.
func (h *Holds) Release(g *Hold, t time.Time) {
	h.mu.Lock()
	g.Released = t
	h.mu.Unlock()
}

// Len is the number of grants.
func (h *Holds) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.holds)
}

// Duplicates returns the pairs of grants of one UTXO that two clients
// certainly held at the same time: the later one was granted before the
// earlier one's release was even sent.
func (h *Holds) Duplicates() []string {
	h.mu.Lock()
	byHash := map[string][]Hold{}
	for _, g := range h.holds {
		byHash[g.Hash] = append(byHash[g.Hash], *g)
	}
	h.mu.Unlock()
	var out []string
	for hash, gs := range byHash {
		slices.SortFunc(gs, func(a, b Hold) int { return a.Granted.Compare(b.Granted) })
		for i := 1; i < len(gs); i++ {
			prev, cur := gs[i-1], gs[i]
			if prev.Released.IsZero() || cur.Granted.Before(prev.Released) {
				out = append(out, fmt.Sprintf("utxo %s: %s granted at %s while %s held it (release sent %s)",
					hash, cur.ID, cur.Granted.Format(time.RFC3339Nano), prev.ID, fmtTime(prev.Released)))
			}
		}
	}
	return out
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format(time.RFC3339Nano)
}

// JournalRow is a reservation as the journal (PostgreSQL) recorded it.
type JournalRow struct {
	ID        string
	Fence     int64
	Hashes    []string
	State     string
	CreatedAt time.Time
	ExpiresAt time.Time
	UpdatedAt time.Time
}

// liveUntil is when the journal says the reservation stopped holding: when
// it ended (released, spent, invalidated: its last update), or its expiry.
func (r JournalRow) liveUntil() time.Time {
	switch r.State {
	case "released", "spent", "invalidated":
		return r.UpdatedAt
	default: // held, submitted, expired
		return r.ExpiresAt
	}
}

// JournalDuplicates returns the UTXOs the journal shows in two reservations at
// once: ordered by fence, a reservation created before the previous holder of
// the same UTXO stopped holding it (by more than tolerance, for the clocks of
// Redis and the API processes).
func JournalDuplicates(rows []JournalRow, tolerance time.Duration) []string {
	byHash := map[string][]JournalRow{}
	for _, r := range rows {
		for _, h := range r.Hashes {
			byHash[h] = append(byHash[h], r)
		}
	}
	var out []string
	for hash, rs := range byHash {
		slices.SortFunc(rs, func(a, b JournalRow) int { return cmp.Compare(a.Fence, b.Fence) })
		for i := 1; i < len(rs); i++ {
			prev, cur := rs[i-1], rs[i]
			if cur.CreatedAt.Add(tolerance).Before(prev.liveUntil()) {
				out = append(out, fmt.Sprintf("utxo %s: reservation %s (fence %d) created %s while %s (fence %d, %s) held it until %s",
					hash, cur.ID, cur.Fence, cur.CreatedAt.Format(time.RFC3339Nano), prev.ID, prev.Fence, prev.State,
					prev.liveUntil().Format(time.RFC3339Nano)))
			}
		}
	}
	return out
}
