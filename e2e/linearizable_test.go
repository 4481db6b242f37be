package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Operations of the linearizability history.
const (
	opReserve = "reserve"
	opExtend  = "extend"
	opSubmit  = "submit"
	opRelease = "release"
	opGet     = "get"
)

// linInput is one operation on one UTXO: a reserve of Hash, or an operation on
// reservation ID, which holds (or held) Hash.
type linInput struct {
	Op   string
	Hash string
	ID   string
	Tx   string // submit's transaction id
}

// linOutput is what the operation returned: OK (201 for reserve, 200 for the
// others) with the granted ID for reserve, the state for get. Unknown marks an
// operation answered 503, which may or may not have taken effect.
type linOutput struct {
	OK      bool
	Unknown bool
	ID      string
	State   string
	Status  int
}

// utxoState is the model's state of one UTXO: free (Holder ""), or held by
// reservation Holder, submitted with Tx when Submitted; Released lists the
// reservations of it that were released (sorted, comma-separated, so that
// states compare with ==).
type utxoState struct {
	Holder    string
	Submitted bool
	Tx        string
	Released  string
}

// released reports whether reservation id was released.
func (s utxoState) released(id string) bool {
	return id != "" && slices.Contains(strings.Split(s.Released, ","), id)
}

// withReleased returns Released with id added.
func (s utxoState) withReleased(id string) string {
	ids := []string{id}
	if s.Released != "" {
		ids = append(strings.Split(s.Released, ","), id)
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

// unknownHolder holds a UTXO in the model after a reserve answered 503 that
// may have been granted; no later operation can name it.
const unknownHolder = "?"

// reservationModel is the sequential specification of the reservation API for
// one UTXO (histories are partitioned by UTXO hash; every reservation here
// holds one UTXO and nothing expires):
//
//   - reserve succeeds iff the UTXO is free, and then holds it for the new id;
//   - extend succeeds iff id holds it and has not been submitted;
//   - submit succeeds iff id holds it and was not submitted with another
//     transaction (submitting again with the same one is idempotent);
//   - release succeeds iff id holds it and has not been submitted, and frees
//     it; releasing a released reservation succeeds again and changes nothing
//     (bufferd 2: release is idempotent, and a submitted reservation cannot
//     be released: 409 reservation_submitted);
//   - get answers held or submitted while id holds it, released after.
//
// An operation with an Unknown outcome may have taken effect or not.
var reservationModel = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byHash := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range history {
			h := op.Input.(linInput).Hash
			if _, ok := byHash[h]; !ok {
				order = append(order, h)
			}
			byHash[h] = append(byHash[h], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, h := range order {
			out = append(out, byHash[h])
		}
		return out
	},
	Init: func() []any { return []any{utxoState{}} },
	Step: func(state, input, output any) []any {
		st, in, out := state.(utxoState), input.(linInput), output.(linOutput)
		holds := st.Holder != "" && st.Holder == in.ID
		// next is the state after the operation succeeded, ok whether it could.
		var next utxoState
		var ok bool
		switch in.Op {
		case opReserve:
			ok = st.Holder == ""
			next = utxoState{Holder: out.ID, Released: st.Released}
			if out.Unknown {
				next.Holder = unknownHolder
			}
		case opExtend:
			ok, next = holds && !st.Submitted, st
		case opSubmit:
			ok = holds && (!st.Submitted || st.Tx == in.Tx)
			next = utxoState{Holder: st.Holder, Submitted: true, Tx: in.Tx, Released: st.Released}
		case opRelease:
			switch {
			case holds && !st.Submitted:
				ok, next = true, utxoState{Released: st.withReleased(in.ID)}
			case st.released(in.ID):
				ok, next = true, st
			}
		case opGet:
			if out.Unknown {
				return []any{st}
			}
			want := ""
			switch {
			case holds && st.Submitted:
				want = "submitted"
			case holds:
				want = "held"
			case st.released(in.ID):
				want = "released"
			}
			if want != "" && out.State == want {
				return []any{st}
			}
			return nil
		}
		switch {
		case out.Unknown && ok:
			return []any{st, next}
		case out.Unknown:
			return []any{st}
		case out.OK != ok:
			return nil
		case ok:
			return []any{next}
		default:
			return []any{st}
		}
	},
	Equal: func(a, b any) bool { return a.(utxoState) == b.(utxoState) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		id := in.ID
		if in.Op == opReserve {
			id = out.ID
		}
		res := fmt.Sprint(out.OK)
		if out.Unknown {
			res = "unknown"
		}
		return fmt.Sprintf("%s(%.8s, res %.8s) -> %s %s [%d]", in.Op, in.Hash, id, res, out.State, out.Status)
	},
	DescribeState: func(state any) string {
		st := state.(utxoState)
		switch {
		case st.Holder == "":
			return "free"
		case st.Submitted:
			return fmt.Sprintf("submitted by %.8s (tx %.8s)", st.Holder, st.Tx)
		}
		return fmt.Sprintf("held by %.8s", st.Holder)
	},
}

// linModel is reservationModel as porcupine checks it.
var linModel = reservationModel.ToModel()

// idRegistry is the set of reservation ids granted so far, shared by the
// clients so that they also act on each other's reservations.
type idRegistry struct {
	mu     sync.Mutex
	ids    []string
	hashOf map[string]string
	last   map[string]string // hash -> newest id granted for it
}

func (r *idRegistry) add(id, hash string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, id)
	r.hashOf[id] = hash
	r.last[hash] = id
}

// pick returns an id to act on: mostly the newest one of a random UTXO, else
// any id granted so far; ok is false when none was granted yet.
func (r *idRegistry) pick(rng *rand.Rand, hashes []string) (id, hash string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ids) == 0 {
		return "", "", false
	}
	if rng.IntN(10) < 7 {
		if id, ok := r.last[hashes[rng.IntN(len(hashes))]]; ok {
			return id, r.hashOf[id], true
		}
	}
	id = r.ids[rng.IntN(len(r.ids))]
	return id, r.hashOf[id], true
}

