package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// callTimeout bounds one HTTP call of a client or of the chain actor.
const callTimeout = 6 * time.Second

// errNotLoopback refuses any address off this machine.
var errNotLoopback = errors.New("chaos: refusing a non-loopback url")

// web is the HTTP client of the checker: loopback only, never through a proxy.
type web struct {
	hc *http.Client
}

func newWeb() *web {
	return &web{hc: &http.Client{
		Timeout: callTimeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     10 * time.Second,
		},
	}}
}

func (w *web) close() { w.hc.CloseIdleConnections() }

// answer is the outcome of one call: Status 0 with Err for a transport error.
type answer struct {
	Status int
	Body   []byte
	Header http.Header
	Err    error
}

// code is the error code of a v1 or simulator error body.
func (a answer) code() string {
	var e struct {
		Code  string `json:"code"` // v1: a problem details answer
		Error struct {
			Code string `json:"code"`
		} `json:"error"` // the simulator
	}
	_ = json.Unmarshal(a.Body, &e)
	if e.Code != "" {
		return e.Code
	}
	return e.Error.Code
}

// label is the answer's kind, for counting: the status and error code, or
// the kind of transport error.
func (a answer) label() string {
	if a.Err == nil {
		return a.String()
	}
	var ne net.Error
	switch {
	case errors.Is(a.Err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(a.Err, context.Canceled):
		return "cancelled"
	case errors.As(a.Err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "connection lost"
}

func (a answer) String() string {
	if a.Err != nil {
		return "error: " + a.Err.Error()
	}
	if a.Status >= 300 {
		if c := a.code(); c != "" {
			return fmt.Sprintf("%d %s", a.Status, c)
		}
	}
	return fmt.Sprint(a.Status)
}

// decode reads the body of a 2xx answer into v.
func (a answer) decode(v any) error {
	if a.Err != nil {
		return a.Err
	}
	if a.Status < 200 || a.Status >= 300 {
		return fmt.Errorf("chaos: status %d: %s", a.Status, bytes.TrimSpace(a.Body))
	}
	return json.Unmarshal(a.Body, v)
}

// call sends method url with body (nil: none) as JSON and header pairs.
func (w *web) call(ctx context.Context, method, url string, body any, header ...string) answer {
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		return answer{Err: fmt.Errorf("%w: %s", errNotLoopback, url)}
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return answer{Err: err}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return answer{Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		return answer{Err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	return answer{Status: resp.StatusCode, Body: raw, Header: resp.Header, Err: err}
}

// reservationJSON is the v1 reservation body.
type reservationJSON struct {
	ID    string `json:"id"`
	Fence int64  `json:"fence"`
	Pool  int64  `json:"pool"`
	State string `json:"state"`
	UTXOs []struct {
		Hash   string `json:"hash"`
		Amount uint64 `json:"amount"`
	} `json:"utxos"`
	ExpiresAt time.Time `json:"expires_at"`
	TxID      string    `json:"tx_id"`
}

func (r reservationJSON) hashes() []string {
	out := make([]string, len(r.UTXOs))
	for i, u := range r.UTXOs {
		out[i] = u.Hash
	}
	return out
}

func (r reservationJSON) sum() uint64 {
	var s uint64
	for _, u := range r.UTXOs {
		s += u.Amount
	}
	return s
}
