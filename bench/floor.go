package bench

import (
	_ "embed"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/go-redis/v9"
)

// floorPath is the route of the floor server.
const floorPath = "/floor"

// floorTTL is the time to live of the floor's keys.
const floorTTL = 10 * time.Second

//go:embed floor.lua
var floorLua string

var floorScript = redis.NewScript(floorLua)

// FloorApp is the floor of the benchmark: the API's HTTP stack (fiber, with
// go-redis) doing the least a reservation can do, one EVALSHA of a
// SET key value NX PX ttl script, per POST /floor. It answers 201 with the
// key; GET /livez answers 200. Keys go under prefix and live floorTTL.
func FloorApp(rdb redis.UniversalClient, prefix string) *fiber.App {
	app := fiber.New(fiber.Config{
		AppName:               "bufferd-bench-floor",
		DisableStartupMessage: true,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           120 * time.Second,
	})
	app.Get("/livez", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	app.Post(floorPath, func(c *fiber.Ctx) error {
		key := prefix + "floor:" + randomHex(16)
		ok, err := floorScript.Run(c.UserContext(), rdb, []string{key}, "1", floorTTL.Milliseconds()).Result()
		if err != nil || ok == nil {
			return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"error": fiber.Map{"code": "unavailable", "message": "redis"}})
		}
		return c.Status(fiber.StatusCreated).JSON(fiber.Map{"key": key})
	})
	return app
}
