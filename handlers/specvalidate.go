package handlers

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"
)

// The v1 routes' path, query and header parameters are checked against
// openapi.yaml with kin-openapi's openapi3filter (checkParams): the
// document's enums, patterns and bounds are the rules, and a refused
// parameter is answered with its message of paramErrors. The handlers then
// only parse values already known to be well formed (their parse errors
// answer the same message, for the few strings a schema admits and strconv
// does not, such as "0x10" for an integer).
//
// Request bodies keep their hand-written decoders (validate.go,
// reservations_validate.go): they give null the meaning of an absent field,
// refuse repeated keys and read an amount of up to 2^64-1 exactly, as a
// number or a string, which a JSON Schema check of the decoded document
// cannot tell apart. On the hot path, POST /v1/reservations, openapi3filter
// is also measurably slower: BenchmarkReserveValidation (-benchtime=2000x
// -count=3, on the shared 2-core test machine) measured 12-16 µs/op, 4.5 KB
// and 92 allocs for decodeReserve, which also decodes, against 46-77 µs/op,
// 10.9 KB and 166 allocs for openapi3filter.ValidateRequest of the same
// request, which only validates (the body would still have to be decoded).

// paramErrors is the answer for each refused parameter, by name.
var paramErrors = map[string]error{
	"state":   errBadState,
	"limit":   errBadPageLimit,
	"cursor":  errBadCursor,
	"pool":    errBadPoolID,
	"address": errBadAddress,
}

// errReservationID marks a malformed reservation id: it is answered like an
// unknown one (reservationNotFound).
var errReservationID = errors.New("handlers: malformed reservation id")

// validReservationID reports whether id is a ReservationID of openapi.yaml:
// 32 lower-case hex characters. It runs on every request naming a
// reservation (get, extend, submit, release), so it is written out rather
// than asking the spec: the schema's VisitJSON measured 735-803 ns and 3
// allocations per id against 23-26 ns and none for this loop
// (BenchmarkValidReservationID, -count=3, on the 2-core machine). TestReservationIDFollowsTheSpec keeps the two in agreement.
func validReservationID(id string) bool {
	if len(id) != reservationIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// reservationIDLen is the length of a reservation id (128 random bits in hex).
const reservationIDLen = 32

// specOps is every operation of openapi.yaml by operationId, built once.
var specOps = sync.OnceValue(func() map[string]*openapi3.Operation {
	ops := map[string]*openapi3.Operation{}
	doc, err := openAPI()
	if err != nil {
		return ops // registerOpenAPI has already refused to start
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			ops[op.OperationID] = op
		}
	}
	return ops
})

// paramOptions skips what checkParams does not check: bodies and security.
var paramOptions = &openapi3filter.Options{ExcludeRequestBody: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}

// checkParams checks the parameters of c against those of the operation
// opID. It returns an *inputError with the parameter's message, or
// errReservationID for a malformed reservation id.
func checkParams(c *fiber.Ctx, opID string) error {
	op := specOps()[opID]
	if op == nil || len(op.Parameters) == 0 {
		return nil
	}
	// An empty query parameter is an absent one, as the handlers read them.
	query := url.Values{}
	c.Request().URI().QueryArgs().VisitAll(func(k, v []byte) {
		if len(v) > 0 {
			query.Add(string(k), string(v))
		}
	})
	req := &http.Request{Method: c.Method(), URL: &url.URL{Path: c.Path(), RawQuery: query.Encode()}, Header: http.Header{}}
	input := &openapi3filter.RequestValidationInput{Request: req, PathParams: map[string]string{}, Options: paramOptions}
	for _, pr := range op.Parameters {
		p := pr.Value
		switch p.In {
		case openapi3.ParameterInPath:
			input.PathParams[p.Name] = utils.CopyString(c.Params(p.Name))
		case openapi3.ParameterInHeader:
			if v := c.Get(p.Name); v != "" {
				req.Header.Set(p.Name, v)
			}
		}
	}
	for _, pr := range op.Parameters {
		p := pr.Value
		if err := openapi3filter.ValidateParameter(context.Background(), input, p); err != nil {
			if p.In == openapi3.ParameterInPath && p.Name == "id" && p.Schema.Ref == "#/components/schemas/ReservationID" {
				return errReservationID
			}
			if p.In == openapi3.ParameterInPath && p.Name == "id" {
				return errBadPoolID
			}
			if e, ok := paramErrors[p.Name]; ok {
				return e
			}
			return badInput(p.Name + " is invalid")
		}
	}
	return nil
}
