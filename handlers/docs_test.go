package handlers

import (
	"html"
	"strings"
	"testing"
)

// /docs shows an example exchange for every operation: its request (with the
// body's example) and its success answer (with the body's example), taken
// from the document, whose every request body and answer body has an example.
func TestDocsExamples(t *testing.T) {
	sp, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	page := html.UnescapeString(string(sp.html))
	for path, item := range sp.doc.Paths.Map() {
		for method, op := range item.Operations() {
			what := method + " " + path
			if rb := op.RequestBody; rb != nil {
				for mt, m := range rb.Value.Content {
					if exampleText(m) == "" {
						t.Errorf("%s: request body %s has no example", what, mt)
					}
				}
			}
			for st, r := range op.Responses.Map() {
				for mt, m := range r.Value.Content {
					if exampleText(m) == "" {
						t.Errorf("%s: answer %s %s has no example", what, st, mt)
					}
				}
			}
			d, err := docsOperation(method, path, op)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(d.ExampleRequest, method+" /") || !strings.HasPrefix(d.ExampleResponse, "HTTP/1.1 2") {
				t.Errorf("%s: example exchange\n%s\n%s", what, d.ExampleRequest, d.ExampleResponse)
			}
			if line, _, _ := strings.Cut(d.ExampleRequest, "\n"); strings.Contains(line, "{") {
				t.Errorf("%s: a path parameter has no example: %s", what, d.ExampleRequest)
			}
			if !strings.Contains(page, `<pre class="ex-req">`+d.ExampleRequest+`</pre>`) ||
				!strings.Contains(page, `<pre class="ex-resp">`+d.ExampleResponse+`</pre>`) {
				t.Errorf("/docs does not show the example exchange of %s", what)
			}
		}
	}
	// Compact: schemas are folded away, not spread over the page.
	if n := strings.Count(page, "<pre>") - strings.Count(page, "<details><summary>schema</summary><pre>") -
		strings.Count(page, "<details><summary>example</summary><pre>"); n != 0 {
		t.Errorf("%d schemas or examples are not folded", n)
	}
}
