package lockmgr

import (
	"embed"

	"github.com/redis/go-redis/v9"
)

//go:embed scripts/*.lua
var scriptFS embed.FS

// prelude holds the helpers every script starts with (clock, reclaim, notify...).
var prelude = mustRead("scripts/prelude.lua")

func mustRead(name string) string {
	b, err := scriptFS.ReadFile(name)
	if err != nil {
		panic("lockmgr: missing embedded script " + name)
	}
	return string(b)
}

// load returns a script with the shared prelude.
func load(name string) *redis.Script {
	return redis.NewScript(prelude + mustRead("scripts/"+name))
}

var (
	reserveScript       = load("reserve.lua")
	releaseScript       = load("release.lua")
	undoScript          = load("undo.lua")
	extendScript        = load("extend.lua")
	submitScript        = load("submit.lua")
	endScript           = load("end.lua")
	listScript          = load("list.lua")
	shortenLegacyScript = load("shorten_legacy.lua")
	chainScript         = load("chain.lua")
	reclaimScript       = load("reclaim.lua")
	rebuildCommitScript = load("rebuild_commit.lua")
)
