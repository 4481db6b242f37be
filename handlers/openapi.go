package handlers

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gofiber/fiber/v2"
)

// openapiYAML is the hand-written OpenAPI 3 document of every route New serves.
//
//go:embed openapi.yaml
var openapiYAML []byte

// apiSpec is the loaded document and its two renderings, built once.
type apiSpec struct {
	doc  *openapi3.T
	json []byte // GET /openapi.json
	html []byte // GET /docs
}

// loadSpec parses and validates the embedded document and renders it, once per process.
var loadSpec = sync.OnceValues(func() (*apiSpec, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	loader := openapi3.NewLoader()
	loader.Context = ctx
	doc, err := loader.LoadFromData(openapiYAML)
	if err != nil {
		return nil, fmt.Errorf("handlers: load openapi.yaml: %w", err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("handlers: invalid openapi.yaml: %w", err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("handlers: render openapi.json: %w", err)
	}
	page, err := renderDocs(doc)
	if err != nil {
		return nil, fmt.Errorf("handlers: render docs: %w", err)
	}
	return &apiSpec{doc: doc, json: js, html: page}, nil
})

// openAPI returns the API's OpenAPI 3 document, loaded and validated. Callers
// must not modify it.
func openAPI() (*openapi3.T, error) {
	sp, err := loadSpec()
	if err != nil {
		return nil, err
	}
	return sp.doc, nil
}

// registerOpenAPI serves GET /openapi.json and GET /docs. The document is
// embedded in the binary, so a document that does not load is a build defect:
// it panics at startup (and fails the package's tests) rather than serving an
// API without its description.
func registerOpenAPI(app *fiber.App) {
	sp, err := loadSpec()
	if err != nil {
		panic(err)
	}
	app.Get("/openapi.json", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		c.Set(fiber.HeaderCacheControl, "no-cache")
		return c.Send(sp.json)
	})
	app.Get("/docs", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
		c.Set(fiber.HeaderCacheControl, "no-cache")
		// The page is self-contained: inline style, no script, nothing fetched.
		c.Set(fiber.HeaderContentSecurityPolicy, "default-src 'none'; style-src 'unsafe-inline'")
		return c.Send(sp.html)
	})
}
