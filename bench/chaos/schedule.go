package chaos

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Actors of a step besides the clients (0, 1, ...).
const (
	actorChain = -1
	actorFault = -2
)

// Client operations.
const (
	opReserveCount  = "reserve-count"
	opReserveAmount = "reserve-amount"
	opExtend        = "extend"
	opSubmit        = "submit"
	opRelease       = "release"
	opAbandon       = "abandon"
	opRetry         = "retry"
)

// Chain events.
const (
	evFund         = "fund"
	evForeignSpend = "foreign-spend"
	evChildSpend   = "child-spend"
	evDoubleSpend  = "double-spend"
	evMine         = "mine"
	evReorg        = "reorg"
	evDrop         = "drop"
)

// Faults.
const (
	faultRedisFlush  = "redis-flushall"
	faultRedisKill   = "redis-kill9"
	faultPGStop      = "postgres-stop"
	faultLeaderPause = "leader-sigstop"
	faultLeaderKill  = "leader-kill9"
	faultAPIKill     = "api-kill9"
)

// step is one scheduled action. Its fields come from the seed alone; what it
// acts on at run time (which reservation, which UTXO, which process) is
// picked among the candidates of the moment with Pick, so that any subset of
// a schedule can be replayed.
type step struct {
	Index int
	Round int
	// Actor is a client number, actorChain or actorFault.
	Actor int
	Kind  string
	// Delay is the pause before the step (after the actor's previous step).
	Delay  time.Duration
	Pick   uint64
	Pool   int
	N      int    // count, blocks, depth, UTXOs to fund
	Amount uint64 // reserve by amount
	TTL    int    // seconds
	Fail   bool   // a transaction mined with status_fail; a reorg dropping its transactions
	Hold   time.Duration
}

func (s step) actorName() string {
	switch s.Actor {
	case actorChain:
		return "chain"
	case actorFault:
		return "fault"
	}
	return fmt.Sprintf("client %d", s.Actor)
}

func (s step) String() string {
	return fmt.Sprintf("#%d r%d %s %s pool=%d n=%d amount=%d ttl=%d fail=%t hold=%s pick=%d",
		s.Index, s.Round, s.actorName(), s.Kind, s.Pool, s.N, s.Amount, s.TTL, s.Fail, s.Hold, s.Pick%1000)
}

// stepsPerRound bounds the steps of one round; a step's index is its round
// times this plus its place in the round's generation order.
const stepsPerRound = 10000

// weighted is a choice with its weight.
type weighted struct {
	kind   string
	weight int
}

var clientOps = []weighted{
	{opReserveCount, 26}, {opReserveAmount, 16}, {opExtend, 12}, {opSubmit, 14},
	{opRelease, 14}, {opAbandon, 6}, {opRetry, 8},
}

var chainEvents = []weighted{
	{evFund, 14}, {evForeignSpend, 14}, {evChildSpend, 8}, {evDoubleSpend, 5},
	{evMine, 20}, {evReorg, 6}, {evDrop, 6},
}

var faultKinds = []weighted{
	{faultRedisFlush, 1}, {faultRedisKill, 1}, {faultPGStop, 1},
	{faultLeaderPause, 1}, {faultLeaderKill, 1}, {faultAPIKill, 1},
}

func choose(r *rand.Rand, ws []weighted) string {
	total := 0
	for _, w := range ws {
		total += w.weight
	}
	n := r.IntN(total)
	for _, w := range ws {
		if n < w.weight {
			return w.kind
		}
		n -= w.weight
	}
	return ws[len(ws)-1].kind
}

// planner generates the schedule of a seed, round by round: round r's steps
// depend on the seed and r only.
type planner struct {
	seed    uint64
	clients int
	pools   int
	round   time.Duration
	faults  bool
}

// plan returns the steps of round r.
func (p planner) plan(r int) []step {
	rng := rand.New(rand.NewPCG(p.seed, uint64(r)+1))
	var steps []step
	add := func(s step) {
		s.Index, s.Round, s.Pick = r*stepsPerRound+len(steps), r, rng.Uint64()
		steps = append(steps, s)
	}
	for c := 0; c < p.clients; c++ {
		for at := time.Duration(0); at < p.round; {
			s := p.clientStep(rng, c)
			at += s.Delay
			add(s)
		}
	}
	for at := time.Duration(0); at < p.round; {
		s := p.chainStep(rng)
		at += s.Delay
		add(s)
	}
	if p.faults && rng.IntN(10) < 8 {
		add(p.faultStep(rng))
	}
	return steps
}

func (p planner) clientStep(rng *rand.Rand, c int) step {
	s := step{Actor: c, Kind: choose(rng, clientOps), Pool: rng.IntN(p.pools),
		Delay: time.Duration(50+rng.IntN(350)) * time.Millisecond}
	switch s.Kind {
	case opReserveCount:
		s.N = 1 + rng.IntN(3)
		s.TTL = 1 + rng.IntN(5)
	case opReserveAmount:
		s.Amount = uint64(1+rng.IntN(60)) * 1000
		s.TTL = 1 + rng.IntN(5)
	case opExtend:
		s.TTL = 1 + rng.IntN(5)
	case opSubmit:
		s.Fail = rng.IntN(4) == 0
	}
	return s
}

func (p planner) chainStep(rng *rand.Rand) step {
	s := step{Actor: actorChain, Kind: choose(rng, chainEvents), Pool: rng.IntN(p.pools),
		Delay: time.Duration(150+rng.IntN(450)) * time.Millisecond}
	switch s.Kind {
	case evFund:
		s.N = 1 + rng.IntN(4)
		s.Amount = uint64(1+rng.IntN(50)) * 1000
	case evForeignSpend, evChildSpend, evDoubleSpend:
		s.Fail = rng.IntN(4) == 0
	case evMine:
		s.N = 1 + rng.IntN(2)
	case evReorg:
		s.N = 1 + rng.IntN(3)
		s.Fail = rng.IntN(4) == 0
	}
	return s
}

func (p planner) faultStep(rng *rand.Rand) step {
	s := step{Actor: actorFault, Kind: choose(rng, faultKinds),
		Delay: time.Duration(rng.Int64N(int64(p.round/2))) + 300*time.Millisecond,
		Hold:  time.Duration(500+rng.IntN(2000)) * time.Millisecond}
	if s.Kind == faultLeaderPause {
		s.Hold += 2500 * time.Millisecond // past the leader's lease
	}
	return s
}

// initialAmounts are the amounts a pool starts with.
func (p planner) initialAmounts(pool, n int) []uint64 {
	rng := rand.New(rand.NewPCG(p.seed, 1<<32+uint64(pool)))
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(1+rng.IntN(60)) * 1000
	}
	return out
}

// hex32 returns 32 bytes of the seed's stream named by label, in hex: the
// pools' assets and programs.
func (p planner) hex32(label uint64) string {
	rng := rand.New(rand.NewPCG(p.seed, 1<<40+label))
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return fmt.Sprintf("%x", b)
}