// txFor is a transaction id for a submit of reservation id: variant 0 is the
// usual one, others make a submit with another transaction.
func txFor(id string, variant int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", id, variant)))
	return hex.EncodeToString(sum[:])
}

func TestLinearizable(t *testing.T) {
	t.Parallel()
	const (
		clients      = 8
		opsPerClient = 60
		ttlSeconds   = 600 // nothing expires during the run
	)
	// bufferd 2 refuses to release a submitted reservation, and nothing else
	// ends one here: a submitted UTXO stays taken for the rest of the run.
	// Only half the UTXOs are ever submitted, so the other half keep being
	// reserved, extended and released to the end (with 4 UTXOs all of them
	// submitted, the history used to end in refusals only).
	s := startStack(t, stackConfig{APIs: 2, UTXOs: 8})
	submittable := map[string]bool{}
	for _, h := range s.hashes[:len(s.hashes)/2] {
		submittable[h] = true
	}
	// Only the clients change reservations while the history is recorded: the
	// syncer has loaded the pool and is stopped, so it cannot settle submitted
	// reservations against a chain that never saw their transactions.
	s.syncer.stop(t)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	reg := &idRegistry{hashOf: map[string]string{}, last: map[string]string{}}
	origin := time.Now()
	now := func() int64 { return time.Since(origin).Nanoseconds() }

	var (
		mu      sync.Mutex
		history []porcupine.Operation
		unknown []string // operations answered 503
		counts  = map[string]int{}
		wg      sync.WaitGroup
	)
	failures := make(chan string, clients)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			for i := 0; i < opsPerClient; i++ {
				api := s.apis[rng.IntN(len(s.apis))]
				in := linInput{Op: opReserve}
				if p := rng.IntN(100); p >= 35 {
					if id, hash, ok := reg.pick(rng, s.hashes); ok {
						in = linInput{ID: id, Hash: hash}
						switch {
						case p < 50, p < 65 && !submittable[hash]:
							in.Op = opExtend
						case p < 65:
							in.Op = opSubmit
							in.Tx = txFor(id, rng.IntN(5)/4) // one in five uses another tx
						case p < 85:
							in.Op = opRelease
						default:
							in.Op = opGet
						}
					}
				}
				if in.Op == opReserve {
					in.Hash = s.hashes[rng.IntN(len(s.hashes))]
				}
				call := now()
				var r reply
				switch in.Op {
				case opReserve:
					r = reserve(ctx, api, reserveReq{Pool: s.pool, Hashes: []string{in.Hash}, TTLSeconds: ttlSeconds, Owner: fmt.Sprintf("client%d", c)})
				case opExtend:
					r = extend(ctx, api, in.ID, ttlSeconds)
				case opSubmit:
					r = submit(ctx, api, in.ID, in.Tx)
				case opRelease:
					r = release(ctx, api, in.ID)
				case opGet:
					r = getReservation(ctx, api, in.ID)
				}
				ret := now()
				out, err := linResult(in, r)
				if err != nil {
					failures <- fmt.Sprintf("client %d op %d %s via %s: %v", c, i, in.Op, api, err)
					return
				}
				if in.Op == opReserve && out.OK {
					reg.add(out.ID, in.Hash)
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
				counts[fmt.Sprintf("%s:%v", in.Op, out.OK)]++
				if out.Unknown {
					unknown = append(unknown, fmt.Sprintf("client %d op %d %s via %s: %s", c, i, in.Op, api, r))
				}
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("history of %d operations in %s by %d clients over %d APIs on %d utxos: %v",
		len(history), time.Duration(now()).Round(time.Millisecond), clients, len(s.apis), len(s.hashes), counts)
	// The history must exercise the interesting cases, or proving it
	// linearizable says little.
	for _, k := range []string{"reserve:true", "reserve:false", "extend:true", "submit:true", "release:true", "release:false", "get:true"} {
		if counts[k] == 0 {
			t.Errorf("the history has no %s operation", k)
		}
	}
	// No server failed, so nothing may be answered "unavailable".
	for i, u := range unknown {
		if i == 10 {
			t.Errorf("... %d operations answered 503 in all", len(unknown))
			break
		}
		t.Errorf("answered 503 without any fault (checked below as maybe applied): %s", u)
	}

	// The checker must refuse this history corrupted: one UTXO granted to two
	// reservations with nothing released in between.
	end := now()
	h := s.hashes[0]
	bad := append(append([]porcupine.Operation(nil), history...),
		porcupine.Operation{ClientId: 0, Input: linInput{Op: opReserve, Hash: h}, Output: linOutput{OK: true, ID: "forged-1", Status: 201}, Call: end + 1, Return: end + 2},
		porcupine.Operation{ClientId: 1, Input: linInput{Op: opReserve, Hash: h}, Output: linOutput{OK: true, ID: "forged-2", Status: 201}, Call: end + 3, Return: end + 4},
	)
	if got := porcupine.CheckOperationsTimeout(linModel, bad, 60*time.Second); got != porcupine.Illegal {
		t.Errorf("history with a UTXO granted twice: checker says %s, want %s", got, porcupine.Illegal)
	}

	res, info := porcupine.CheckOperationsVerbose(linModel, history, 60*time.Second)
	if res != porcupine.Ok {
		t.Errorf("history is not linearizable: %s", res)
		logCounterexample(t, info, history)
		return
	}
	t.Logf("porcupine: %d operations, linearizable", len(history))
}

// TestLinearizabilityModel checks the model itself on small hand-made
// histories, so that a model accepting everything cannot pass unnoticed.
func TestLinearizabilityModel(t *testing.T) {
	t.Parallel()
	op := func(c int, in linInput, out linOutput, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: in, Output: out, Call: call, Return: ret}
	}
	const h = "h1"
	reserveOK := func(c int, id string, call, ret int64) porcupine.Operation {
		return op(c, linInput{Op: opReserve, Hash: h}, linOutput{OK: true, ID: id}, call, ret)
	}
	cases := []struct {
		name    string
		history []porcupine.Operation
		want    bool
	}{
		{"grant, release, grant", []porcupine.Operation{
			reserveOK(0, "a", 0, 1),
			op(0, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{OK: true}, 2, 3),
			reserveOK(1, "b", 4, 5),
		}, true},
		{"two concurrent grants", []porcupine.Operation{
			reserveOK(0, "a", 0, 10),
			reserveOK(1, "b", 1, 9),
		}, false},
		{"grant concurrent with a release", []porcupine.Operation{
			reserveOK(0, "a", 0, 1),
			op(0, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{OK: true}, 2, 10),
			reserveOK(1, "b", 3, 4),
		}, true},
		{"refused while free", []porcupine.Operation{
			op(0, linInput{Op: opReserve, Hash: h}, linOutput{}, 0, 1),
		}, false},
		{"extend after submit", []porcupine.Operation{
			reserveOK(0, "a", 0, 1),
			op(0, linInput{Op: opSubmit, Hash: h, ID: "a", Tx: "t"}, linOutput{OK: true}, 2, 3),
			op(0, linInput{Op: opExtend, Hash: h, ID: "a"}, linOutput{OK: true}, 4, 5),
		}, false},
		{"submit again with another tx", []porcupine.Operation{
			reserveOK(0, "a", 0, 1),
			op(0, linInput{Op: opSubmit, Hash: h, ID: "a", Tx: "t"}, linOutput{OK: true}, 2, 3),
			op(0, linInput{Op: opSubmit, Hash: h, ID: "a", Tx: "t"}, linOutput{OK: true}, 4, 5),
			op(0, linInput{Op: opSubmit, Hash: h, ID: "a", Tx: "u"}, linOutput{OK: false}, 6, 7),
			op(0, linInput{Op: opGet, Hash: h, ID: "a"}, linOutput{OK: true, State: "submitted"}, 8, 9),
		}, true},
		// bufferd 2: release is idempotent (it used to fail the second time).
		{"release after release", []porcupine.Operation{
			reserveOK(0, "a", 0, 1),
			op(0, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{OK: true}, 2, 3),
			op(1, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{OK: true}, 4, 5),
		}, true},
		{"release after release refused", []porcupine.Operation{
			reserveOK(0, "a", 0, 1),
			op(0, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{OK: true}, 2, 3),
			op(1, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{}, 4, 5),
		}, false},
		{"a repeated release does not free the next holder's utxo", []porcupine.Operation{
			reserveOK(0, "a", 0, 1),
			op(0, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{OK: true}, 2, 3),
			reserveOK(1, "b", 4, 5),
			op(0, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{OK: true}, 6, 7),
			reserveOK(2, "c", 8, 9),
		}, false},
		{"a repeated release leaves the next holder holding", []porcupine.Operation{
			reserveOK(0, "a", 0, 1),
			op(0, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{OK: true}, 2, 3),
			reserveOK(1, "b", 4, 5),
			op(0, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{OK: true}, 6, 7),
			op(2, linInput{Op: opReserve, Hash: h}, linOutput{}, 8, 9),
			op(1, linInput{Op: opGet, Hash: h, ID: "b"}, linOutput{OK: true, State: "held"}, 10, 11),
			op(0, linInput{Op: opGet, Hash: h, ID: "a"}, linOutput{OK: true, State: "released"}, 12, 13),
		}, true},
		{"release of a submitted reservation", []porcupine.Operation{
			reserveOK(0, "a", 0, 1),
			op(0, linInput{Op: opSubmit, Hash: h, ID: "a", Tx: "t"}, linOutput{OK: true}, 2, 3),
			op(0, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{OK: true}, 4, 5),
		}, false},
		{"release of a submitted reservation refused", []porcupine.Operation{
			reserveOK(0, "a", 0, 1),
			op(0, linInput{Op: opSubmit, Hash: h, ID: "a", Tx: "t"}, linOutput{OK: true}, 2, 3),
			op(0, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{}, 4, 5),
			op(1, linInput{Op: opReserve, Hash: h}, linOutput{}, 6, 7),
			op(0, linInput{Op: opGet, Hash: h, ID: "a"}, linOutput{OK: true, State: "submitted"}, 8, 9),
		}, true},
		{"release that may have happened", []porcupine.Operation{
			reserveOK(0, "a", 0, 1),
			op(0, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{Unknown: true}, 2, 3),
			reserveOK(1, "b", 4, 5),
		}, true},
		{"release that may not have happened", []porcupine.Operation{
			reserveOK(0, "a", 0, 1),
			op(0, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{Unknown: true}, 2, 3),
			op(0, linInput{Op: opExtend, Hash: h, ID: "a"}, linOutput{OK: true}, 4, 5),
		}, true},
		{"unknown release cannot do both", []porcupine.Operation{
			reserveOK(0, "a", 0, 1),
			op(0, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{Unknown: true}, 2, 3),
			reserveOK(1, "b", 4, 5),
			op(0, linInput{Op: opExtend, Hash: h, ID: "a"}, linOutput{OK: true}, 6, 7),
		}, false},
		{"unknown reserve blocks or not", []porcupine.Operation{
			op(0, linInput{Op: opReserve, Hash: h}, linOutput{Unknown: true}, 0, 1),
			op(1, linInput{Op: opReserve, Hash: h}, linOutput{}, 2, 3),
		}, true},
		{"stale get", []porcupine.Operation{
			reserveOK(0, "a", 0, 1),
			op(0, linInput{Op: opRelease, Hash: h, ID: "a"}, linOutput{OK: true}, 2, 3),
			op(1, linInput{Op: opGet, Hash: h, ID: "a"}, linOutput{OK: true, State: "held"}, 4, 5),
		}, false},
	}
	for _, c := range cases {
		if got := porcupine.CheckOperations(linModel, c.history); got != c.want {
			t.Errorf("%s: linearizable = %v, want %v", c.name, got, c.want)
		}
	}
}

// linResult turns an HTTP reply into the operation's output; an answer the
// contract does not allow for the operation is an error.
func linResult(in linInput, r reply) (linOutput, error) {
	if r.Err != nil {
		return linOutput{}, r.Err
	}
	out := linOutput{Status: r.Status}
	if r.Status == http.StatusServiceUnavailable {
		out.Unknown = true
		return out, nil
	}
	switch in.Op {
	case opReserve:
		switch {
		case r.Status == http.StatusCreated:
			if r.hash() != in.Hash || r.Res.ID == "" || r.Res.State != "held" {
				return out, fmt.Errorf("reserve of %s granted %s", in.Hash, r)
			}
			out.OK, out.ID = true, r.Res.ID
		case r.Status == http.StatusConflict && (r.Code == "utxo_locked" || r.Code == "no_utxo_available"):
		default:
			return out, fmt.Errorf("unexpected answer %s", r)
		}
	case opExtend, opSubmit, opRelease:
		switch r.Status {
		case http.StatusOK:
			// Every one answers the reservation (a release since bufferd 2,
			// in state released; it used to answer 204 without a body).
			if r.Res.ID != in.ID || (in.Op == opRelease && r.Res.State != "released") {
				return out, fmt.Errorf("%s of %s answered %s", in.Op, in.ID, r)
			}
			out.OK = true
		case http.StatusConflict:
			if in.Op == opRelease && r.Code != "reservation_submitted" {
				return out, fmt.Errorf("release answered %s, want 409 only for a submitted reservation", r)
			}
		case http.StatusNotFound, http.StatusGone:
		default:
			return out, fmt.Errorf("unexpected answer %s", r)
		}
	case opGet:
		if r.Status != http.StatusOK || r.Res.ID != in.ID {
			return out, fmt.Errorf("unexpected answer %s", r)
		}
		out.OK, out.State = true, r.Res.State
	}
	return out, nil
}

// logCounterexample writes porcupine's visualization of a failed check to a
// file kept after the test, and logs the end of the longest linearizable
// prefix of each partition.
func logCounterexample(t *testing.T, info porcupine.LinearizationInfo, history []porcupine.Operation) {
	t.Helper()
	if f, err := os.CreateTemp("", "bufferd-linearizability-*.txt"); err == nil {
		sorted := append([]porcupine.Operation(nil), history...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].Call < sorted[j].Call })
		for _, op := range sorted {
			in := op.Input.(linInput)
			if _, err := fmt.Fprintf(f, "%s [%d..%d] client %d: %s id=%s tx=%.8s\n", in.Hash, op.Call, op.Return, op.ClientId,
				linModel.DescribeOperation(op.Input, op.Output), in.ID, in.Tx); err != nil {
				t.Logf("history not written: %v", err)
				break
			}
		}
		_ = f.Close()
		t.Logf("history, by call time: %s", f.Name())
	}
	f, err := os.CreateTemp("", "bufferd-linearizability-*.html")
	if err == nil {
		if err := porcupine.Visualize(linModel, info, f); err == nil {
			t.Logf("visualization of the history: %s", f.Name())
		}
		_ = f.Close()
	}
	parts := linModel.Partition(history)
	for pi, partials := range info.PartialLinearizationsOperations() {
		var longest []porcupine.Operation
		for _, p := range partials {
			if len(p) > len(longest) {
				longest = p
			}
		}
		if pi < len(parts) && len(longest) == len(parts[pi]) {
			continue // this UTXO's history is linearizable
		}
		var hash string
		if pi < len(parts) && len(parts[pi]) > 0 {
			hash = parts[pi][0].Input.(linInput).Hash
		}
		t.Logf("utxo %.12s: the longest linearizable prefix has %d operations, ending with:", hash, len(longest))
		for _, op := range longest[max(0, len(longest)-6):] {
			t.Logf("  [%d..%d] client %d: %s", op.Call, op.Return, op.ClientId, linModel.DescribeOperation(op.Input, op.Output))
		}
		// The operation that cannot follow is among the first ones left out.
		in := make(map[porcupine.Operation]bool, len(longest))
		for _, op := range longest {
			in[op] = true
		}
		rest := make([]porcupine.Operation, 0, len(parts[pi]))
		for _, op := range parts[pi] {
			if !in[op] {
				rest = append(rest, op)
			}
		}
		sort.Slice(rest, func(i, j int) bool { return rest[i].Call < rest[j].Call })
		t.Logf("utxo %.12s: the first operations left out:", hash)
		for _, op := range rest[:min(6, len(rest))] {
			t.Logf("  [%d..%d] client %d: %s", op.Call, op.Return, op.ClientId, linModel.DescribeOperation(op.Input, op.Output))
		}
	}
}
