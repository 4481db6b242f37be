package handlers

import (
	"context"
	"errors"

	"github.com/gofiber/fiber/v2"
)

// livez is GET /livez: the process answers.
func (s *server) livez(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok"})
}

// readyz is GET /readyz: 200 when Redis, PostgreSQL and the extra check (if
// any) answer, else 503 naming the failed checks (their errors are only logged).
func (s *server) readyz(c *fiber.Ctx) error {
	type check struct {
		name string
		fn   func(ctx context.Context) error
	}
	checks := []check{{"redis", s.pingRedis}, {"postgres", s.pingPostgres}}
	if s.ready != nil {
		checks = append(checks, check{"ready", s.ready})
	}
	results := make(map[string]string, len(checks))
	ok := true
	for _, ch := range checks {
		ctx, cancel := context.WithTimeout(c.UserContext(), probeTimeout)
		err := ch.fn(ctx)
		cancel()
		if err != nil {
			ok = false
			results[ch.name] = "fail"
			s.log.Warn("readiness check failed", "request_id", requestID(c), "check", ch.name, "err", err)
			continue
		}
		results[ch.name] = "ok"
	}
	if !ok {
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "unavailable", "checks": results})
	}
	return c.JSON(fiber.Map{"status": "ok", "checks": results})
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
	db, err := s.store.DB().DB()
	if err != nil {
		return err
	}
	return db.PingContext(ctx)
}
