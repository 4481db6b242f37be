// Package handlers serves bufferd's HTTP API with fiber: the legacy /dapp routes
// of the original bufferserver (same envelope, same bytes, without its flaws),
// the v1 pool, reservation and status routes, and the health probes.
//
// Nothing internal reaches a client: storage and Redis errors are logged with
// the request id and answered with a generic message.
package handlers

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/gofiber/fiber/v2/middleware/requestid"
	"github.com/gofiber/fiber/v2/utils"
	"github.com/prometheus/client_golang/prometheus"
)

// Limits of a request.
const (
	// bodyLimit is the largest request body accepted.
	bodyLimit = 64 << 10
	// requestTimeout bounds the storage and Redis work of one request.
	requestTimeout = 10 * time.Second
	// probeTimeout bounds each readiness check.
	probeTimeout = 2 * time.Second
)

// Config wires the handlers to their dependencies.
type Config struct {
	Store Store // a *storage.Store
	Locks Locks // a *lockmgr.Manager
	// AdminToken guards the admin routes (update-base, POST /v1/pools). When
	// empty, admin routes are refused.
	AdminToken string
	// Logger receives access and error logs; nil means slog.Default().
	Logger *slog.Logger
	// Ready, when set, is an extra readiness check for /readyz.
	Ready func(ctx context.Context) error
	// Metrics receives the metrics catalogue; GET /metrics serves it when it
	// is also a prometheus.Gatherer. nil means prometheus.DefaultRegisterer.
	Metrics prometheus.Registerer
	// MetricsElsewhere leaves GET /metrics out (404): another listener of
	// the process serves it, off the public port.
	MetricsElsewhere bool
	// RateLimit is the reserve requests a second allowed per client IP
	// (POST /v1/reservations and /dapp/update-utxo together), in bursts of up
	// to RateBurst; 0 means no limit.
	RateLimit float64
	RateBurst int
	// CORSOrigins and LegacyCORSOrigins are the browser origins allowed on
	// /v1 and /dapp: "*", or comma-separated scheme://host[:port]; empty or
	// "none" means no CORS headers.
	CORSOrigins       string
	LegacyCORSOrigins string
	// ProxyHeader names the header carrying the client IP set by a trusted
	// reverse proxy (e.g. X-Real-IP); empty means the connection's address.
	ProxyHeader string
	// LegacyListSample makes /dapp/list-utxos without start and limit (the
	// frontend's call) a sample of about that many free UTXOs spread over
	// the amount ranking, different for each caller
	// (lockmgr.Manager.SampleAvailable), so that frontends which take the
	// UTXO that fits best do not all pick the same one; a caller that pages
	// gets the plain ranking. 0 lists the plain ranking always, as the
	// original did.
	LegacyListSample int
}

// server holds the dependencies of the route handlers.
type server struct {
	store     Store
	locks     Locks
	adminHash [sha256.Size]byte
	adminSet  bool
	log       *slog.Logger
	ready     func(ctx context.Context) error
	pools     poolCache
	utxoPools utxoPools
	sample    int // Config.LegacyListSample
	// see metrics.go and limits.go
	routeSet
	gatherer                 prometheus.Gatherer
	limiter                  *rateLimiter
	v1Origins, legacyOrigins string
}

// New returns a fiber app with every route registered: HEAD /dapp and
// POST /dapp/* (legacy), /v1/pools..., /v1/reservations..., /v1/status,
// /livez, /readyz and /metrics (unless Config.MetricsElsewhere). Check cfg
// with Validate first.
func New(cfg Config) *fiber.App {
	s := &server{
		store:    cfg.Store,
		locks:    cfg.Locks,
		adminSet: cfg.AdminToken != "",
		log:      cfg.Logger,
		ready:    cfg.Ready,
		limiter:  newRateLimiter(cfg.RateLimit, cfg.RateBurst),
		sample:   cfg.LegacyListSample,

		v1Origins:     cfg.CORSOrigins,
		legacyOrigins: cfg.LegacyCORSOrigins,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.gatherer = s.initMetrics(cfg.Metrics)
	if s.adminSet {
		s.adminHash = sha256.Sum256([]byte(cfg.AdminToken))
	}

	app := fiber.New(fiber.Config{
		AppName:               "bufferd",
		BodyLimit:             bodyLimit,
		DisableStartupMessage: true,
		ErrorHandler:          s.errorHandler, // handleError, counted (metrics.go)
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           120 * time.Second,
		ProxyHeader:           cfg.ProxyHeader,
		EnableIPValidation:    true, // the first valid IP of ProxyHeader
	})
	app.Use(requestid.New(requestid.Config{Generator: utils.UUIDv4}))
	app.Use(s.observe) // request metrics (metrics.go)
	app.Use(s.accessLog)
	app.Use(recover.New(recover.Config{
		EnableStackTrace: true,
		StackTraceHandler: func(c *fiber.Ctx, e any) {
			s.log.Error("panic", "request_id", requestID(c), "panic", e, "stack", string(debug.Stack()))
		},
	}))

	app.Get("/livez", s.livez)
	app.Get("/readyz", s.readyz)
	if !cfg.MetricsElsewhere {
		app.Get("/metrics", s.serveMetrics())
	}
	s.useCORS(app)       // limits.go
	registerOpenAPI(app) // GET /openapi.json and /docs

	app.Get("/", s.statusPage(!cfg.MetricsElsewhere)) // status.go

	app.Head("/dapp", func(c *fiber.Ctx) error { return c.SendStatus(fiber.StatusOK) })
	dapp := app.Group("/dapp")
	dapp.Post("/list-utxos", s.listUTXOs)
	dapp.Post("/list-balances", s.listBalances)
	dapp.Post("/update-base", s.updateBase)
	dapp.Post("/update-utxo", s.limitReserve, s.updateUTXO)
	dapp.Post("/update-balance", s.updateBalance)

	v1 := app.Group("/v1")
	v1.Post("/pools", s.createPool)
	v1.Get("/pools", s.listPools)
	v1.Get("/pools/:id", s.getPool)
	v1.Get("/pools/:id/utxos", s.listPoolUTXOs)
	v1.Post("/reservations", s.limitReserve, s.reserve)
	v1.Get("/reservations", s.listReservations) // reservations_list.go
	v1.Get("/reservations/:id", s.getReservation)
	v1.Post("/reservations/:id/extend", s.extendReservation)
	v1.Post("/reservations/:id/submit", s.submitReservation)
	v1.Delete("/reservations/:id", s.releaseReservation)
	v1.Get("/status", s.status)
	v1.Get("/transactions", s.listTransactions)
	return app
}

// requestID returns the id the requestid middleware gave the request.
func requestID(c *fiber.Ctx) string {
	id, _ := c.Locals("requestid").(string)
	return id
}

// reqContext is the context of a request's backend work, bounded by requestTimeout.
func reqContext(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.UserContext(), requestTimeout)
}

