package handlers

import (
	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/bufferd/bufferd/client"
)

// Every error answer outside the legacy routes is an RFC 9457 problem
// details object, served as application/problem+json:
//
//	{"type":"https://bufferd.dev/problems/pool_not_found","title":"Pool not found",
//	 "status":404,"detail":"pool not found","code":"pool_not_found","request_id":"..."}
//
// type is problemTypeBase followed by the code: an identifier, not a page to
// fetch. title is fixed per code; detail says what went wrong this time.
// code (the snake_case name clients match on) and request_id are extension
// members. problemCodes lists every code; openapi.yaml's ProblemCode schema
// lists the same ones (a test keeps the two equal).

// problemTypeBase prefixes a problem's code to make its type URI.
const problemTypeBase = "https://bufferd.dev/problems/"

// mimeProblemJSON is the media type of a problem details answer.
const mimeProblemJSON = "application/problem+json"

// problemType is the fixed part of a problem: its HTTP status and title.
type problemType struct {
	Status int    `json:"status" yaml:"status"`
	Title  string `json:"title" yaml:"title"`
}

// problemCodes is every error code of the API, one name per error: the
// client module's Code constants (client.Codes), each with its status and title.
var problemCodes = map[string]problemType{
	client.CodeBadRequest:           {fiber.StatusBadRequest, "Bad request"},
	client.CodeUnauthorized:         {fiber.StatusUnauthorized, "Unauthorized"},
	client.CodeNotFound:             {fiber.StatusNotFound, "No such route"},
	client.CodePoolNotFound:         {fiber.StatusNotFound, "Pool not found"},
	client.CodeReservationNotFound:  {fiber.StatusNotFound, "Reservation not found"},
	client.CodeUTXONotFound:         {fiber.StatusNotFound, "UTXO not found"},
	client.CodeMethodNotAllowed:     {fiber.StatusMethodNotAllowed, "Method not allowed"},
	client.CodeNoUTXOAvailable:      {fiber.StatusConflict, "No UTXO available"},
	client.CodeUTXOLocked:           {fiber.StatusConflict, "UTXO locked"},
	client.CodeLifetimeExceeded:     {fiber.StatusConflict, "Lifetime exceeded"},
	client.CodeReservationSubmitted: {fiber.StatusConflict, "Reservation submitted"},
	client.CodeTxMismatch:           {fiber.StatusConflict, "Transaction mismatch"},
	client.CodeIdempotencyKeyInUse:  {fiber.StatusConflict, "Idempotency key in use"},
	client.CodeReservationEnded:     {fiber.StatusGone, "Reservation ended"},
	client.CodeBodyTooLarge:         {fiber.StatusRequestEntityTooLarge, "Request body too large"},
	client.CodeIdempotencyKeyReused: {fiber.StatusUnprocessableEntity, "Idempotency key reused"},
	client.CodeRateLimited:          {fiber.StatusTooManyRequests, "Too many requests"},
	client.CodeInternal:             {fiber.StatusInternalServerError, "Internal error"},
	client.CodeUnavailable:          {fiber.StatusServiceUnavailable, "Service unavailable"},
	client.CodeRebuilding:           {fiber.StatusServiceUnavailable, "Pool being rebuilt"},
}

// problem is an RFC 9457 problem details object with bufferd's extension members.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	RequestID string `json:"request_id,omitempty"`
}

// apiError answers a problem of code with HTTP status and detail msg. The
// status is normally the code's own (problemCodes); fiber's rarer 4xx
// errors reuse bad_request with their status.
func apiError(c *fiber.Ctx, status int, code, msg string) error {
	p := problem{Type: problemTypeBase + code, Status: status, Detail: msg, Code: code, RequestID: requestID(c)}
	if pt, ok := problemCodes[code]; ok {
		p.Title = pt.Title
	} else {
		p.Title = statusTitle(status)
	}
	return c.Status(status).JSON(p, mimeProblemJSON)
}

// statusTitle is the reason phrase of status, "Error" when it has none.
func statusTitle(status int) string {
	if t := utils.StatusMessage(status); t != "" {
		return t
	}
	return "Error"
}
