package scripts

import (
	"context"
	"errors"
	"io/fs"
	"regexp"
	"strconv"
	"testing"

	"github.com/bufferd/bufferd/internal/testenv"
)

// usedKey is a literal KEYS[n] in a script.
var usedKey = regexp.MustCompile(`KEYS\[(\d+)\]`)

// Every script declares its keys, takes the pool's keys first, and names no
// key past what it declares (a script taking more than it declares, N+,
// reads those by a computed index).
func TestScriptsDeclareTheirKeys(t *testing.T) {
	names, err := fs.Glob(files, "*.lua")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if name == "prelude.lua" {
			continue
		}
		s := load(name)
		if s.keys < PoolKeys {
			t.Errorf("%s declares %d keys, fewer than the pool's %d", name, s.keys, PoolKeys)
		}
		for _, m := range usedKey.FindAllStringSubmatch(mustRead(name), -1) {
			if n, _ := strconv.Atoi(m[1]); n > s.keys {
				t.Errorf("%s uses KEYS[%d] but declares %d keys", name, n, s.keys)
			}
		}
	}
	if len(names) < 12 {
		t.Fatalf("found %d scripts", len(names))
	}
}

// poolKeys returns n keys of one pool (one hash tag).
func poolKeys(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + "{p1}:k" + strconv.Itoa(i)
	}
	return out
}

// A call with another number of keys than the script declares fails in Go,
// before Redis runs anything; the right number runs.
func TestRunChecksTheKeyCount(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	for _, c := range []struct {
		s    *Script
		keys int
	}{
		{Release, PoolKeys},           // one short
		{Reclaim, PoolKeys + 1},       // one too many
		{RebuildCommit, PoolKeys + 4}, // 17 of at least 18
		{Reserve, PoolKeys + 3},       // two too many
	} {
		if err := c.s.Run(ctx, rdb, poolKeys(prefix, c.keys), "x").Err(); !errors.Is(err, ErrKeyCount) {
			t.Errorf("%s with %d keys: %v, want ErrKeyCount", c.s.Name, c.keys, err)
		}
	}
	if n, err := Reclaim.Run(ctx, rdb, poolKeys(prefix, PoolKeys)).Int(); err != nil || n != 0 {
		t.Fatalf("reclaim with its %d keys: %d, %v", PoolKeys, n, err)
	}
}

// The keys Go passes first are the pool's, in the order the prelude reads
// them (its table P: "free = KEYS[1], ...").
func TestKeysFollowThePrelude(t *testing.T) {
	k := KeysOf("x:", 7)
	if len(k.List) != PoolKeys {
		t.Fatalf("%d pool keys, the scripts take %d", len(k.List), PoolKeys)
	}
	read := regexp.MustCompile(`(\w+) = KEYS\[(\d+)\]`).FindAllStringSubmatch(prelude, -1)
	if len(read) != PoolKeys {
		t.Fatalf("the prelude reads %d pool keys, want %d", len(read), PoolKeys)
	}
	for _, m := range read {
		i, _ := strconv.Atoi(m[2])
		key := k.List[i-1]
		if key != "x:{p7}:"+m[1] && key != "x:{p7}:"+m[1]+":" {
			t.Errorf("KEYS[%d] is the prelude's %s, Go passes %s", i, m[1], key)
		}
	}
}