// accessLog logs every request once, after the error handler has written the answer.
func (s *server) accessLog(c *fiber.Ctx) error {
	start := time.Now()
	if err := c.Next(); err != nil {
		if herr := c.App().ErrorHandler(c, err); herr != nil {
			_ = c.SendStatus(fiber.StatusInternalServerError)
		}
	}
	status := c.Response().StatusCode()
	level := slog.LevelInfo
	switch {
	case status >= 500:
		level = slog.LevelError
	case c.Path() == "/livez" || c.Path() == "/readyz":
		level = slog.LevelDebug // probes would drown the log
	}
	s.log.LogAttrs(c.UserContext(), level, "http request",
		slog.String("request_id", requestID(c)),
		slog.String("method", c.Method()),
		slog.String("path", c.Path()),
		slog.Int("status", status),
		slog.Duration("latency", time.Since(start)),
		slog.String("ip", c.IP()),
	)
	return nil
}

// isLegacy reports whether the request is for a legacy /dapp route, whose
// answers are always HTTP 200 with the outcome in the envelope.
func isLegacy(c *fiber.Ctx) bool {
	p := strings.ToLower(c.Path()) // routing is case-insensitive
	return p == "/dapp" || strings.HasPrefix(p, "/dapp/")
}

// handleError is the app's ErrorHandler: it maps any error to a client answer
// without internal text. Route handlers normally answer themselves; this sees
// fiber's own errors (unknown route, body too large), panics and unexpected errors.
func (s *server) handleError(c *fiber.Ctx, err error) error {
	var in *inputError
	if errors.As(err, &in) {
		if isLegacy(c) {
			return legacyFailMsg(c, in.msg)
		}
		return apiError(c, fiber.StatusBadRequest, "bad_request", in.msg)
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		switch fe.Code {
		case fiber.StatusNotFound, fiber.StatusMethodNotAllowed:
			if isLegacy(c) {
				return legacyNoRoute(c)
			}
			if fe.Code == fiber.StatusNotFound {
				return apiError(c, fe.Code, "not_found", "route not found")
			}
			return apiError(c, fe.Code, "method_not_allowed", "method not allowed")
		case fiber.StatusRequestEntityTooLarge:
			if isLegacy(c) {
				return legacyFailMsg(c, "request body too large")
			}
			return apiError(c, fe.Code, "body_too_large", "request body too large")
		}
		if fe.Code >= 400 && fe.Code < 500 {
			if isLegacy(c) {
				return legacyFailMsg(c, "bad request")
			}
			return apiError(c, fe.Code, "bad_request", "bad request")
		}
	}
	return s.internal(c, err)
}

// internal logs err and answers with a generic message.
func (s *server) internal(c *fiber.Ctx, err error) error {
	s.log.Error("request failed", "request_id", requestID(c), "method", c.Method(), "path", c.Path(), "err", err)
	if isLegacy(c) {
		return legacyFailMsg(c, msgInternal)
	}
	return apiError(c, fiber.StatusInternalServerError, "internal", msgInternal)
}

// msgInternal is all a client learns of an internal failure.
const msgInternal = "internal error"

// isAdmin checks "Authorization: Bearer <token>" against the admin token in
// constant time. With no admin token configured nobody is admin.
func (s *server) isAdmin(c *fiber.Ctx) bool {
	if !s.adminSet {
		return false
	}
	h := c.Get(fiber.HeaderAuthorization)
	const scheme = "Bearer "
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(h[len(scheme):])))
	return subtle.ConstantTimeCompare(got[:], s.adminHash[:]) == 1
}
