package chain

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestBytomdMempool(t *testing.T) {
	id := strings.Repeat("ab", 32)
	for _, c := range []struct {
		name, body string
		want       []string
		bad        bool
	}{
		{"ids", `{"status":"success","data":{"total":1,"tx_ids":["` + id + `"]}}`, []string{id}, false},
		{"empty", `{"status":"success","data":{"total":0,"tx_ids":[]}}`, nil, false},
		{"short id", `{"status":"success","data":{"total":1,"tx_ids":["abcd"]}}`, nil, true},
		{"not hex", `{"status":"success","data":{"total":1,"tx_ids":["` + strings.Repeat("zz", 32) + `"]}}`, nil, true},
		{"not json", `<html>`, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := server(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/list-unconfirmed-transactions" || r.Method != http.MethodPost {
					http.NotFound(w, r)
					return
				}
				_, _ = w.Write([]byte(c.body))
			})
			got, err := NewBytomd(srv.URL).Mempool(context.Background())
			if c.bad {
				if !errors.Is(err, ErrBadResponse) {
					t.Fatalf("err = %v, want ErrBadResponse", err)
				}
				return
			}
			if err != nil || !slices.Equal(got, c.want) {
				t.Fatalf("Mempool = %v, %v; want %v", got, err, c.want)
			}
		})
	}
}
