package lockmgr

import (
	"context"
	"errors"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/bufferd/bufferd/testenv"
)

// usedKey is a literal KEYS[n] in a script.
var usedKey = regexp.MustCompile(`KEYS\[(\d+)\]`)

// Every script declares its keys, takes the pool's keys first, and names no
// key past what it declares (a script taking more than it declares, N+,
// reads those by a computed index).
func TestScriptsDeclareTheirKeys(t *testing.T) {
	names, err := fs.Glob(scriptFS, "scripts/*.lua")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		name = strings.TrimPrefix(name, "scripts/")
		if name == "prelude.lua" {
			continue
		}
		s := load(name)
		if s.keys < poolKeyCount {
			t.Errorf("%s declares %d keys, fewer than the pool's %d", name, s.keys, poolKeyCount)
		}
		for _, m := range usedKey.FindAllStringSubmatch(mustRead("scripts/"+name), -1) {
			if n, _ := strconv.Atoi(m[1]); n > s.keys {
				t.Errorf("%s uses KEYS[%d] but declares %d keys", name, n, s.keys)
			}
		}
	}
	if len(names) < 12 {
		t.Fatalf("found %d scripts", len(names))
	}
}

// A call with another number of keys than the script declares fails in Go,
// before Redis runs anything; the right number runs.
func TestScriptRunChecksItsKeys(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	m := New(rdb, Options{Prefix: prefix})
	k := m.keys(1)
	ctx := context.Background()
	for _, c := range []struct {
		s    *script
		keys []string
	}{
		{releaseScript, k.list},                                       // one short
		{reclaimScript, k.with(k.releases())},                         // one too many
		{rebuildCommitScript, k.with("a", "b", "c", "d")},             // 17 of at least 18
		{reserveScript, k.with(k.idemKey(""), k.releases(), "extra")}, // two too many
	} {
		if err := c.s.run(ctx, rdb, c.keys, "x").Err(); !errors.Is(err, ErrScriptKeys) {
			t.Errorf("%s with %d keys: %v, want ErrScriptKeys", c.s.name, len(c.keys), err)
		}
	}
	if n, err := reclaimScript.run(ctx, rdb, k.list).Int(); err != nil || n != 0 {
		t.Fatalf("reclaim with its 13 keys: %d, %v", n, err)
	}
}
