// Package scripts holds lockmgr's Lua scripts: every operation on a pool's
// keys in Redis is one of them, run after the shared prelude (prelude.lua,
// which documents the key layout). Each script declares how many keys it
// takes ("--! keys N", or "N+" when more may follow) and Run checks it.
package scripts

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// PoolKeys is how many keys every script receives first: the pool's, in the
// order prelude.lua documents.
const PoolKeys = 13

// ErrKeyCount is a script called with another number of keys than its
// header declares: a bug in lockmgr, never sent to Redis.
var ErrKeyCount = errors.New("lockmgr: script called with the wrong number of keys")

//go:embed *.lua
var files embed.FS

// prelude holds the helpers every script starts with (clock, reclaim, notify...).
var prelude = mustRead("prelude.lua")

func mustRead(name string) string {
	b, err := files.ReadFile(name)
	if err != nil {
		panic("lockmgr: missing embedded script " + name)
	}
	return string(b)
}

// Script is an embedded Lua script with the shared prelude, and the number
// of keys its header declares.
type Script struct {
	*redis.Script
	Name string
	keys int  // how many keys it takes,
	more bool // or at least, when more may follow
}

// keysLine is a script's declaration of its keys: "--! keys 14" or "--! keys 18+".
var keysLine = regexp.MustCompile(`(?m)^--! keys (\d+)(\+?)$`)

// load returns the script name with the shared prelude.
func load(name string) *Script {
	body := mustRead(name)
	m := keysLine.FindStringSubmatch(body)
	if m == nil {
		panic("lockmgr: script " + name + " does not declare its keys (--! keys N)")
	}
	n, _ := strconv.Atoi(m[1])
	return &Script{Script: redis.NewScript(prelude + body), Name: name, keys: n, more: m[2] == "+"}
}

// Run runs the script with keys, which must be as many as it declares.
func (s *Script) Run(ctx context.Context, c redis.Scripter, keys []string, args ...any) *redis.Cmd {
	if len(keys) < s.keys || len(keys) > s.keys && !s.more {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(fmt.Errorf("%w: %s declares %d keys, given %d", ErrKeyCount, s.Name, s.keys, len(keys)))
		return cmd
	}
	return s.Script.Run(ctx, c, keys, args...)
}

// The scripts, one per operation (see each file's header).
var (
	Reserve       = load("reserve.lua")
	Release       = load("release.lua")
	Undo          = load("undo.lua")
	Extend        = load("extend.lua")
	Submit        = load("submit.lua")
	End           = load("end.lua")
	List          = load("list.lua")
	ShortenLegacy = load("shorten_legacy.lua")
	Chain         = load("chain.lua")
	Reclaim       = load("reclaim.lua")
	RebuildCommit = load("rebuild_commit.lua")
)
