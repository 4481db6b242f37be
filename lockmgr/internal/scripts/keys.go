package scripts

import "strconv"

// Keys are the keys of one pool; they all share the hash tag {p<id>} (put
// after the deployment's prefix), so a pool lives in one Redis Cluster slot.
// List holds the ones every script receives first, in the order prelude.lua
// documents.
type Keys struct {
	Tag                                                                                         string
	Free, UTXO, Held, Holder, Legacy, Fence, Ready, SyncGen, Epoch, Res, Freed, Submitted, Idem string
	List                                                                                        []string
}

// KeysOf returns the keys of pool under prefix.
func KeysOf(prefix string, pool int64) Keys {
	tag := prefix + "{p" + strconv.FormatInt(pool, 10) + "}"
	k := Keys{
		Tag:       tag,
		Free:      tag + ":free",
		UTXO:      tag + ":utxo",
		Held:      tag + ":held",
		Holder:    tag + ":holder",
		Legacy:    tag + ":legacy",
		Fence:     tag + ":fence",
		Ready:     tag + ":ready",
		SyncGen:   tag + ":syncgen",
		Epoch:     tag + ":epoch",
		Res:       tag + ":res:",
		Freed:     tag + ":freed",
		Submitted: tag + ":submitted",
		Idem:      tag + ":idem:",
	}
	k.List = []string{k.Free, k.UTXO, k.Held, k.Holder, k.Legacy, k.Fence, k.Ready, k.SyncGen, k.Epoch,
		k.Res, k.Freed, k.Submitted, k.Idem}
	return k
}

// Releases is the key of the pool's releases kept for the sweep (release.lua).
func (k Keys) Releases() string { return k.Tag + ":releases" }

// ListTurn is the key of the pool's counter of sampled listings (list.lua).
func (k Keys) ListTurn() string { return k.Tag + ":listturn" }

// With returns the pool's keys followed by extra.
func (k Keys) With(extra ...string) []string {
	out := make([]string, 0, len(k.List)+len(extra))
	return append(append(out, k.List...), extra...)
}

// IdemKey is the key of an idempotency key's digest; with no key, a key of
// the pool that no script writes (scripts take a fixed number of keys).
func (k Keys) IdemKey(digest string) string {
	if digest == "" {
		return k.Idem + "-"
	}
	return k.Idem + digest
}

// Stage names the keys a rebuild builds its new state in; each rebuild has
// its own, so concurrent rebuilds never mix.
func (k Keys) Stage(nonce string) (free, utxo string) {
	return k.Tag + ":stage:" + nonce + ":free", k.Tag + ":stage:" + nonce + ":utxo"
}
