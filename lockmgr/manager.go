package lockmgr

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Manager is the reservation engine of one Redis: New builds it, and it is
// the sum of its concerns, each a type of its own over the same connection,
// key prefix and fencing epoch:
//
//   - Reservations: the clients' reservations (reserve, wait, read, extend,
//     submit, release) and their endings in Redis;
//   - Pools: the pools' UTXOs as Redis offers them, the chain's changes to
//     them, listings and counts;
//   - Releases: the pools' logs of releases, which the syncer writes to the
//     journal;
//   - Loads: whether a pool is loaded into Redis, and its rebuild.
//
// Their methods are promoted (m.Reserve, m.ApplyChain); a caller that needs
// one concern only can take it alone (m.Pools). A Manager is safe for
// concurrent use; any number of Managers on any number of hosts may share
// one Redis.
type Manager struct {
	*core
	*Reservations
	*Pools
	*Releases
	*Loads
}

// New returns a Manager on rdb (a client, a failover client or a cluster client).
func New(rdb redis.UniversalClient, opts Options) *Manager {
	grace := opts.SubmitGrace
	if grace <= 0 {
		grace = DefaultSubmitGrace
	}
	life := opts.MaxLifetime
	if life <= 0 {
		life = MaxLifetime
	}
	m := compose(&core{rdb: rdb, prefix: opts.Prefix}, Reservations{journal: opts.Journal, grace: grace, life: life,
		hub: &hub{waiters: map[string]map[chan struct{}]struct{}{}}, reloads: newReloads()})
	if opts.Journal != nil {
		opts.Journal.FollowReloads(m.endOnceLoaded)
	}
	return m
}

// Fenced returns a Manager sharing m's connection whose sync writes
// (ApplyChain, EndReservations) carry the leadership epoch of a sync job: each
// pool remembers the highest epoch that wrote to it and refuses an older one
// with ErrStaleEpoch, so a deposed leader's late write cannot undo a newer
// leader's. Every concern of the returned Manager carries the epoch, also
// one taken alone (Fenced(e).Pools). The clients' operations (Reserve, Extend,
// Release...) do not use it.
func (m *Manager) Fenced(epoch int64) *Manager {
	c := *m.core
	c.epoch = epoch
	return compose(&c, *m.Reservations)
}

// compose builds the Manager of c: every concern points at c, so all of
// them carry its epoch. r brings the settings of the reservations (its
// notification hub is shared with the Manager r was copied from).
func compose(c *core, r Reservations) *Manager {
	r.core = c
	return &Manager{core: c, Reservations: &r, Pools: &Pools{core: c}, Releases: &Releases{core: c}, Loads: &Loads{core: c}}
}

// Ping checks that Redis answers.
func (m *Manager) Ping(ctx context.Context) error { return m.rdb.Ping(ctx).Err() }
