package sim

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/bufferd/bufferd/chain"
)

// zeroHash is the all-zero hash: the genesis block's previous hash and the
// asset id of a coinbase input.
var zeroHash = strings.Repeat("0", 64)

// hashOf is sha256 over length-prefixed parts, as lowercase hex.
func hashOf(parts ...string) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, p := range parts {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func txHash(seq uint64, inputs []*utxo, outs []Output, fail bool) string {
	parts := []string{"tx", strconv.FormatUint(seq, 10), strconv.FormatBool(fail), strconv.Itoa(len(inputs))}
	for _, in := range inputs {
		parts = append(parts, in.hash)
	}
	for _, o := range outs {
		parts = append(parts, o.Asset, o.Program, strconv.FormatUint(o.Amount, 10))
	}
	return hashOf(parts...)
}

// coinbaseHash depends only on the height and the output, like a real
// coinbase: the same height on another branch has the same id.
func coinbaseHash(height uint64, out Output) string {
	return hashOf("coinbase", strconv.FormatUint(height, 10), out.Asset, out.Program, strconv.FormatUint(out.Amount, 10))
}

func outputHash(txID string, pos int) string { return hashOf("output", txID, strconv.Itoa(pos)) }

func blockHash(prev string, height, salt uint64, txIDs []string) string {
	parts := append([]string{"block", prev, strconv.FormatUint(height, 10), strconv.FormatUint(salt, 10)}, txIDs...)
	return hashOf(parts...)
}

func outputHashes(t *tx) []string {
	hs := make([]string, len(t.outputs))
	for i, o := range t.outputs {
		hs[i] = o.hash
	}
	return hs
}

// Lengths of the witness programs, in hex characters.
const (
	p2wpkhLen = 4 + 2*20 // 0014 + 20 bytes
	p2wshLen  = 4 + 2*32 // 0020 + 32 bytes
)

func isP2WPKH(program string) bool {
	return len(program) == p2wpkhLen && strings.HasPrefix(program, "0014")
}

func isP2WSH(program string) bool {
	return len(program) == p2wshLen && strings.HasPrefix(program, "0020")
}

// isP2W reports whether program is what bytomd calls a P2W script (the only
// programs that may hold BTM): a version-0 P2WPKH or P2WSH program, or a
// single OP_TRUE or OP_FAIL.
func isP2W(program string) bool {
	return isP2WPKH(program) || isP2WSH(program) || program == "51" || program == "6a"
}

// Address derives the simulator's made-up address of a P2WPKH or P2WSH
// program: "sm1q" followed by the first 38 (P2WPKH) or 58 (P2WSH) hex
// characters of sha256(program), the lengths of real solonet addresses. Other
// programs have no address: "".
func Address(program string) string {
	n := 0
	switch {
	case isP2WPKH(program):
		n = 38
	case isP2WSH(program):
		n = 58
	default:
		return ""
	}
	s := sha256.Sum256([]byte(program))
	return "sm1q" + hex.EncodeToString(s[:])[:n]
}

// isHash reports whether s is 64 lowercase hex characters (an asset id, output
// hash or transaction id).
func isHash(s string) bool { return len(s) == 64 && isHex(s) }

// isProgram reports whether s is a non-empty, even-length lowercase hex control
// program of at most maxProgramLen characters.
func isProgram(s string) bool {
	return s != "" && len(s)%2 == 0 && len(s) <= maxProgramLen && isHex(s)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if (ch < '0' || ch > '9') && (ch < 'a' || ch > 'f') {
			return false
		}
	}
	return true
}

// validInputs checks the output hashes a spend names.
func validInputs(hashes []string) error {
	if len(hashes) == 0 || len(hashes) > maxOutputs {
		return fmt.Errorf("%w: need 1 to %d inputs", errInvalid, maxOutputs)
	}
	seen := make(map[string]bool, len(hashes))
	for _, h := range hashes {
		if !isHash(h) {
			return fmt.Errorf("%w: input %.80q is not 64 lowercase hex", errInvalid, h)
		}
		if seen[h] {
			return fmt.Errorf("%w: input %s listed twice", errInvalid, h)
		}
		seen[h] = true
	}
	return nil
}

func validOutputs(outs []Output) error {
	for i, o := range outs {
		switch {
		case !isHash(o.Asset):
			return fmt.Errorf("%w: output %d: asset %.80q is not 64 lowercase hex", errInvalid, i, o.Asset)
		case !isProgram(o.Program):
			return fmt.Errorf("%w: output %d: program must be even-length lowercase hex (max %d)", errInvalid, i, maxProgramLen)
		case o.Amount == 0:
			return fmt.Errorf("%w: output %d: amount must be > 0", errInvalid, i)
		case o.Asset == chain.BTMAsset && !isP2W(o.Program):
			return fmt.Errorf("%w: output %d locks BTM in the non-P2W program %.80s", errNotStandard, i, o.Program)
		}
	}
	return nil
}
