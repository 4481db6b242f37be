package loadgen

import (
	_ "embed"
	"strconv"
	"sync/atomic"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/go-redis/v9"
)

//go:embed floor.lua
var floorLua string

var floorScript = redis.NewScript(floorLua)

// FloorApp is the benchmark's floor: the API's HTTP stack (fiber, go-redis)
// answering each POST /floor with one EVALSHA of a SET NX PX script on a
// fresh key under prefix. Scenario (e) drives it as it drives the API, so
// the report can say what the reservation engine costs above it.
func FloorApp(rdb redis.UniversalClient, prefix string) *fiber.App {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	var n atomic.Int64
	app.Post("/floor", func(c *fiber.Ctx) error {
		key := prefix + "floor:" + strconv.FormatInt(n.Add(1), 10)
		ok, err := floorScript.Run(c.UserContext(), rdb, []string{key}, "bench", 60_000).Result()
		if err != nil && err != redis.Nil {
			return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"error": "redis"})
		}
		return c.Status(fiber.StatusCreated).JSON(fiber.Map{"key": key, "set": ok != nil})
	})
	return app
}
