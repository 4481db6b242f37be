package metrics

import (
	"database/sql"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
)

// PoolStatser is a go-redis client (single, cluster or universal).
type PoolStatser interface {
	PoolStats() *redis.PoolStats
}

// redisPool reports a go-redis client's connection pool statistics at scrape time.
type redisPool struct {
	client                               PoolStatser
	conns, hits, misses, timeouts, stale *prometheus.Desc
}

// newRedisPoolCollector returns a collector of c's connection pool:
// bufferd_redis_pool_connections{state="total"|"idle"} and the counters
// bufferd_redis_pool_hits_total, _misses_total, _timeouts_total and
// _stale_connections_total.
func newRedisPoolCollector(c PoolStatser) prometheus.Collector {
	return &redisPool{
		client: c,
		conns: prometheus.NewDesc("bufferd_redis_pool_connections",
			"Connections in the Redis client pool, by state (total, idle).", []string{"state"}, nil),
		hits: prometheus.NewDesc("bufferd_redis_pool_hits_total",
			"Times a free connection was found in the Redis client pool.", nil, nil),
		misses: prometheus.NewDesc("bufferd_redis_pool_misses_total",
			"Times no free connection was found in the Redis client pool (a new one was dialed or waited for).", nil, nil),
		timeouts: prometheus.NewDesc("bufferd_redis_pool_timeouts_total",
			"Times waiting for a Redis pool connection timed out.", nil, nil),
		stale: prometheus.NewDesc("bufferd_redis_pool_stale_connections_total",
			"Stale connections removed from the Redis client pool.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (p *redisPool) Describe(ch chan<- *prometheus.Desc) {
	ch <- p.conns
	ch <- p.hits
	ch <- p.misses
	ch <- p.timeouts
	ch <- p.stale
}

// Collect implements prometheus.Collector.
func (p *redisPool) Collect(ch chan<- prometheus.Metric) {
	s := p.client.PoolStats()
	if s == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(p.conns, prometheus.GaugeValue, float64(s.TotalConns), "total")
	ch <- prometheus.MustNewConstMetric(p.conns, prometheus.GaugeValue, float64(s.IdleConns), "idle")
	ch <- prometheus.MustNewConstMetric(p.hits, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(p.misses, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(p.timeouts, prometheus.CounterValue, float64(s.Timeouts))
	ch <- prometheus.MustNewConstMetric(p.stale, prometheus.CounterValue, float64(s.StaleConns))
}

// RegisterPools adds to reg (nil means prometheus.DefaultRegisterer) the
// connection pool statistics of a Redis client and of a database handle
// (client_golang's DBStatsCollector: go_sql_*{db_name="bufferd"}); either may
// be nil. Pool collectors registered before are replaced, so the newest
// clients are the ones reported.
func RegisterPools(reg prometheus.Registerer, rdb PoolStatser, db *sql.DB) error {
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	var cs []prometheus.Collector
	if rdb != nil {
		cs = append(cs, newRedisPoolCollector(rdb))
	}
	if db != nil {
		cs = append(cs, collectors.NewDBStatsCollector(db, "bufferd"))
	}
	for _, c := range cs {
		reg.Unregister(c) // same descriptors: drops the one registered before, if any
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("metrics: register pool statistics: %w", err)
		}
	}
	return nil
}
