// Package client is the Go client of bufferd's v1 API: reserve UTXOs of a
// contract pool, look a reservation up, extend, submit and release it, Hold
// a reservation that a background goroutine keeps extending; list pools,
// their UTXOs and transactions, the service's sync status; register pools
// and list reservations with the admin token (WithAdminToken).
//
// Every call is bounded by its context. Calls are retried, a bounded number
// of times, after a connection error, after a 503 answer (rebuilding or
// unavailable) and after a 409 idempotency_key_in_use (an earlier attempt of
// the same reserve is still being processed), waiting as long as the
// answer's Retry-After says; nothing else is retried. Every v1 call is safe
// to retry: Reserve sends an Idempotency-Key (generated per call when the
// request has none) and keeps it across its own retries, so a retried
// reserve never makes two reservations; Release answers a reservation it
// already released with its final state.
//
// Amounts are uint64, as the API sends them (exact JSON integers up to
// 2^64-1).
//
// Errors of the API are *APIError values, matched with errors.Is against
// ErrNoUTXOAvailable, ErrUTXOLocked, ErrEnded, ErrSubmitted, ErrNotFound,
// ErrUnavailable, ErrUnauthorized, ErrRateLimited, ErrBadRequest,
// ErrIdempotencyKeyReused and ErrIdempotencyKeyInUse.
//
// The package is a Go module of its own, github.com/bufferd/bufferd/client,
// which needs only the standard library and cenkalti/backoff: importing it
// builds none of the server. The examples talk to `bufferd dev`; the
// bufferd repository runs the same flows against the whole service in one
// process (its clientcheck package) and checks their output.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Defaults of a Client.
const (
	// DefaultRetries is how many times a call is retried after its first attempt.
	DefaultRetries = 4
	// DefaultTimeout is the timeout of the default HTTP client: longer than
	// the longest long-poll (30 s) plus the server's own request bound.
	DefaultTimeout = 60 * time.Second
	// DefaultUserAgent is the User-Agent sent unless WithUserAgent says otherwise.
	DefaultUserAgent = "bufferd-go-client/1"
)

// Bounds of the waits between attempts.
const (
	backoffBase = 100 * time.Millisecond
	backoffMax  = 2 * time.Second
	// maxRetryAfter caps the wait a Retry-After header can ask for.
	maxRetryAfter = 30 * time.Second
	// maxBody bounds the answer read from the server.
	maxBody = 4 << 20
)

// Client calls one bufferd API (one base URL, for example a load balancer in
// front of many replicas). It is safe for concurrent use.
type Client struct {
	base    string
	http    *http.Client
	owner   string
	agent   string
	retries int
	// adminToken is sent on the admin routes only.
	adminToken string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests through hc.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.http = hc
		}
	}
}

// WithOwner sets the owner recorded on reservations whose request names none.
func WithOwner(owner string) Option {
	return func(c *Client) { c.owner = owner }
}

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.agent = ua }
}

// WithAdminToken sets the admin token that CreatePool and ListReservations
// send ("Authorization: Bearer <token>"); no other call sends it.
func WithAdminToken(token string) Option {
	return func(c *Client) { c.adminToken = token }
}

// WithRetries sets how many times a call is retried after its first attempt
// (0 disables retries); the default is DefaultRetries.
func WithRetries(n int) Option {
	return func(c *Client) { c.retries = max(n, 0) }
}

// New returns a Client of the API at baseURL (for example
// "http://127.0.0.1:3100"; a trailing slash is ignored).
func New(baseURL string, opts ...Option) *Client {
	c := &Client{
		base:    strings.TrimRight(baseURL, "/"),
		http:    &http.Client{Timeout: DefaultTimeout},
		agent:   DefaultUserAgent,
		retries: DefaultRetries,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// call is one API call: its request and what came of it.
type call struct {
	method string
	path   string
	body   any         // encoded as JSON when non-nil
	header http.Header // extra request headers
	// out receives the decoded answer of a 2xx status with a body.
	out any

	// admin sends the Client's admin token (WithAdminToken).
	admin bool
	// once sends the call once, without retries.
	once bool
	// failOut, when set, receives the decoded body of an answer that is not 2xx.
	failOut any

	// Set by do:
	respHdr http.Header // headers of the last answer
	status  int         // HTTP status of the last answer
}

// do runs cl, retrying connection errors, 503 answers and 409
// idempotency_key_in_use, and returns nil on a 2xx answer, an *APIError on
// any other answer, or the transport or context error.
func (c *Client) do(ctx context.Context, cl *call) error {
	var payload []byte
	if cl.body != nil {
		var err error
		if payload, err = json.Marshal(cl.body); err != nil {
			return fmt.Errorf("client: encode request: %w", err)
		}
	}
	// last is the error of the latest attempt; prev that of the one before.
	var last, prev error
	tries := uint(c.retries) + 1
	if cl.once {
		tries = 1
	}
	b := &retryBackOff{ctx: ctx, last: &last}
	b.InitialInterval, b.MaxInterval = backoffBase, backoffMax
	b.Multiplier, b.RandomizationFactor = 2, 0.5
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		prev = last
		last = c.attempt(ctx, cl, payload)
		if last == nil || retryable(last) {
			return struct{}{}, last
		}
		return struct{}{}, backoff.Permanent(last)
	}, backoff.WithBackOff(b), backoff.WithMaxTries(tries), backoff.WithMaxElapsedTime(0))
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		// Cancelled while waiting, or during an attempt: say why, with what
		// the attempt before had met.
		if errors.Is(last, ctx.Err()) {
			last = prev
		}
		if last != nil {
			return errors.Join(ctx.Err(), last)
		}
		return err
	}
	return last
}

