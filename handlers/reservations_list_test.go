package handlers

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/bufferd/bufferd/storage"
)

type resListBody struct {
	Reservations []resBody `json:"reservations"`
	NextCursor   string    `json:"next_cursor"`
}

// TestListReservationsRoute lists real reservations (Redis, journal in
// PostgreSQL) page by page and with each filter, refuses callers without the
// admin token, and answers bad parameters with 400.
func TestListReservationsRoute(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20, 30, 40, 50, 60)
	auth := []string{"Authorization", "Bearer " + testToken}
	other, _ := f.addPool(randHex(t, 32), "51", 5, 6)

	var made []resBody
	for i, owner := range []string{"alice", "bob", "alice", "carol"} {
		status, body := f.call("POST", "/v1/reservations", fmt.Sprintf(`{"pool":%d,"count":1,"owner":%q}`, f.pool.ID, owner))
		if status != http.StatusCreated {
			t.Fatalf("reserve %d: %d %s", i, status, body)
		}
		made = append(made, decode[resBody](t, body))
	}
	status, body := f.call("POST", "/v1/reservations", fmt.Sprintf(`{"pool":%d,"count":2,"owner":"alice"}`, other.ID))
	if status != http.StatusCreated {
		t.Fatalf("reserve in the other pool: %d %s", status, body)
	}
	made = append(made, decode[resBody](t, body))
	if status, body := f.call("DELETE", "/v1/reservations/"+made[1].ID, ""); status != http.StatusOK {
		t.Fatalf("release: %d %s", status, body)
	}
	f.flushJournals() // the release reaches the journal

	list := func(query string, limit int) []resBody {
		t.Helper()
		var out []resBody
		cursor := ""
		for range 20 {
			target := fmt.Sprintf("/v1/reservations?limit=%d&cursor=%s&%s", limit, cursor, query)
			status, body := do(t, f.app, "GET", target, "", auth...)
			if status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", target, status, body)
			}
			page := decode[resListBody](t, body)
			if len(page.Reservations) > limit {
				t.Fatalf("GET %s: %d reservations, limit %d", target, len(page.Reservations), limit)
			}
			out = append(out, page.Reservations...)
			if page.NextCursor == "" {
				return out
			}
			cursor = page.NextCursor
		}
		t.Fatalf("%s: pages without end", query)
		return nil
	}
	ids := func(rs []resBody) []string {
		out := make([]string, len(rs))
		for i, r := range rs {
			out[i] = r.ID
		}
		return out
	}
	idsOf := func(idx ...int) []string {
		var out []string
		for _, i := range idx {
			out = append(out, made[i].ID)
		}
		return out
	}
	// Pools in descending id order, newest first within a pool.
	all := []int{4, 3, 2, 1, 0}
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", idsOf(all...)},
		{fmt.Sprintf("pool=%d", f.pool.ID), idsOf(3, 2, 1, 0)},
		{"state=live", idsOf(4, 3, 2, 0)},
		{"state=held", idsOf(4, 3, 2, 0)},
		{"state=released", idsOf(1)},
		{"state=spent", nil},
		{"owner=alice", idsOf(4, 2, 0)},
		{fmt.Sprintf("owner=alice&pool=%d&state=live", f.pool.ID), idsOf(2, 0)},
	} {
		for _, limit := range []int{1, 2, 1000} {
			if got := ids(list(c.query, limit)); !slices.Equal(got, c.want) {
				t.Errorf("%q, pages of %d: %v, want %v", c.query, limit, got, c.want)
			}
		}
	}
	// A listed reservation is shown as GET /v1/reservations/{id} shows it.
	got := list("owner=carol", 10)
	if len(got) != 1 || got[0].Fence != made[3].Fence || got[0].Pool != f.pool.ID || got[0].State != "held" ||
		len(got[0].UTXOs) != 1 || got[0].UTXOs[0] != made[3].UTXOs[0] || got[0].CreatedAt == "" || got[0].ExpiresAt != made[3].ExpiresAt {
		t.Errorf("carol's reservation: %+v, made %+v", got, made[3])
	}

	// Without the admin token: 401, as the other admin routes.
	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", testToken}} {
		status, body := do(t, f.app, "GET", "/v1/reservations", "", h...)
		if status != http.StatusUnauthorized || decode[apiErr](t, body).Code != "unauthorized" {
			t.Errorf("with %v: %d %s", h, status, body)
		}
	}
	if status, _ := do(t, f.newApp(Config{AdminToken: ""}), "GET", "/v1/reservations", "", "Authorization", "Bearer "); status != http.StatusUnauthorized {
		t.Errorf("an empty bearer token: %d", status)
	}

	// Bad parameters: 400 bad_request, whatever else the query says.
	b64 := base64.RawURLEncoding.EncodeToString
	for _, q := range []string{
		"pool=abc", "pool=0", "pool=-1", "state=burnt", "state=HELD", "owner=" + strings.Repeat("o", 65), "owner=a%0Ab",
		"limit=0", "limit=1001", "limit=x", "cursor=!!", "cursor=12", "cursor=" + b64([]byte("1")),
		"cursor=" + b64([]byte("1.0")), "cursor=" + b64([]byte("01.5")), "cursor=" + b64([]byte("1.5")) + "=",
		"cursor=" + url.QueryEscape(base64.URLEncoding.EncodeToString([]byte("1.55"))),
	} {
		status, body := do(t, f.app, "GET", "/v1/reservations?"+q, "", auth...)
		if status != http.StatusBadRequest || decode[apiErr](t, body).Code != "bad_request" {
			t.Errorf("%s: %d %s", q, status, body)
		}
	}
	if status, body := do(t, f.app, "GET", "/v1/reservations?pool=999999", "", auth...); status != http.StatusNotFound ||
		decode[apiErr](t, body).Code != "pool_not_found" {
		t.Errorf("unknown pool: %d %s", status, body)
	}
}

// TestResCursorRoundTrip checks that every cursor the route writes parses
// back to its position.
func TestResCursorRoundTrip(t *testing.T) {
	t.Parallel()
	for _, k := range [][2]int64{{1, 1}, {7, 123456}, {1<<63 - 1, 1<<63 - 1}} {
		want := storage.ReservationKey{PoolID: k[0], Fence: k[1]}
		c := formatResCursor(want)
		got, err := parseResCursor(c)
		if err != nil || got != want {
			t.Errorf("%v -> %q -> %v %v", k, c, got, err)
		}
	}
}
