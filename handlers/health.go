package handlers

import (
	"context"
	"errors"
	"log/slog"

	"github.com/gofiber/fiber/v2"
)

// livez is GET /livez: the process answers.
func (s *server) livez(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok"})
}

// ReadyCheck is one named check of a readiness probe.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// Readiness is the body of every GET /readyz of bufferd (the API's and the
// syncer's): "ok" or "unavailable", and each check's outcome, "ok" or "fail".
type Readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// CheckReady runs checks one after the other, each within probeTimeout, and
// returns the readiness answer and its HTTP status: 200 when all pass, else
// 503. A failure's error goes to log only, never to the answer.
func CheckReady(ctx context.Context, log *slog.Logger, checks []ReadyCheck) (int, Readiness) {
	r := Readiness{Status: "ok", Checks: make(map[string]string, len(checks))}
	status := fiber.StatusOK
	for _, ch := range checks {
		cctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := ch.Check(cctx)
		cancel()
		if err != nil {
			r.Status, status = "unavailable", fiber.StatusServiceUnavailable
			r.Checks[ch.Name] = "fail"
			log.Warn("readiness check failed", "check", ch.Name, "err", err)
			continue
		}
		r.Checks[ch.Name] = "ok"
	}
	return status, r
}

// readyz is GET /readyz: Redis, PostgreSQL and the extra check (if any).
func (s *server) readyz(c *fiber.Ctx) error {
	checks := []ReadyCheck{{"redis", s.pingRedis}, {"postgres", s.pingPostgres}}
	if s.ready != nil {
		checks = append(checks, ReadyCheck{"ready", s.ready})
	}
	status, r := CheckReady(c.UserContext(), s.log.With("request_id", requestID(c)), checks)
	return c.Status(status).JSON(r)
}

func (s *server) pingRedis(ctx context.Context) error {
	if s.locks == nil {
		return errors.New("handlers: no lock manager")
	}
	return s.locks.Ping(ctx)
}

func (s *server) pingPostgres(ctx context.Context) error {
	if s.store == nil {
		return errors.New("handlers: no store")
	}
	return s.store.Ping(ctx)
}
