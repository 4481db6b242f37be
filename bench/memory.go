package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// The memory scenario waits up to quietTimeout for Redis's memory to move by
// less than quietChange (a fraction) in a second before its baseline.
const (
	quietTimeout = 30 * time.Second
	quietChange  = 0.002
)

// maxMemoryFailures stops the memory scenario when reserves keep failing.
const maxMemoryFailures = 1000

// memoryResult is what live reservations cost.
type memoryResult struct {
	// Reservations is how many live reservations were made (one UTXO each).
	Reservations int
	// Redis used_memory (INFO memory) before and after, 0 when not read.
	RedisBefore, RedisAfter int64
	// Size of the journal's tables, reservations and reservation_utxos
	// (with indexes and TOAST), before and after, 0 when not read.
	JournalBefore, JournalAfter int64
	// Took is how long the reserves took.
	Took time.Duration
}

// Per100k scales a growth in bytes to 100,000 reservations.
func (m *memoryResult) Per100k(before, after int64) float64 {
	if m.Reservations == 0 {
		return 0
	}
	return float64(after-before) / float64(m.Reservations) * 100_000
}

// usedMemory reads used_memory from the INFO memory of the Redis at url
// (the first of a comma-separated list).
func usedMemory(ctx context.Context, url string) (int64, error) {
	first, _, _ := strings.Cut(url, ",")
	if !strings.Contains(first, "://") {
		first = "redis://" + first
	}
	opt, err := redis.ParseURL(strings.TrimSpace(first))
	if err != nil {
		return 0, fmt.Errorf("bench: redis url: %w", err)
	}
	rdb := redis.NewClient(opt)
	defer func() { _ = rdb.Close() }()
	info, err := rdb.InfoMap(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("bench: redis INFO: %w", err)
	}
	v, ok := info["Memory"]["used_memory"]
	if !ok {
		return 0, errors.New("bench: INFO memory has no used_memory")
	}
	return strconv.ParseInt(v, 10, 64)
}

// journalTables are the tables a reservation writes: its row, and a row per
// UTXO it holds.
var journalTables = []string{"reservations", "reservation_utxos"}

// tableBytes is the size of tables of the database at url together, indexes
// and TOAST included.
func tableBytes(ctx context.Context, url string, tables ...string) (int64, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, fmt.Errorf("bench: database: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	var total int64
	for _, table := range tables {
		var n int64
		if err := conn.QueryRow(ctx, "SELECT pg_total_relation_size($1::regclass)", table).Scan(&n); err != nil {
			return 0, fmt.Errorf("bench: size of %s: %w", table, err)
		}
		total += n
	}
	return total, nil
}

// measure reads Redis's and the journal's sizes, where their URLs are known.
func (r *runner) measure(ctx context.Context) (redisBytes, journalBytes int64, err error) {
	if r.t.RedisURL != "" {
		if redisBytes, err = usedMemory(ctx, r.t.RedisURL); err != nil {
			return 0, 0, err
		}
	}
	if r.t.DatabaseURL != "" {
		if journalBytes, err = tableBytes(ctx, r.t.DatabaseURL, journalTables...); err != nil {
			return 0, 0, err
		}
	}
	return redisBytes, journalBytes, nil
}

// quietRedis waits (at most quietTimeout) until Redis's used_memory moves by
// less than quietChange over a second: the memory scenario's baseline must
// not include what the syncer is still freeing.
func (r *runner) quietRedis(ctx context.Context) {
	if r.t.RedisURL == "" {
		pause(ctx, time.Second)
		return
	}
	deadline := time.Now().Add(quietTimeout)
	last, err := usedMemory(ctx, r.t.RedisURL)
	for err == nil && time.Now().Before(deadline) && ctx.Err() == nil {
		pause(ctx, time.Second)
		var now int64
		if now, err = usedMemory(ctx, r.t.RedisURL); err != nil {
			break
		}
		if math.Abs(float64(now-last)) < float64(last)*quietChange {
			return
		}
		last = now
	}
	r.log.Warn("redis memory did not settle before the memory scenario", "err", err)
}

// scenarioMemory makes MemoryReservations live reservations of one UTXO each
// and reads how much Redis and the journal grew.
func (r *runner) scenarioMemory(ctx context.Context) error {
	n := r.o.MemoryReservations
	res := r.newResult("memory", fmt.Sprintf("%d live reservations of one UTXO each", n), clientsMemory)
	res.Unit = "reservation"
	if r.t.RedisURL == "" && r.t.DatabaseURL == "" {
		res.Notes = append(res.Notes, "skipped: give --redis-url and --database-url to read Redis's and the journal's sizes")
		return nil
	}
	p, err := r.newPool(ctx, amountsFrom(n, 1000))
	if err != nil {
		return err
	}
	defer r.retire(ctx, p)
	res.Pools = []int64{p.ID}
	r.quietRedis(ctx) // earlier pools' settlements free Redis memory for a while
	m := &memoryResult{}
	if m.RedisBefore, m.JournalBefore, err = r.measure(ctx); err != nil {
		return err
	}
	r.log.Info("scenario memory: reserving", "reservations", n, "clients", clientsMemory)
	start := time.Now()
	w := window{from: start, until: start.Add(memoryTimeout)}
	cs := r.newClients(clientsMemory, w)
	sample := r.sampleFrom(start)
	var left, failures atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(w.until) && failures.Load() < maxMemoryFailures && left.Add(-1) >= 0 {
				body := reserveBody{Pool: p.ID, Count: 1, TTLSeconds: memoryTTL}
				if res, _, _ := c.reserve(ctx, "memory", opReserve, body, time.Time{}); res != nil {
					c.rec.cycle(time.Now())
				} else {
					left.Add(1)
					failures.Add(1)
					pause(ctx, 10*time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	sample()
	m.Took = time.Since(start)
	w.until = time.Now()
	rec := merged(cs, w)
	m.Reservations = rec.cycles
	if m.RedisAfter, m.JournalAfter, err = r.measure(ctx); err != nil {
		return err
	}
	res.Memory = m
	r.finish(res, rec, w)
	res.Notes = append(res.Notes,
		fmt.Sprintf("reserve requests carry no Idempotency-Key; a client that sends one adds a key per reservation for its TTL (%d s here)", memoryTTL),
		"the reservations are left to expire")
	return nil
}
