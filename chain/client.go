package chain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Errors added by the HTTP clients.
var (
	// ErrBadResponse means a response could not be decoded (invalid JSON, body
	// too large, missing fields).
	ErrBadResponse = errors.New("chain: malformed response")
	// errPaging means a paginated listing did not end: the server repeated a page
	// (it ignores start) or returned more pages than any real pool has.
	errPaging = errors.New("chain: paging did not end")
	// errUnknownKind is returned by New for a kind other than blockcenter or bytomd.
	errUnknownKind = errors.New("chain: unknown chain kind")
)

// Defaults of the client options.
const (
	defaultPageSize  = 1000 // UTXOs asked for per blockcenter list-utxos page
	defaultScanDepth = 200  // blocks bytomd GetTransaction scans back from the tip
)

const (
	maxBodyBytes = 64 << 20 // largest response body read
	maxSnippet   = 200      // bytes of a response body quoted in an error
)

// maxPages is the number of pages after which a listing is abandoned (a
// variable so tests can lower it).
var maxPages = 10_000

// Option configures a client.
type Option func(*config)

type config struct {
	client    *http.Client
	timeout   time.Duration
	pageSize  int
	scanDepth int
}

// WithHTTPClient makes the client send its requests with c instead of a private
// http.Client.
func WithHTTPClient(c *http.Client) Option { return func(o *config) { o.client = c } }

// WithTimeout bounds every HTTP request the client makes (default 10s).
// A paginated listing or a block scan applies it to each request; the caller's
// context bounds the whole call.
func WithTimeout(d time.Duration) Option { return func(o *config) { o.timeout = d } }

// WithPageSize sets how many UTXOs a blockcenter client asks for per page
// (default 1000).
func WithPageSize(n int) Option { return func(o *config) { o.pageSize = n } }

// WithScanDepth sets how many blocks back from the tip a bytomd client searches
// for a transaction that is not in the mempool (default 200).
func WithScanDepth(n int) Option { return func(o *config) { o.scanDepth = n } }

func newConfig(opts []Option) config {
	c := config{timeout: defaultTimeout, pageSize: defaultPageSize, scanDepth: defaultScanDepth}
	for _, o := range opts {
		o(&c)
	}
	if c.timeout <= 0 {
		c.timeout = defaultTimeout
	}
	if c.pageSize <= 0 {
		c.pageSize = defaultPageSize
	}
	if c.scanDepth < 0 {
		c.scanDepth = 0
	}
	if c.client == nil {
		c.client = &http.Client{Timeout: c.timeout}
	}
	return c
}

// New returns the Source of the given kind: "blockcenter" or "bytomd".
func New(kind, baseURL string, opts ...Option) (Source, error) {
	switch kind {
	case "blockcenter":
		return NewBlockcenter(baseURL, opts...), nil
	case "bytomd":
		return NewBytomd(baseURL, opts...), nil
	default:
		return nil, fmt.Errorf("%w: %q", errUnknownKind, kind)
	}
}

// transport sends JSON requests to one service and reads bounded responses.
type transport struct {
	source string // for errors: blockcenter or bytomd
	base   string // scheme://host[/prefix], no trailing slash
	cfg    config
}

func newTransport(source, baseURL string, cfg config) transport {
	return transport{source: source, base: strings.TrimRight(baseURL, "/"), cfg: cfg}
}

// response is what do returns: the HTTP status and the (bounded) body.
type response struct {
	status int
	body   []byte
}

// do sends one request with the per-request timeout. in, when not nil, is sent
// as a JSON body.
func (t *transport) do(ctx context.Context, method, path string, query url.Values, in any) (response, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.timeout)
	defer cancel()

	u := t.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return response{}, fmt.Errorf("chain: %s %s: encode request: %w", t.source, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return response{}, fmt.Errorf("chain: %s %s: %w", t.source, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := t.cfg.client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("chain: %s %s: %w", t.source, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	// The body is read into a buffer of its announced size (a block is large).
	buf := bytes.NewBuffer(make([]byte, 0, min(max(resp.ContentLength, 0), maxBodyBytes)+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, maxBodyBytes+1)); err != nil {
		return response{}, fmt.Errorf("chain: %s %s: read body: %w", t.source, path, err)
	}
	b := buf.Bytes()
	if len(b) > maxBodyBytes {
		return response{}, fmt.Errorf("%w: %s %s: body larger than %d bytes", ErrBadResponse, t.source, path, maxBodyBytes)
	}
	return response{status: resp.StatusCode, body: b}, nil
}

// httpError is the APIError of a response with an unexpected HTTP status.
func (t *transport) httpError(path string, r response) *APIError {
	return &APIError{Source: t.source, Path: path, HTTPStatus: r.status, Msg: snippet(r.body)}
}

// decodeError wraps a JSON decoding failure.
func (t *transport) decodeError(path string, r response, err error) error {
	return fmt.Errorf("%w: %s %s: %v (body %q)", ErrBadResponse, t.source, path, err, snippet(r.body))
}

// bad reports a response that decoded but makes no sense.
func (t *transport) bad(path, msg string) error {
	return fmt.Errorf("%w: %s %s: %s", ErrBadResponse, t.source, path, msg)
}

// snippet returns at most maxSnippet bytes of b, for error messages.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > maxSnippet {
		return s[:maxSnippet] + "..."
	}
	return s
}

// flexInt decodes an integer sent as a JSON number or a decimal string.
type flexInt int64

func (n *flexInt) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		*n = 0
		return nil
	}
	if len(s) >= 2 && s[0] == '"' {
		var err error
		if s, err = strconv.Unquote(s); err != nil {
			return err
		}
		if s == "" {
			*n = 0
			return nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer: %.40q", s)
	}
	*n = flexInt(v)
	return nil
}

// flexUint decodes an amount: a non-negative integer up to 2^64-1, sent as
// a JSON number or a decimal string, exactly (never through a float64).
type flexUint uint64

func (n *flexUint) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		*n = 0
		return nil
	}
	if len(s) >= 2 && s[0] == '"' {
		var err error
		if s, err = strconv.Unquote(s); err != nil {
			return err
		}
		if s == "" {
			*n = 0
			return nil
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not an amount (an integer from 0 to 2^64-1): %.40q", s)
	}
	*n = flexUint(v)
	return nil
}

// unixTime converts a timestamp in seconds (or milliseconds, when it is too
// large to be seconds) to a time; 0 is the zero time.
func unixTime(ts int64) time.Time {
	switch {
	case ts <= 0:
		return time.Time{}
	case ts > 1e12:
		return time.UnixMilli(ts).UTC()
	default:
		return time.Unix(ts, 0).UTC()
	}
}

// resetDecoded sets what out points to back to its zero value, so that a second
// decoder starts from where the first one did.
func resetDecoded(out any) {
	if v := reflect.ValueOf(out); v.Kind() == reflect.Pointer && !v.IsNil() {
		v.Elem().SetZero()
	}
}
