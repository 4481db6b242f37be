package handlers

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/cors"
	"github.com/gofiber/fiber/v2/utils"
	"golang.org/x/time/rate"
)

// Validate checks the settings handlers.New would otherwise panic on or
// misapply: the CORS origins, the rate and the burst of the reserve limit.
func (cfg Config) Validate() error {
	var errs []error
	if err := checkOrigins(cfg.CORSOrigins); err != nil {
		errs = append(errs, fmt.Errorf("handlers: CORS origins: %w", err))
	}
	if err := checkOrigins(cfg.LegacyCORSOrigins); err != nil {
		errs = append(errs, fmt.Errorf("handlers: legacy CORS origins: %w", err))
	}
	if cfg.RateLimit < 0 || math.IsNaN(cfg.RateLimit) || math.IsInf(cfg.RateLimit, 0) {
		errs = append(errs, fmt.Errorf("handlers: reserve rate %v: want a finite number >= 0", cfg.RateLimit))
	}
	if cfg.RateBurst < 0 {
		errs = append(errs, fmt.Errorf("handlers: reserve burst %d: want >= 0", cfg.RateBurst))
	}
	return errors.Join(errs...)
}

// origins normalises a CORS origin list: "none" is the same as empty (an
// environment variable cannot be set to empty over a non-empty default).
func origins(list string) string {
	list = strings.TrimSpace(list)
	if strings.EqualFold(list, "none") {
		return ""
	}
	return list
}

// checkOrigins accepts "", "none", "*" or a comma-separated list of origins
// (scheme://host[:port], nothing more).
func checkOrigins(list string) error {
	list = origins(list)
	if list == "" || list == "*" {
		return nil
	}
	for _, o := range strings.Split(list, ",") {
		o = strings.TrimSpace(o)
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Contains(u.Host, "*") ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("%q is not an origin (want * or scheme://host[:port], comma-separated)", o)
		}
	}
	return nil
}

// CORS of the routes a browser may call.
const (
	corsMethods       = "GET,POST,DELETE,HEAD,OPTIONS"
	corsAllowHeaders  = "Content-Type,Authorization,Idempotency-Key,X-Request-Id"
	corsExposeHeaders = "Retry-After,Idempotent-Replayed,X-Request-Id"
	corsMaxAge        = 600 // seconds a browser may cache a preflight
)

// useCORS answers CORS preflights and adds CORS headers: on /dapp for the
// origins in Config.LegacyCORSOrigins, on /v1 for those in Config.CORSOrigins.
// An empty list (or "none") adds nothing, so browsers on other origins are refused.
// Credentials (cookies) are never allowed: the admin token is a header.
func (s *server) useCORS(app *fiber.App) {
	for _, m := range []struct{ prefix, origins string }{{"/dapp", s.legacyOrigins}, {"/v1", s.v1Origins}} {
		allow := origins(m.origins)
		if allow == "" {
			continue
		}
		app.Use(m.prefix, cors.New(cors.Config{
			AllowOrigins:  allow,
			AllowMethods:  corsMethods,
			AllowHeaders:  corsAllowHeaders,
			ExposeHeaders: corsExposeHeaders,
			MaxAge:        corsMaxAge,
		}))
	}
}

// msgRateLimited is the legacy answer of a rate-limited update-utxo.
const msgRateLimited = "too many requests"

// limitReserve rate-limits the reserving routes (POST /v1/reservations and
// POST /dapp/update-utxo) per client IP, with one token bucket per client
// shared by both: v1 answers 429 rate_limited with Retry-After, legacy
// code 300 "too many requests".
func (s *server) limitReserve(c *fiber.Ctx) error {
	if s.limiter == nil {
		return c.Next()
	}
	ip := c.IP()
	ok, wait := s.limiter.take(ip, time.Now())
	if ok {
		return c.Next()
	}
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	c.Set(fiber.HeaderRetryAfter, strconv.Itoa(secs))
	s.log.Debug("rate limited", "request_id", requestID(c), "path", c.Path(), "ip", ip)
	if isLegacy(c) {
		return legacyFailMsg(c, msgRateLimited)
	}
	return apiError(c, fiber.StatusTooManyRequests, "rate_limited", "too many reservation requests from this client, retry later")
}

// Bounds of the limiter's memory.
const (
	maxBuckets = 100_000     // clients tracked at once; past it new clients pass unlimited
	sweepEvery = time.Minute // how often full buckets are forgotten
)

// rateLimiter is a token bucket per client (golang.org/x/time/rate): each
// holds up to burst tokens and gains rate tokens a second; a request takes
// one. A bucket idle long enough to be full again is forgotten (it is the
// same as a new one), so memory stays bounded by the clients active lately.
type rateLimiter struct {
	rate  rate.Limit
	burst int

	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	nextSweep time.Time
}

// newRateLimiter returns a limiter of r requests a second per client with
// bursts of burst (at least 1); nil (no limit) when r is 0 or less.
func newRateLimiter(r float64, burst int) *rateLimiter {
	if r <= 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		return nil
	}
	if burst < 1 {
		burst = 1
	}
	return &rateLimiter{rate: rate.Limit(r), burst: burst, buckets: map[string]*rate.Limiter{}}
}

// take spends a token of key's bucket at now. When there is none it returns
// false and how long until there is one.
func (l *rateLimiter) take(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !now.Before(l.nextSweep) {
		l.sweep(now)
	}
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			return true, 0
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[utils.CopyString(key)] = b // key may alias a request buffer
	}
	if b.AllowN(now, 1) {
		return true, 0
	}
	return false, time.Duration((1 - b.TokensAt(now)) / float64(l.rate) * float64(time.Second))
}

// sweep forgets the buckets that are full again at now.
func (l *rateLimiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	l.nextSweep = now.Add(sweepEvery)
}

// size is the number of clients tracked.
func (l *rateLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