// retryable reports whether another attempt may succeed where err failed: a
// connection error, a 503 answer, or an earlier attempt of the same reserve
// still in progress.
func retryable(err error) bool {
	var ae *APIError
	switch {
	case errors.As(err, &ae):
		return ae.Status == http.StatusServiceUnavailable || errors.Is(ae, ErrIdempotencyKeyInUse)
	case errors.As(err, new(permanentError)):
		return false
	}
	return true
}

// retryBackOff is an exponential backoff that waits what the last answer's
// Retry-After asked for instead, and stops when the wait would outlast the
// context's deadline.
type retryBackOff struct {
	backoff.ExponentialBackOff
	ctx  context.Context
	last *error
}

// NextBackOff implements backoff.BackOff.
func (b *retryBackOff) NextBackOff() time.Duration {
	wait := b.ExponentialBackOff.NextBackOff()
	var ae *APIError
	if errors.As(*b.last, &ae) && ae.RetryAfter > 0 {
		wait = ae.RetryAfter
	}
	if dl, ok := b.ctx.Deadline(); ok && time.Until(dl) < wait {
		return backoff.Stop // no time left for another attempt
	}
	return wait
}

// permanentError marks an error no retry can fix: a request that cannot be
// built, an answer that cannot be decoded.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// attempt sends cl once.
func (c *Client) attempt(ctx context.Context, cl *call, payload []byte) error {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, c.base+cl.path, rd)
	if err != nil {
		return permanentError{fmt.Errorf("client: build request: %w", err)}
	}
	for k, v := range cl.header {
		req.Header[k] = v
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.agent != "" {
		req.Header.Set("User-Agent", c.agent)
	}
	if cl.admin && c.adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", cl.method, cl.path, err)
	}
	defer func() { _ = resp.Body.Close() }() // the body is read to its end (or maxBody) first
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("client: %s %s: read answer: %w", cl.method, cl.path, err)
	}
	cl.respHdr, cl.status = resp.Header, resp.StatusCode
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if cl.failOut != nil {
			_ = json.Unmarshal(body, cl.failOut) // best effort: the status tells the outcome
		}
		return newAPIError(resp, body)
	}
	if cl.out != nil && len(body) > 0 {
		if err := json.Unmarshal(body, cl.out); err != nil {
			return permanentError{fmt.Errorf("client: %s %s: decode answer: %w", cl.method, cl.path, err)}
		}
	}
	return nil
}

// newAPIError reads a v1 error answer, an RFC 9457 problem (or the
// {"error":{"code","message"}} of servers before it); any other body still
// gives the status.
func newAPIError(resp *http.Response, body []byte) *APIError {
	e := &APIError{Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	var p struct {
		Type      string `json:"type"`
		Title     string `json:"title"`
		Detail    string `json:"detail"`
		Code      string `json:"code"`
		RequestID string `json:"request_id"`
		Error     struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &p) == nil {
		e.Code, e.Message, e.Type, e.RequestID = p.Code, p.Detail, p.Type, p.RequestID
		if e.Message == "" {
			e.Message = p.Title
		}
		if e.Code == "" && e.Message == "" {
			e.Code, e.Message = p.Error.Code, p.Error.Message
		}
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// retryAfter parses a Retry-After header (seconds or an HTTP date), capped
// at maxRetryAfter; 0 when absent or unreadable.
func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = time.Until(t)
	}
	return min(max(d, 0), maxRetryAfter)
}
