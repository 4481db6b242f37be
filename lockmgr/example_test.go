package lockmgr_test

import (
	"context"
	"fmt"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/redis/go-redis/v9"
)

// A syncer makes a pool's UTXOs reservable; an API replica reserves one of them.
func ExampleReservations_Reserve() {
	opt, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		panic(err)
	}
	rdb := redis.NewClient(opt)
	defer func() { _ = rdb.Close() }()
	prefix := testenv.RandomName("example") + ":"
	m := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix})
	ctx := context.Background()

	utxo := "4f1a0c3b2e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa00"
	if err := m.LoadAvailable(ctx, 7, []lockmgr.Item{{Hash: utxo, Amount: 500}}); err != nil {
		panic(err)
	}
	r, err := m.Reserve(ctx, lockmgr.Request{PoolID: 7, Count: 1, Owner: "alice"})
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Items[0].Amount, r.Fence > 0, len(r.ID))

	_, err = m.Reserve(ctx, lockmgr.Request{PoolID: 7, Hashes: []string{utxo}, Owner: "bob"})
	fmt.Println(err)

	iter := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
	// Output:
	// 500 true 32
	// lockmgr: utxo is locked: 4f1a0c3b2e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa00
}
