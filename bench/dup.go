package bench

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bufferd/bufferd/storage"
)

// Grant is one UTXO a client was granted and the span in which it certainly
// held it: from the moment the grant's answer arrived to the moment the
// release was sent (or the hold's earliest possible end). Times are taken on
// the load generator's clock, which is the API's when they share a machine.
type Grant struct {
	Scenario string
	Client   int
	Pool     int64
	Hash     string
	// ID and Fence of the reservation; empty and 0 for a legacy grant.
	ID    string
	Fence int64
	// From is when the grant's answer arrived.
	From time.Time
	// Until is when the holder certainly still held it: when its release was
	// sent, or a little before its expiry. Zero means it held it past the
	// end of the run.
	Until time.Time
}

// endBy lowers the end of g's certain hold to t.
func (g *Grant) endBy(t time.Time) {
	if g.Until.IsZero() || t.Before(g.Until) {
		g.Until = t
	}
}

// holdsAt reports whether g certainly held its UTXO at t.
func (g *Grant) holdsAt(t time.Time) bool {
	return !t.Before(g.From) && (g.Until.IsZero() || t.Before(g.Until))
}

// Duplicate is one UTXO found in two holds at once (or one fence given to
// two reservations).
type Duplicate struct {
	// Source is "client" or "journal".
	Source string
	Pool   int64
	Hash   string
	// A and B are the two reservations (ids, or the legacy clients).
	A, B   string
	Detail string
}

func (d Duplicate) String() string {
	return fmt.Sprintf("%s: pool %d utxo %s held by %s and %s: %s", d.Source, d.Pool, d.Hash, d.A, d.B, d.Detail)
}

func (g *Grant) name() string {
	if g.ID != "" {
		return "reservation " + g.ID
	}
	return fmt.Sprintf("legacy grant to client %d (%s)", g.Client, g.Scenario)
}

// CheckGrants returns every pair of grants that certainly held the same UTXO
// at the same time: the later one's answer arrived before the earlier one's
// release was sent (or before it could have expired); and every fence that
// two reservations of one pool were given.
func CheckGrants(grants []*Grant) []Duplicate {
	type key struct {
		pool int64
		hash string
	}
	byUTXO := map[key][]*Grant{}
	fences := map[[2]int64]*Grant{}
	var dups []Duplicate
	for _, g := range grants {
		k := key{g.Pool, g.Hash}
		byUTXO[k] = append(byUTXO[k], g)
		if g.Fence == 0 {
			continue
		}
		fk := [2]int64{g.Pool, g.Fence}
		if o := fences[fk]; o != nil && o.ID != g.ID {
			dups = append(dups, Duplicate{Source: "client", Pool: g.Pool, Hash: g.Hash, A: o.name(), B: g.name(),
				Detail: fmt.Sprintf("both were given fence %d", g.Fence)})
		} else if o == nil {
			fences[fk] = g
		}
	}
	for k, gs := range byUTXO {
		slices.SortFunc(gs, func(a, b *Grant) int { return a.From.Compare(b.From) })
		// longest is the earlier grant whose certain hold ends last.
		var longest *Grant
		for _, g := range gs {
			distinct := longest != nil && (g.ID == "" || g.ID != longest.ID)
			if distinct && longest.holdsAt(g.From) && g.holdsAt(g.From) {
				dups = append(dups, Duplicate{Source: "client", Pool: k.pool, Hash: k.hash, A: longest.name(), B: g.name(),
					Detail: fmt.Sprintf("the second grant arrived %s before the first holder let go", until(longest, g.From))})
			}
			if longest == nil || !longest.Until.IsZero() && (g.Until.IsZero() || g.Until.After(longest.Until)) {
				longest = g
			}
		}
	}
	sortDuplicates(dups)
	return dups
}

func until(g *Grant, t time.Time) string {
	if g.Until.IsZero() {
		return "at any time"
	}
	return g.Until.Sub(t).Round(time.Microsecond).String()
}

func sortDuplicates(dups []Duplicate) {
	slices.SortFunc(dups, func(a, b Duplicate) int {
		return cmp.Or(cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.Hash, b.Hash), cmp.Compare(a.A, b.A), cmp.Compare(a.B, b.B))
	})
}

// JournalRow is a reservation as the PostgreSQL journal recorded it.
type JournalRow struct {
	ID     string
	Pool   int64
	Fence  int64
	Hashes []string // the row's hashes column
	// Holdings are the UTXOs reservation_utxos lists for it: what the
	// service finds a UTXO's holders by (counts, chain settlement). nil when
	// not read; readJournal always reads them.
	Holdings  []string
	State     string
	CreatedAt time.Time // when Redis granted it (Redis clock, milliseconds)
	ExpiresAt time.Time // its last known expiry
	UpdatedAt time.Time // its last journal write (before Redis applied it)
}

