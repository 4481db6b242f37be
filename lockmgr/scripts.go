package lockmgr

import (
	"context"
	"embed"
	"fmt"
	"regexp"
	"strconv"

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

// script is an embedded Lua script with the shared prelude, and the number
// of keys its header declares.
type script struct {
	*redis.Script
	name string
	keys int  // how many keys it takes,
	more bool // or at least, when more may follow
}

// keysLine is a script's declaration of its keys: "--! keys 14" or "--! keys 18+".
var keysLine = regexp.MustCompile(`(?m)^--! keys (\d+)(\+?)$`)

// load returns the script scripts/name with the shared prelude.
func load(name string) *script {
	body := mustRead("scripts/" + name)
	m := keysLine.FindStringSubmatch(body)
	if m == nil {
		panic("lockmgr: script " + name + " does not declare its keys (--! keys N)")
	}
	n, _ := strconv.Atoi(m[1])
	return &script{Script: redis.NewScript(prelude + body), name: name, keys: n, more: m[2] == "+"}
}

// run runs the script with keys, which must be as many as it declares.
func (s *script) run(ctx context.Context, c redis.Scripter, keys []string, args ...any) *redis.Cmd {
	if len(keys) < s.keys || len(keys) > s.keys && !s.more {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(fmt.Errorf("%w: %s declares %d keys, given %d", ErrScriptKeys, s.name, s.keys, len(keys)))
		return cmd
	}
	return s.Run(ctx, c, keys, args...)
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
