package client

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Sentinels an *APIError matches with errors.Is.
var (
	// ErrNoUTXOAvailable: 409 no_utxo_available, no free UTXO matches the request.
	ErrNoUTXOAvailable = errors.New("client: no utxo available")
	// ErrUTXOLocked: 409 utxo_locked, a requested UTXO is held by another reservation.
	ErrUTXOLocked = errors.New("client: utxo locked")
	// ErrEnded: 410, the reservation has ended (released, expired, spent or invalidated).
	ErrEnded = errors.New("client: reservation ended")
	// ErrNotFound: 404, an unknown reservation, pool or UTXO.
	ErrNotFound = errors.New("client: not found")
	// ErrUnavailable: 503, the pool is being rebuilt or the service is unavailable.
	ErrUnavailable = errors.New("client: service unavailable")
	// ErrUnauthorized: 401, an admin route was called without the admin
	// token (see WithAdminToken) or with a wrong one.
	ErrUnauthorized = errors.New("client: unauthorized")
	// ErrRateLimited: 429, too many requests from this client.
	ErrRateLimited = errors.New("client: rate limited")
	// ErrBadRequest: 400, the server refused the request as invalid.
	ErrBadRequest = errors.New("client: bad request")
	// ErrSubmitted: 409 reservation_submitted, the reservation was submitted:
	// it can no longer be released or extended, and holds its UTXOs until the
	// chain settles its transaction.
	ErrSubmitted = errors.New("client: reservation submitted")
	// ErrIdempotencyKeyReused: 422 idempotency_key_reused, the idempotency key
	// was used with another request (another pool, mode, amount, ttl,
	// owner...) within the server's window; nothing was reserved. Use a new
	// key for a new request.
	ErrIdempotencyKeyReused = errors.New("client: idempotency key reused with another request")
	// ErrIdempotencyKeyInUse: 409 idempotency_key_in_use, the first request
	// with the idempotency key is still being processed. Reserve retries it
	// (as Retry-After says) within its retries; the error is returned when
	// they run out.
	ErrIdempotencyKeyInUse = errors.New("client: idempotency key in use")
)

// APIError is an error answer of the API: an RFC 9457 problem details object
// (application/problem+json) with the extension members code and request_id.
type APIError struct {
	// Status is the HTTP status.
	Status int
	// Code is the snake_case error code (empty when the body was not a v1 error).
	Code string
	// Message is the problem's detail, or the status text.
	Message string
	// Type is the problem's type URI (https://bufferd.dev/problems/<code>).
	Type string
	// RequestID is the server's id of the request, to quote when reporting a problem.
	RequestID string
	// RetryAfter is the wait the server asked for (Retry-After), 0 when none.
	RetryAfter time.Duration
}

// Error implements error.
func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("client: HTTP %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("client: HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// Is matches e against the package's sentinels.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNoUTXOAvailable:
		return e.Status == http.StatusConflict && e.Code == CodeNoUTXOAvailable
	case ErrUTXOLocked:
		return e.Status == http.StatusConflict && e.Code == CodeUTXOLocked
	case ErrEnded:
		return e.Status == http.StatusGone
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrUnavailable:
		return e.Status == http.StatusServiceUnavailable
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrRateLimited:
		return e.Status == http.StatusTooManyRequests
	case ErrBadRequest:
		return e.Status == http.StatusBadRequest
	case ErrSubmitted:
		return e.Status == http.StatusConflict && e.Code == CodeReservationSubmitted
	case ErrIdempotencyKeyReused:
		return e.Status == http.StatusUnprocessableEntity && e.Code == CodeIdempotencyKeyReused
	case ErrIdempotencyKeyInUse:
		return e.Status == http.StatusConflict && e.Code == CodeIdempotencyKeyInUse
	}
	return false
}
