package bench

import (
	"context"
	"testing"

	"github.com/bufferd/bufferd/internal/testenv"
)

func TestUsedMemoryReadsRedisInfo(t *testing.T) {
	testenv.Redis(t) // fails, or skips when allowed, without a Redis
	n, err := usedMemory(context.Background(), testenv.RedisURL())
	if err != nil || n <= 0 {
		t.Fatalf("used_memory %d, %v", n, err)
	}
}
