package sim_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
)

// The answers of a real bytomd v1.1.0 node (solonet), recorded in
// chain/testdata/bytomd-v1.1.0. The simulator must answer the equivalent
// requests in the same shape.

const recordedDir = "../testdata/bytomd-v1.1.0"

// unservedRoutes are recorded routes the simulator does not serve (wallet
// and transaction-building routes): it answers them like any unknown route.
var unservedRoutes = []string{"/get-transaction", "/build-transaction", "/sign-transaction",
	"/decode-raw-transaction", "/submit-transaction"}

// recording is one recorded call.
type recording struct {
	Route      string          `json:"route"`
	Request    json.RawMessage `json:"request"`
	HTTPStatus int             `json:"http_status"`
	Response   json.RawMessage `json:"response"`
}

func loadRecordings(t *testing.T) map[string]recording {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(recordedDir, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no recordings in %s: %v", recordedDir, err)
	}
	recs := make(map[string]recording, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var r recording
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		recs[filepath.Base(p)] = r
	}
	return recs
}

// kind is the JSON kind of a decoded value; integers and other numbers differ.
func kind(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case string:
		return "string"
	case json.Number:
		if strings.ContainsAny(string(x), ".eE") {
			return "number"
		}
		return "integer"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// conform checks that got, the simulator's answer, has the shape of want,
// the node's: the same kinds and, in objects, the same keys, recursively.
// Each element of an array must have the shape of one of the node's
// elements there; an array is empty in both or in neither. The class of a
// program (P2W or not) is part of the shape: the node's keys depend on it.
func conform(want, got any, path string) error {
	if kind(want) != kind(got) {
		return fmt.Errorf("%s: %s, the node has %s", path, kind(got), kind(want))
	}
	switch w := want.(type) {
	case map[string]any:
		return conformObject(w, got.(map[string]any), path)
	case []any:
		return conformArray(w, got.([]any), path)
	}
	return nil
}

func conformObject(want, got map[string]any, path string) error {
	for k := range want {
		if _, ok := got[k]; !ok {
			return fmt.Errorf("%s: no key %q", path, k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			return fmt.Errorf("%s: key %q the node does not send", path, k)
		}
	}
	for k := range want {
		if err := conform(want[k], got[k], path+"."+k); err != nil {
			return err
		}
		if k == "control_program" || k == "program" {
			if w, g := programClass(want[k]), programClass(got[k]); w != g {
				return fmt.Errorf("%s.%s: a %s program, the node has a %s one", path, k, g, w)
			}
		}
	}
	return nil
}

// programClass tells a P2W program (P2WPKH or P2WSH) from the others.
func programClass(v any) string {
	s, _ := v.(string)
	if (len(s) == 44 && strings.HasPrefix(s, "0014")) || (len(s) == 68 && strings.HasPrefix(s, "0020")) {
		return "P2W"
	}
	return "non-P2W"
}

func conformArray(want, got []any, path string) error {
	if (len(want) == 0) != (len(got) == 0) {
		return fmt.Errorf("%s: %d elements, the node has %d", path, len(got), len(want))
	}
	for i, g := range got {
		var errs []string
		for _, w := range want {
			err := conform(w, g, fmt.Sprintf("%s[%d]", path, i))
			if err == nil {
				errs = nil
				break
			}
			if !slices.Contains(errs, err.Error()) {
				errs = append(errs, err.Error())
			}
		}
		if errs != nil {
			return fmt.Errorf("like none of the node's elements: %s", strings.Join(errs, "; "))
		}
	}
	return nil
}

func TestConform(t *testing.T) {
	p2w, other := `"program":"`+program+`"`, `"program":"5151"`
	node := `{"a":[{"b":1},{"c":"x"}],"d":null,` + p2w + `}`
	if err := conform(jsonTree(t, []byte(node)), jsonTree(t, []byte(`{"d":null,"a":[{"c":"y"},{"b":2},{"b":3}],`+p2w+`}`)), "$"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{"a":[{"b":1}],"d":null,"e":1,` + p2w + `}`,   // an extra key
		`{"a":[{"b":1}],` + p2w + `}`,                  // a missing key
		`{"a":[{"b":"1"}],"d":null,` + p2w + `}`,       // a string for a number
		`{"a":[{"b":1.5}],"d":null,` + p2w + `}`,       // a float for an integer
		`{"a":[{"b":1,"c":"x"}],"d":null,` + p2w + `}`, // an element like none of the node's
		`{"a":[],"d":null,` + p2w + `}`,                // an empty array
		`{"a":[{"b":1}],"d":[],` + p2w + `}`,           // an array for null
		`{"a":[{"b":1}],"d":null,` + other + `}`,       // another class of program
	} {
		if err := conform(jsonTree(t, []byte(node)), jsonTree(t, []byte(bad)), "$"); err == nil {
			t.Errorf("%s conforms", bad)
		}
	}
}

// conformer sends the recorded calls' equivalents to a simulator.
type conformer struct {
	t       *testing.T
	base    string
	recs    map[string]recording
	checked map[string]bool
}

// check sends the request of the recording name, with the keys and values
// of overrides set, and compares the answer with the node's: HTTP status,
// envelope (status, code, msg, and error_detail of a handler error) and shape.
func (cf *conformer) check(name string, overrides ...any) {
	t := cf.t
	t.Helper()
	rec, ok := cf.recs[name]
	if !ok {
		t.Fatalf("no recording %s", name)
	}
	cf.checked[name] = true
	req := jsonTree(t, rec.Request).(map[string]any)
	for i := 0; i+1 < len(overrides); i += 2 {
		req[overrides[i].(string)] = overrides[i+1]
	}
	cf.compare(name, rec, rec.Route, req)
}

func (cf *conformer) compare(name string, rec recording, route string, req any) {
	t := cf.t
	t.Helper()
	status, raw := postRaw(t, cf.base+route, req)
	if status != rec.HTTPStatus {
		t.Errorf("%s: HTTP %d, the node's %d: %s", name, status, rec.HTTPStatus, raw)
		return
	}
	want, got := jsonTree(t, rec.Response), jsonTree(t, raw)
	keys := []string{"status", "code", "msg"}
	if rec.HTTPStatus == http.StatusOK {
		keys = append(keys, "error_detail")
	}
	for _, k := range keys {
		if w, g := want.(map[string]any)[k], got.(map[string]any)[k]; w != g {
			t.Errorf("%s: %s %v, the node's %v", name, k, g, w)
		}
	}
	if err := conform(want, got, "$"); err != nil {
		t.Errorf("%s: %v\nsimulator: %s", name, err, raw)
	}
}

// TestSimulatorAnswersLikeTheNode replays the recorded session on the
// simulator, step by step, and checks each recorded call at the step where
// the simulator's chain is in the same situation.
func TestSimulatorAnswersLikeTheNode(t *testing.T) {
	c := sim.New()
	cf := &conformer{t: t, base: serve(t, c), recs: loadRecordings(t), checked: map[string]bool{}}
	miner := sim.MinerAccountAlias
	gold := asset
	reward := func(h uint64) string { return mustBlock(t, c, h).Txs[0].Outputs[0].UTXO }

	cf.check("get-block-genesis.json")

	// Blocks with a coinbase only.
	mustMine(t, c, 2)
	cf.check("get-block-coinbase.json")
	cf.check("get-block-by-hash.json", "block_hash", c.Tip().BlockHash)
	cf.check("get-block-header.json")

	// The first two rewards mature; the others are listed all the same.
	mustMine(t, c, chain.CoinbaseMaturity)
	cf.check("get-block-count-at-immature-listing.json")
	cf.check("list-unspent-outputs-smart_contract-false-immature-coinbase.json", "account_alias", miner)

	// A transfer from the wallet in the mempool.
	transfer, touts := mustSpend(t, c, []string{reward(1)}, false,
		out(btm, other, sim.CoinbaseReward-110_000_000), out(btm, sim.MinerProgram, 100_000_000))
	cf.check("list-unconfirmed-transactions.json")
	cf.check("get-unconfirmed-transaction.json", "tx_id", transfer)
	cf.check("list-unspent-outputs-smart_contract-false-unconfirmed-true-with-mempool-tx.json", "account_alias", miner)
	cf.check("list-unspent-outputs-smart_contract-true-unconfirmed-true-with-mempool-tx.json", "account_alias", miner)
	cf.check("list-unspent-outputs-smart_contract-true-empty.json", "account_alias", miner)

	// A double spend: the block takes the first, the second vanishes.
	mustSpend(t, c, []string{reward(2)}, false, out(btm, sim.MinerProgram, sim.CoinbaseReward-10_000_000))
	loser, _ := mustSpend(t, c, []string{reward(2)}, false, out(btm, sim.MinerProgram, sim.CoinbaseReward-20_000_000))
	transferBlock := mustMine(t, c, 1).Height
	gone(t, c, loser)
	cf.check("get-block-with-transfer.json", "block_height", transferBlock)
	cf.check("get-unconfirmed-transaction-after-confirmation-error.json", "tx_id", transfer)
	cf.check("get-unconfirmed-transaction-unknown-error.json")
	cf.check("list-unconfirmed-transactions-empty.json")

	// GOLD moves to the contract 5151: pending, then confirmed.
	goldP2W := mustAddTo(t, c, gold, sim.MinerProgram, 1_000_000)
	_, gouts := mustSpend(t, c, goldP2W, false, out(gold, contract, 1_000_000))
	cf.check("list-unspent-outputs-smart_contract-true-unconfirmed-false-mempool-issue.json")
	cf.check("list-unspent-outputs-smart_contract-true-unconfirmed-true-mempool-issue.json")
	mustMine(t, c, 1)
	cf.check("list-unspent-outputs-smart_contract-true-confirmed.json")

	// The contract output is spent with a BTM fee input.
	contractSpend, couts := mustSpend(t, c, []string{gouts[0], touts[0]}, false,
		out(btm, program, 80_000_000), out(gold, sim.MinerProgram, 1_000_000))
	cf.check("get-unconfirmed-transaction-contract-spend.json", "tx_id", contractSpend)
	cf.check("list-unspent-outputs-smart_contract-true-unconfirmed-true-after-mempool-spend.json")
	cf.check("list-unspent-outputs-smart_contract-true-unconfirmed-false-after-mempool-spend.json")
	contractBlock := mustMine(t, c, 1).Height
	cf.check("get-block-with-contract-spend.json", "block_height", contractBlock)
	cf.check("list-unspent-outputs-smart_contract-true-after-spend-mined.json")

	// A payment to a P2WSH program, and GOLD issued to the contract above 2^53.
	mustSpend(t, c, couts[:1], false, out(btm, program, 70_000_000), out(btm, p2wsh, 5_000_000))
	issued := mustAddTo(t, c, gold, contract, 1<<53+1)
	issueBlock := c.Tip().Height
	paymentBlock := mustMine(t, c, 1).Height
	cf.check("get-block-with-issue-and-p2wsh-output.json", "block_height", issueBlock)
	cf.check("get-block-with-issue-and-p2wsh-output.json", "block_height", paymentBlock)
	cf.check("list-unspent-outputs-by-id.json", "id", issued[0])
	cf.check("list-unspent-outputs-smart_contract-true-amount-above-2p53.json")

	// Whatever the state: the tip, errors.
	cf.check("get-block-count.json")
	cf.check("get-block-count-at-immature-build.json")
	cf.check("get-block-hash.json")
	cf.check("get-block-beyond-tip-error.json")
	cf.check("get-block-malformed-body-error.json")
	cf.check("unknown-route-error.json")

	// The routes the simulator does not serve answer like unknown routes.
	unknown := cf.recs["unknown-route-error.json"]
	for name, rec := range cf.recs {
		if cf.checked[name] {
			continue
		}
		if !slices.Contains(unservedRoutes, rec.Route) {
			t.Errorf("%s: route %s is served, but the recording is not checked", name, rec.Route)
			continue
		}
		cf.compare(name+" (unserved)", unknown, rec.Route, string(rec.Request))
	}
}
