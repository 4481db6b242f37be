package chaos

import "context"

// Kinds of violations the external tests (package chaos_test) inject.
const (
	KindLost    = kindLost
	KindDoubled = kindDoubled
)

// ErrViolation is what Run returns (wrapped) when a check failed.
var ErrViolation = errViolation

// What a BeforeCheck hook gets, and what a Report lists.
type (
	Probe     = probe
	Violation = violation
	Event     = event
)

// SetBeforeCheck makes f run at every quiet point right before the checks.
func (o *Options) SetBeforeCheck(f func(ctx context.Context, p Probe) error) { o.beforeCheck = f }

// Rounds is how many rounds ran.
func (r *Report) Rounds() int { return r.rounds }

// Ops counts the client operations by kind.
func (r *Report) Ops() map[string]int { return r.ops }

// Chain counts the chain events by kind.
func (r *Report) Chain() map[string]int { return r.chain }

// Faults counts the faults by kind.
func (r *Report) Faults() map[string]int { return r.faults }

// QuietPoints is how many quiet points were checked.
func (r *Report) QuietPoints() int { return r.quietPoints }

// Grants is how many UTXO grants clients received.
func (r *Report) Grants() int { return r.grants }

// Violations are the failed checks.
func (r *Report) Violations() []Violation { return r.violations }

// Lost is how many distinct UTXOs were found lost.
func (r *Report) Lost() int { return r.lost }

// Shortest is the shortest history found that still fails.
func (r *Report) Shortest() []Event { return r.shortest }
