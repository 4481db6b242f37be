package lockmgr

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

//go:embed scripts/reclaim.lua
var reclaimLua string

//go:embed scripts/reserve.lua
var reserveLua string

//go:embed scripts/release.lua
var releaseLua string

//go:embed scripts/list.lua
var listLua string

//go:embed scripts/shorten_legacy.lua
var shortenLegacyLua string

//go:embed scripts/sync.lua
var syncLua string

//go:embed scripts/fence_floor.lua
var fenceFloorLua string

//go:embed scripts/load_commit.lua
var loadCommitLua string

// Scripts that read or change holds start with the shared reclaim prelude.
var (
	reserveScript       = redis.NewScript(reclaimLua + reserveLua)
	releaseScript       = redis.NewScript(reclaimLua + releaseLua)
	listScript          = redis.NewScript(reclaimLua + listLua)
	shortenLegacyScript = redis.NewScript(reclaimLua + shortenLegacyLua)
	syncScript          = redis.NewScript(syncLua)
	loadCommitScript    = redis.NewScript(loadCommitLua)
	fenceFloorScript    = redis.NewScript(fenceFloorLua)
)