// end is when the row stopped holding its UTXOs as far as the journal tells:
// its expiry, or for an ended reservation (released, expired, spent,
// invalidated) its last write if earlier. lockmgr journals a release or a
// settlement before Redis frees the UTXOs, so the next holder's grant comes
// after that write.
func (r JournalRow) end() time.Time {
	switch r.State {
	case storage.ResHeld, storage.ResSubmitted:
		return r.ExpiresAt
	}
	if r.UpdatedAt.Before(r.ExpiresAt) {
		return r.UpdatedAt
	}
	return r.ExpiresAt
}

// CheckJournal returns every UTXO that two journal rows of one pool held at
// once: ordered by fence (the order Redis granted them in), a row created
// more than tolerance before the end of an earlier row of the same UTXO.
// The tolerance covers the millisecond resolution of Redis's clock and the
// skew between Redis's and the API's clocks. A row's UTXOs are those of its
// hashes column and of reservation_utxos together; a row whose
// reservation_utxos (when read) disagree with its hashes is returned too,
// since the service would count or settle it by the wrong UTXOs.
func CheckJournal(rows []JournalRow, tolerance time.Duration) []Duplicate {
	type key struct {
		pool int64
		hash string
	}
	byUTXO := map[key][]*JournalRow{}
	var dups []Duplicate
	for i := range rows {
		r := &rows[i]
		held := slices.Clone(r.Hashes)
		if r.Holdings != nil {
			a, b := slices.Sorted(slices.Values(r.Hashes)), slices.Sorted(slices.Values(r.Holdings))
			if !slices.Equal(a, b) {
				dups = append(dups, Duplicate{Source: "journal", Pool: r.Pool, Hash: strings.Join(a, ","),
					A: fmt.Sprintf("reservation %s (fence %d, %s)", r.ID, r.Fence, r.State), B: "reservation_utxos",
					Detail: fmt.Sprintf("reservation_utxos lists %v for it, its hashes are %v", b, a)})
			}
			held = append(held, r.Holdings...)
		}
		slices.Sort(held)
		for _, h := range slices.Compact(held) {
			k := key{r.Pool, h}
			byUTXO[k] = append(byUTXO[k], r)
		}
	}
	for k, rs := range byUTXO {
		slices.SortFunc(rs, func(a, b *JournalRow) int { return cmp.Compare(a.Fence, b.Fence) })
		var longest *JournalRow
		for _, r := range rs {
			if longest != nil && r.CreatedAt.Add(tolerance).Before(longest.end()) {
				dups = append(dups, Duplicate{Source: "journal", Pool: k.pool, Hash: k.hash,
					A: fmt.Sprintf("reservation %s (fence %d, %s)", longest.ID, longest.Fence, longest.State),
					B: fmt.Sprintf("reservation %s (fence %d, %s)", r.ID, r.Fence, r.State),
					Detail: fmt.Sprintf("the second was created %s before the first ended",
						longest.end().Sub(r.CreatedAt).Round(time.Microsecond))})
			}
			if longest == nil || r.end().After(longest.end()) {
				longest = r
			}
		}
	}
	sortDuplicates(dups)
	return dups
}

// readJournal reads the journal rows of pools from the database at url, with
// what reservation_utxos lists for each.
func readJournal(ctx context.Context, url string, pools []int64) ([]JournalRow, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("bench: journal: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	rows, err := conn.Query(ctx, `SELECT r.id, r.pool_id, r.fence, r.hashes, r.state, r.created_at, r.expires_at, r.updated_at,
		ARRAY(SELECT ru.hash FROM reservation_utxos ru WHERE ru.reservation_id = r.id AND ru.pool_id = r.pool_id)
		FROM reservations r WHERE r.pool_id = ANY($1)`, pools)
	if err != nil {
		return nil, fmt.Errorf("bench: journal: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (JournalRow, error) {
		var r JournalRow
		var hashes string
		err := row.Scan(&r.ID, &r.Pool, &r.Fence, &hashes, &r.State, &r.CreatedAt, &r.ExpiresAt, &r.UpdatedAt, &r.Holdings)
		r.Hashes = storage.SplitHashes(hashes)
		if r.Holdings == nil {
			r.Holdings = []string{} // read, and none
		}
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("bench: journal: %w", err)
	}
	return out, nil
}
