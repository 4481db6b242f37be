package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bufferd/bufferd/internal/connset"
)

// requestTimeout bounds one request of the load generator.
const requestTimeout = 30 * time.Second

// newHTTPClient returns an HTTP client keeping up to conns connections per
// server alive, so every simulated client keeps its own connection, and a
// function that closes every connection it dialed, idle or not (see
// internal/connset for why CloseIdleConnections is not enough).
func newHTTPClient(conns int) (*http.Client, func()) {
	var set connset.Set
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			DialContext:         set.Dialer(d),
			MaxIdleConns:        0, // no overall limit
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}, set.CloseAll
}

// answer is a server's answer: its status and body.
type answer struct {
	status int
	body   []byte
}

// code is the error code of a v1 error answer, else the status.
func (a answer) code() string {
	var e struct {
		Code string `json:"code"` // a problem details answer's extension member
	}
	if json.Unmarshal(a.body, &e) == nil && e.Code != "" {
		return strconv.Itoa(a.status) + " " + e.Code
	}
	return strconv.Itoa(a.status)
}

func (a answer) decode(v any) error {
	if err := json.Unmarshal(a.body, v); err != nil {
		return fmt.Errorf("bench: decode answer (HTTP %d): %w", a.status, err)
	}
	return nil
}

// peer is one server the load generator talks to.
type peer struct {
	base  string
	hc    *http.Client
	token string // bearer token of admin requests
}

// call sends one request with a JSON body (nil for none).
func (p *peer) call(ctx context.Context, method, path string, body any) (answer, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return answer{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, rd)
	if err != nil {
		return answer{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return answer{}, err
	}
	return answer{status: resp.StatusCode, body: b}, nil
}

// errReason names a transport error briefly for the report.
func errReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// reservation is a v1 reservation answer.
type reservation struct {
	ID        string    `json:"id"`
	Fence     int64     `json:"fence"`
	Pool      int64     `json:"pool"`
	State     string    `json:"state"`
	ExpiresAt time.Time `json:"expires_at"`
	UTXOs     []struct {
		Hash   string `json:"hash"`
		Amount uint64 `json:"amount"`
	} `json:"utxos"`
}

// reserveBody is the body of POST /v1/reservations. The load generator sends
// no Idempotency-Key: it retries nothing.
type reserveBody struct {
	Pool       int64    `json:"pool"`
	Count      int      `json:"count,omitempty"`
	Amount     uint64   `json:"amount,omitempty"`
	Hashes     []string `json:"hashes,omitempty"`
	TTLSeconds int      `json:"ttl_seconds,omitempty"`
	Wait       int      `json:"wait_seconds,omitempty"`
	Owner      string   `json:"owner,omitempty"`
}
