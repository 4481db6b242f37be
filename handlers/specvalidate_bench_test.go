package handlers

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// BenchmarkReserveValidation compares the hand-written decoder of a POST
// /v1/reservations body with openapi3filter's validation of the same request
// against openapi.yaml (the figures are in specvalidate.go). Run it briefly:
//
//	go test -run '^$' -bench ReserveValidation -benchtime=2000x -benchmem ./handlers
func BenchmarkReserveValidation(b *testing.B) {
	body := []byte(`{"asset":"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",` +
		`"program":"0020013152e83c3d0df949b498e7d6a123c222cf2950e4637f980a52f00965f6f8e9",` +
		`"amount":120000000,"ttl_seconds":60,"owner":"shop-7"}`)
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := decodeReserve(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("openapi3filter", func(b *testing.B) {
		doc, err := openAPI()
		if err != nil {
			b.Fatal(err)
		}
		item := doc.Paths.Value("/v1/reservations")
		route := &routers.Route{Spec: doc, Path: "/v1/reservations", PathItem: item, Method: http.MethodPost, Operation: item.Post}
		opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			req, _ := http.NewRequest(http.MethodPost, "/v1/reservations", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			in := &openapi3filter.RequestValidationInput{Request: req, Route: route, Options: opts}
			if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
				b.Fatal(err)
			}
		}
	})
}
