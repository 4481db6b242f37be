package sim

// Names the external tests (package sim_test) check the simulator against.
const (
	MaxBlocks         = maxBlocks
	MinerAccountID    = minerAccountID
	MinerAccountAlias = minerAccountAlias
	CoinbaseReward    = coinbaseReward
	GenesisAmount     = genesisAmount
)

// Sentinel errors of the simulator's calls.
var (
	ErrInvalid       = errInvalid
	ErrUnknownOutput = errUnknownOutput
	ErrImmature      = errImmature
	ErrNotStandard   = errNotStandard
	ErrNotPending    = errNotPending
)

// IsHash reports whether s is 64 lowercase hex characters.
func IsHash(s string) bool { return isHash(s) }

// Pending returns the ids of the mempool transactions in order.
func (c *Chain) Pending() []string { return c.mempoolIDs() }
