package client

// Error codes of the v1 API: the code member of every problem details answer,
// one name per error. The server answers with exactly these (its tests keep
// the two lists equal), and the sentinels of this package match by them.
const (
	CodeBadRequest           = "bad_request"
	CodeUnauthorized         = "unauthorized"
	CodeNotFound             = "not_found" // no such route
	CodePoolNotFound         = "pool_not_found"
	CodeReservationNotFound  = "reservation_not_found"
	CodeUTXONotFound         = "utxo_not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeNoUTXOAvailable      = "no_utxo_available"
	CodeUTXOLocked           = "utxo_locked"
	CodeLifetimeExceeded     = "lifetime_exceeded"
	CodeReservationSubmitted = "reservation_submitted"
	CodeTxMismatch           = "tx_mismatch"
	CodeIdempotencyKeyInUse  = "idempotency_key_in_use"
	CodeReservationEnded     = "reservation_ended"
	CodeBodyTooLarge         = "body_too_large"
	CodeIdempotencyKeyReused = "idempotency_key_reused"
	CodeRateLimited          = "rate_limited"
	CodeInternal             = "internal"
	CodeUnavailable          = "unavailable"
	CodeRebuilding           = "rebuilding" // the pool's state is being rebuilt; retry
)

// Codes lists every error code of the API.
var Codes = []string{
	CodeBadRequest, CodeUnauthorized, CodeNotFound, CodePoolNotFound, CodeReservationNotFound,
	CodeUTXONotFound, CodeMethodNotAllowed, CodeNoUTXOAvailable, CodeUTXOLocked, CodeLifetimeExceeded,
	CodeReservationSubmitted, CodeTxMismatch, CodeIdempotencyKeyInUse, CodeReservationEnded,
	CodeBodyTooLarge, CodeIdempotencyKeyReused, CodeRateLimited, CodeInternal, CodeUnavailable,
	CodeRebuilding,
}
