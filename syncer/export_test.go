package syncer

import (
	"time"

	"github.com/bufferd/bufferd/storage"
)

// The jobs and their results, as the external tests (package syncer_test)
// build and check them.
type (
	UTXOSync       = utxoSync
	Index          = chainIndex
	BalanceVerify  = balanceVerify
	Sweep          = sweeper
	SubmittedCheck = submittedCheck
	IndexResult    = indexResult
	SweepResult    = sweepResult
	BalanceOutcome = balanceOutcome
)

const (
	JobUTXO      = jobUTXO
	ExpiryMargin = expiryMargin
)

// ErrOtherChain is the index's error for a node on another chain.
var ErrOtherChain = errOtherChain

// NewUTXORunner returns an unfenced Runner of the one UTXO sync job.
func NewUTXORunner(job *UTXOSync, store *storage.Store, interval, maxBackoff time.Duration) *Runner {
	return &Runner{utxo: job, store: store, interval: interval, maxBackoff: maxBackoff}
}

// ChainIndex returns the runner's chain index (nil for a source that lists
// UTXOs).
func (r *Runner) ChainIndex() *Index { return r.index }

// Balances returns the runner's legacy balance check.
func (r *Runner) Balances() *BalanceVerify { return r.balances }

// Sweeper returns the runner's sweep.
func (r *Runner) Sweeper() *Sweep { return r.sweep }

// SetIndexPoll sets how often the chain index polls the node.
func (r *Runner) SetIndexPoll(d time.Duration) { r.indexPoll = d }

// SetSweepInterval sets how often each pool is swept.
func (r *Runner) SetSweepInterval(d time.Duration) { r.sweepInterval = d }

// Failures returns how many syncs of the pool failed in a row.
func (r *Runner) Failures(id int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state(id).failures
}

// SetProgressEvery sets how often Watch logs its progress.
func (r *Rebuilder) SetProgressEvery(d time.Duration) { r.progressEvery = d }
