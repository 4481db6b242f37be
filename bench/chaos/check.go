package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bufferd/bufferd/bench"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
)

// Timing of a quiet point.
const (
	// indexTimeout bounds the wait for the syncer to reach the chain's tip.
	indexTimeout = 45 * time.Second
	// expiryBand: a reservation whose expiry is this close to the moment of
	// a check may have ended on one side and not yet on the other; its
	// UTXOs are left out of that check (the next attempt sees it ended).
	expiryBand = time.Second
	// settleAttempts and settlePause: a check that fails is repeated, and
	// reported only when it still fails after all of them (a sweep
	// interval apart at least).
	settleAttempts = 4
	settlePause    = 600 * time.Millisecond
	// journalTolerance is bench.CheckJournal's: Redis's millisecond clock.
	journalTolerance = 100 * time.Millisecond
)

// snapshot is what one check reads, per pool id.
type snapshot struct {
	truth   map[int64]map[string]bool     // unspent per the simulator
	free    map[int64]map[string]bool     // reservable: the free set in Redis
	journal map[int64]map[string][]string // live journal reservations holding each UTXO
	redis   map[int64]map[string][]string // live Redis reservations holding each UTXO
	held    map[string]bool               // live reservations that are held (not submitted)
	unsure  map[int64]map[string]bool     // UTXOs of reservations expiring about now
	counts  map[int64]storage.Counts      // GET /v1/pools
}

func newSnapshot() *snapshot {
	return &snapshot{truth: map[int64]map[string]bool{}, free: map[int64]map[string]bool{},
		journal: map[int64]map[string][]string{}, redis: map[int64]map[string][]string{}, held: map[string]bool{},
		unsure: map[int64]map[string]bool{}, counts: map[int64]storage.Counts{}}
}

func addTo(m map[int64]map[string][]string, pool int64, hash, id string) {
	if m[pool] == nil {
		m[pool] = map[string][]string{}
	}
	m[pool][hash] = append(m[pool][hash], id)
}

func mark(m map[int64]map[string]bool, pool int64, hash string) {
	if m[pool] == nil {
		m[pool] = map[string]bool{}
	}
	m[pool][hash] = true
}

// read takes a snapshot: the simulator first (it does not move at a quiet
// point), then the journal, Redis and the API's counts.
func read(ctx context.Context, d *deployment) (*snapshot, error) {
	s := newSnapshot()
	now := time.Now()
	for _, p := range d.pools {
		unspent, err := list(ctx, d, p, true)
		if err != nil {
			return nil, fmt.Errorf("chain: %w", err)
		}
		s.truth[p.ID] = map[string]bool{}
		for _, u := range unspent {
			s.truth[p.ID][u.Hash] = true
		}
	}
	if err := readJournal(ctx, d, s, now); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := readRedis(ctx, d, s, now); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	if err := readCounts(ctx, d, s); err != nil {
		return nil, fmt.Errorf("counts: %w", err)
	}
	return s, nil
}

// readJournal reads the live reservations of the journal and the UTXOs
// they hold.
func readJournal(ctx context.Context, d *deployment, s *snapshot, now time.Time) error {
	conn, err := pgx.Connect(ctx, d.dbURL)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	rows, err := conn.Query(ctx, `SELECT r.id, r.pool_id, r.state, r.expires_at, ru.hash FROM reservations r
		JOIN reservation_utxos ru ON ru.reservation_id = r.id
		WHERE r.state IN ('held', 'submitted') AND r.expires_at > $1 ORDER BY r.id`, now.Add(-expiryBand))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, state, hash string
		var pool int64
		var expires time.Time
		if err := rows.Scan(&id, &pool, &state, &expires, &hash); err != nil {
			return err
		}
		if expires.Before(now.Add(expiryBand)) {
			mark(s.unsure, pool, hash)
			continue
		}
		addTo(s.journal, pool, hash, id)
		s.held[id] = state == lockmgr.StateHeld
	}
	return rows.Err()
}

