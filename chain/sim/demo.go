package sim

import (
	"crypto/sha256"
	"encoding/hex"
)

// The demo pool that `bufferd dev` and `bufferd simchain` seed: the BTM asset
// locked by a made-up contract.
var (
	// DemoAsset is the demo pool's asset (BTM).
	DemoAsset = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
	// DemoProgram is the demo pool's control program (a P2WSH program).
	DemoProgram = func() string {
		s := sha256.Sum256([]byte("bufferd demo contract"))
		return "0020" + hex.EncodeToString(s[:])
	}()
)

// DemoAmounts are the amounts of the demo pool's UTXOs: 24 different amounts
// from 0.5 to 12 BTM (in neu, 50,000,000 apart).
func DemoAmounts() []uint64 {
	out := make([]uint64, 24)
	for i := range out {
		out[i] = uint64(i+1) * 50_000_000
	}
	return out
}
