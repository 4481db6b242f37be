package handlers

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
)

// routeSet is the set of an app's routes, by their first handler.
type routeSet struct {
	routesOnce sync.Once
	routes     map[*fiber.Handler]bool
}

// initMetrics registers the metrics catalogue with reg (nil means
// prometheus.DefaultRegisterer) and returns what GET /metrics serves: reg
// itself when it can gather, else nothing.
func (s *server) initMetrics(reg prometheus.Registerer) prometheus.Gatherer {
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	if err := metrics.Register(reg); err != nil {
		s.log.Error("register metrics", "err", err)
	}
	g, _ := reg.(prometheus.Gatherer)
	return g
}

// serveMetrics is GET /metrics: the Prometheus text exposition of the
// registry given in Config.Metrics; 404 when it cannot be gathered.
func (s *server) serveMetrics() fiber.Handler {
	if s.gatherer == nil {
		return func(c *fiber.Ctx) error { return fiber.ErrNotFound }
	}
	// No HandlerOpts.Timeout: its http.TimeoutHandler watches the fasthttp
	// request context, which races with the server's shutdown.
	return adaptor.HTTPHandler(promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
	}))
}

// observe is the metrics middleware: it counts every request by method, route
// template and status code, and observes its latency. The route is the
// registered template (/v1/reservations/:id), never the raw path, so no id
// or hash becomes a label; a request no route matched is "unmatched".
func (s *server) observe(c *fiber.Ctx) error {
	start := time.Now()
	if err := c.Next(); err != nil {
		if herr := c.App().ErrorHandler(c, err); herr != nil {
			_ = c.SendStatus(fiber.StatusInternalServerError)
		}
	}
	status := c.Response().StatusCode()
	method := methodLabel(c.Method())
	route := s.routeLabel(c, method, status)
	metrics.HTTPRequests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	metrics.HTTPDuration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
	return nil
}

// errorHandler is the app's ErrorHandler: handleError, plus the request
// count of requests the server refused before any route or middleware ran
// (body too large, malformed request, read timeout), which observe never sees.
func (s *server) errorHandler(c *fiber.Ctx, err error) error {
	herr := s.handleError(c, err)
	if len(c.Route().Handlers) == 0 { // fiber's stand-in route: nothing was routed
		metrics.HTTPRequests.WithLabelValues(methodLabel(c.Method()), metrics.RouteUnmatched,
			strconv.Itoa(c.Response().StatusCode())).Inc()
	}
	return herr
}

// routeLabel is the template of the route that answered. When a middleware
// answered (a CORS preflight) it is the middleware's mount path; when no
// route matched it is "unmatched".
func (s *server) routeLabel(c *fiber.Ctx, method string, status int) string {
	r := c.Route() // after c.Next: the last route or middleware that matched
	if r == nil || len(r.Handlers) == 0 {
		return metrics.RouteUnmatched // fiber's fallback route carries the raw path
	}
	if s.isRoute(c.App(), r) {
		return r.Path // a registered constant
	}
	if status == fiber.StatusNotFound || status == fiber.StatusMethodNotAllowed {
		return metrics.RouteUnmatched
	}
	return r.Path
}

// isRoute reports whether r is one of app's routes, not a middleware (whose
// mount path may be a route's path too: "/"). Routes are told apart by their
// handlers, which a route shares with the app's stack. The set is taken at the
// first request, when every route is registered.
func (s *server) isRoute(app *fiber.App, r *fiber.Route) bool {
	s.routesOnce.Do(func() {
		s.routes = map[*fiber.Handler]bool{}
		for _, rt := range app.GetRoutes(true) {
			if len(rt.Handlers) > 0 {
				s.routes[&rt.Handlers[0]] = true
			}
		}
	})
	return len(r.Handlers) > 0 && s.routes[&r.Handlers[0]]
}

// methodLabel maps a request method to a constant string (fiber's method
// string may alias a reused request buffer; labels must not).
func methodLabel(m string) string {
	for _, known := range [...]string{
		fiber.MethodGet, fiber.MethodPost, fiber.MethodDelete, fiber.MethodHead, fiber.MethodOptions,
		fiber.MethodPut, fiber.MethodPatch, fiber.MethodConnect, fiber.MethodTrace,
	} {
		if m == known {
			return known
		}
	}
	return "other"
}

// countLockError counts the reservation outcome or fencing rejection a
// lockmgr error means.
func countLockError(err error) {
	switch {
	case errors.Is(err, lockmgr.ErrNoUTXOAvailable), errors.Is(err, lockmgr.ErrLocked):
		metrics.Outcome(metrics.OutcomeConflict)
	case errors.Is(err, lockmgr.ErrRebuilding):
		metrics.Outcome(metrics.OutcomeRebuilding)
	case errors.Is(err, storage.ErrStaleFence), errors.Is(err, storage.ErrNotLive), errors.Is(err, lockmgr.ErrEnded):
		metrics.FencingRejections.Inc()
	}
}