// readRedis reads each pool's free set and its live reservations.
func readRedis(ctx context.Context, d *deployment, s *snapshot, now time.Time) error {
	for _, p := range d.pools {
		free, err := d.locks.ListAvailable(ctx, p.ID, false, 0, 1<<30)
		if err != nil {
			return err
		}
		s.free[p.ID] = map[string]bool{}
		for _, it := range free {
			s.free[p.ID][it.Hash] = true
		}
		holds, err := d.locks.Holds(ctx, p.ID)
		if err != nil {
			return err
		}
		for id := range holds {
			r, err := d.locks.Get(ctx, p.ID, id)
			if errors.Is(err, lockmgr.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			for _, h := range r.Hashes() {
				if r.ExpiresAt.Before(now.Add(expiryBand)) {
					mark(s.unsure, p.ID, h)
					continue
				}
				addTo(s.redis, p.ID, h, id)
			}
		}
	}
	return nil
}

func readCounts(ctx context.Context, d *deployment, s *snapshot) error {
	var out struct {
		Pools []struct {
			ID     int64          `json:"id"`
			Counts storage.Counts `json:"counts"`
		} `json:"pools"`
	}
	var err error
	for i := range d.apis {
		if err = d.web.call(ctx, http.MethodGet, d.api(i)+"/v1/pools", nil).decode(&out); err == nil {
			break
		}
	}
	if err != nil {
		return err
	}
	for _, p := range out.Pools {
		s.counts[p.ID] = p.Counts
	}
	return nil
}

// evaluate checks a snapshot against the model: every unspent UTXO is
// reservable or held by exactly one live reservation (the same in the
// journal and in Redis), nothing else is reservable, a held reservation
// holds only unspent UTXOs, and the counts are what can be reserved.
func evaluate(round int, pools []poolInfo, s *snapshot) []violation {
	var out []violation
	for _, p := range pools {
		v := func(kind, format string, args ...any) {
			out = append(out, violation{Kind: kind, Round: round, Pool: p.ID, Detail: fmt.Sprintf(format, args...)})
		}
		truth, free, journal, redis, unsure := s.truth[p.ID], s.free[p.ID], s.journal[p.ID], s.redis[p.ID], s.unsure[p.ID]
		for _, u := range sortedKeys(truth) {
			if unsure[u] {
				continue
			}
			j, r, f := journal[u], redis[u], free[u]
			switch {
			case len(j) > 1:
				v(kindDoubled, "utxo %s is held by %d live reservations in the journal: %v", u, len(j), j)
			case len(r) > 1:
				v(kindDoubled, "utxo %s is held by %d live reservations in Redis: %v", u, len(r), r)
			case f && len(j)+len(r) > 0:
				v(kindDoubled, "utxo %s is reservable while held (journal %v, Redis %v)", u, j, r)
			case !f && len(j)+len(r) == 0:
				v(kindLost, "utxo %s is unspent on the chain but neither reservable nor held by a live reservation", u)
			case !f && len(j) == 0:
				v(kindLost, "utxo %s is held in Redis by %s, which the journal does not have live", u, r[0])
			case !f && len(r) == 0:
				v(kindLost, "utxo %s is held by %s in the journal, but Redis has no live hold of it", u, j[0])
			case !f && j[0] != r[0]:
				v(kindDoubled, "utxo %s is held by %s in the journal but by %s in Redis", u, j[0], r[0])
			}
		}
		for _, u := range sortedKeys(free) {
			if !truth[u] {
				v(kindPhantom, "utxo %s is reservable but not an unspent utxo of the pool on the chain", u)
			}
		}
		for _, u := range sortedKeys(journal) {
			for _, id := range journal[u] {
				if !truth[u] && !unsure[u] && s.held[id] {
					v(kindUnsettled, "held reservation %s still holds utxo %s, which the chain no longer offers", id, u)
				}
			}
		}
		if c, ok := s.counts[p.ID]; len(unsure) == 0 && ok {
			if int(c.Available) != len(free) {
				v(kindCounts, "GET /v1/pools counts %d available, but %d utxos can be reserved", c.Available, len(free))
			}
			if int(c.Available+c.Reserved) != len(truth) {
				v(kindCounts, "GET /v1/pools counts %d available + %d reserved, but the chain has %d unspent utxos",
					c.Available, c.Reserved, len(truth))
			}
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// journalRow is a reservation row as the history checks read it.
type journalRow struct {
	bench.JournalRow
	TxID string
}

func readAllJournal(ctx context.Context, d *deployment) ([]journalRow, error) {
	conn, err := pgx.Connect(ctx, d.dbURL)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	rows, err := conn.Query(ctx, `SELECT id, pool_id, fence, hashes, state, tx_id, created_at, expires_at, updated_at FROM reservations`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (journalRow, error) {
		var r journalRow
		var hashes string
		err := row.Scan(&r.ID, &r.Pool, &r.Fence, &hashes, &r.State, &r.TxID, &r.CreatedAt, &r.ExpiresAt, &r.UpdatedAt)
		r.Hashes = storage.SplitHashes(hashes)
		return r, err
	})
}

// checkHistory runs the checks over everything so far: every acknowledged
// reservation is in the journal as acknowledged, each pool's highest fence
// did not go down, fences follow real time, and no two clients held a UTXO
// at once (by their own account, and by the journal's for reservations no
// transaction touched).
func checkHistory(round int, rows []journalRow, acks []acked, grants []*bench.Grant, prevFence map[int64]int64) []violation {
	var out []violation
	byID := make(map[string]journalRow, len(rows))
	top := map[int64]int64{}
	var untouched []bench.JournalRow
	for _, r := range rows {
		byID[r.ID] = r
		top[r.Pool] = max(top[r.Pool], r.Fence)
		if r.TxID == "" {
			untouched = append(untouched, r.JournalRow)
		}
	}
	for _, a := range acks {
		r, ok := byID[a.ID]
		switch {
		case !ok:
			out = append(out, violation{Kind: kindUnjournalled, Round: round, Pool: a.Pool, Detail: fmt.Sprintf(
				"reservation %s (fence %d, %v) acknowledged to client %d is not in the journal", a.ID, a.Fence, a.Hashes, a.Client)})
		case r.Pool != a.Pool || r.Fence != a.Fence || !slices.Equal(sortedCopy(r.Hashes), sortedCopy(a.Hashes)):
			out = append(out, violation{Kind: kindUnjournalled, Round: round, Pool: a.Pool, Detail: fmt.Sprintf(
				"reservation %s was acknowledged as pool %d fence %d %v, the journal has pool %d fence %d %v",
				a.ID, a.Pool, a.Fence, a.Hashes, r.Pool, r.Fence, r.Hashes)})
		}
	}
	for pool, f := range prevFence {
		if top[pool] < f {
			out = append(out, violation{Kind: kindFence, Round: round, Pool: pool, Detail: fmt.Sprintf(
				"the journal's highest fence went down from %d to %d", f, top[pool])})
		}
	}
	for pool, f := range top {
		prevFence[pool] = max(prevFence[pool], f)
	}
	out = append(out, stamp(round, fenceOrder(acks))...)
	for _, dup := range bench.CheckGrants(grants) {
		out = append(out, violation{Kind: kindOverlap, Round: round, Pool: dup.Pool, Detail: dup.String()})
	}
	for _, dup := range bench.CheckJournal(untouched, journalTolerance) {
		out = append(out, violation{Kind: kindOverlap, Round: round, Pool: dup.Pool, Detail: dup.String()})
	}
	return out
}

func stamp(round int, vs []violation) []violation {
	for i := range vs {
		vs[i].Round = round
	}
	return vs
}

func sortedCopy(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return out
}

// describe summarises violations for the history.
func describe(vs []violation) string {
	if len(vs) == 0 {
		return "all checks passed"
	}
	kinds := map[string]int{}
	for _, v := range vs {
		kinds[v.Kind]++
	}
	var parts []string
	for _, k := range sortedKeys(kinds) {
		parts = append(parts, fmt.Sprintf("%d %s", kinds[k], k))
	}
	return "VIOLATIONS: " + strings.Join(parts, ", ")
}
