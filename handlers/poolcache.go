package handlers

import (
	"context"
	"sync"

	"github.com/bufferd/bufferd/storage"
)

// maxCachedPools bounds the pool cache; past it the cache starts over.
const maxCachedPools = 10_000

// poolCache remembers pools by id and by asset and program: a synced pool
// never changes, so reserves and releases need not read it from PostgreSQL
// each time. Unknown pools are not remembered, nor pools not synced yet
// (their SyncedAt changes once, when the syncer has their UTXO set).
type poolCache struct {
	mu    sync.RWMutex
	byID  map[int64]storage.Pool
	byKey map[string]storage.Pool
}

func (c *poolCache) put(p storage.Pool) {
	if p.SyncedAt == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil || len(c.byID) >= maxCachedPools {
		c.byID, c.byKey = map[int64]storage.Pool{}, map[string]storage.Pool{}
	}
	c.byID[p.ID] = p
	c.byKey[p.Asset+"/"+p.Program] = p
}

// cachedPool returns the pool with id (storage.ErrNotFound when there is none).
func (s *server) cachedPool(ctx context.Context, id int64) (storage.Pool, error) {
	s.pools.mu.RLock()
	p, ok := s.pools.byID[id]
	s.pools.mu.RUnlock()
	if ok {
		return p, nil
	}
	p, err := s.store.GetPool(ctx, id)
	if err == nil {
		s.pools.put(p)
	}
	return p, err
}

// cachedPoolOf returns the pool of asset and program, both normalised.
func (s *server) cachedPoolOf(ctx context.Context, asset, program string) (storage.Pool, error) {
	s.pools.mu.RLock()
	p, ok := s.pools.byKey[asset+"/"+program]
	s.pools.mu.RUnlock()
	if ok {
		return p, nil
	}
	p, err := s.store.FindPool(ctx, asset, program)
	if err == nil {
		s.pools.put(p)
	}
	return p, err
}

// maxCachedUTXOs bounds the cache of UTXO pools; past it the cache starts over.
const maxCachedUTXOs = 200_000

// utxoPools remembers the pool of the UTXOs /dapp/list-utxos listed, so that
// /dapp/update-utxo, which names only a hash, finds the pool without asking
// PostgreSQL. A UTXO's pool never changes.
type utxoPools struct {
	mu     sync.RWMutex
	byHash map[string]int64
}

func (c *utxoPools) put(pool int64, hashes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byHash == nil || len(c.byHash)+len(hashes) > maxCachedUTXOs {
		c.byHash = make(map[string]int64, len(hashes))
	}
	for _, h := range hashes {
		c.byHash[h] = pool
	}
}

func (c *utxoPools) get(hash string) (int64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.byHash[hash]
	return p, ok
}
