package handlers

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gofiber/fiber/v2/utils"
)

// docsTemplate renders the OpenAPI document as one self-contained HTML page.
//
//go:embed docs.html.tmpl
var docsTemplate string

var docsTmpl = template.Must(template.New("docs").Funcs(template.FuncMap{"text": docsText}).Parse(docsTemplate))

// Inline markup of the document's descriptions that the page renders.
var (
	codeSpanRE = regexp.MustCompile("`([^`]+)`")
	strongRE   = regexp.MustCompile(`\*\*([^*]+)\*\*`)
)

// docsText escapes a description and renders its `code` and **strong** spans.
func docsText(s string) template.HTML {
	esc := template.HTMLEscapeString(s)
	esc = codeSpanRE.ReplaceAllString(esc, "<code>$1</code>")
	esc = strongRE.ReplaceAllString(esc, "<strong>$1</strong>")
	return template.HTML(esc) //nolint:gosec // escaped first; only fixed tags are added
}

// docsPage is what the /docs template shows.
type docsPage struct {
	Title       string
	Version     string
	Description string
	Tags        []docsTag
	Schemas     []docsSchema
}

type docsTag struct {
	Name        string
	Description string
	Ops         []docsOp
}

type docsOp struct {
	Anchor      string
	Method      string
	Path        string
	Summary     string
	Description string
	Admin       bool
	Params      []docsParam
	Body        []docsMedia
	Responses   []docsResponse
	// ExampleRequest and ExampleResponse are an exchange built from the
	// document's examples: the request, then the first success answer.
	ExampleRequest, ExampleResponse string
}

type docsParam struct {
	Name        string
	In          string
	Required    bool
	Description string
	Schema      template.HTML
}

type docsMedia struct {
	Type    string
	Schema  template.HTML
	Example string // the media's example, indented JSON or text; empty when none
}

type docsResponse struct {
	Status      string
	Description string
	Headers     []docsParam
	Content     []docsMedia
}

type docsSchema struct {
	Name        string
	Description string
	JSON        template.HTML
}

// methodOrder is the order of operations under one path.
var methodOrder = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// renderDocs renders doc as the /docs page: operations grouped by their first
// tag (in the document's tag order), then every component schema.
func renderDocs(doc *openapi3.T) ([]byte, error) {
	page := docsPage{Title: doc.Info.Title, Version: doc.Info.Version, Description: doc.Info.Description}
	byTag := map[string]*docsTag{}
	for _, t := range doc.Tags {
		page.Tags = append(page.Tags, docsTag{Name: t.Name, Description: t.Description})
	}
	for i := range page.Tags {
		byTag[page.Tags[i].Name] = &page.Tags[i]
	}

	paths := doc.Paths.Map()
	keys := make([]string, 0, len(paths))
	for p := range paths {
		keys = append(keys, p)
	}
	slices.Sort(keys)
	var untagged []docsOp
	for _, path := range keys {
		ops := paths[path].Operations()
		for _, method := range methodOrder {
			op := ops[method]
			if op == nil {
				continue
			}
			d, err := docsOperation(method, path, op)
			if err != nil {
				return nil, err
			}
			if len(op.Tags) == 0 || byTag[op.Tags[0]] == nil {
				untagged = append(untagged, d)
				continue
			}
			t := byTag[op.Tags[0]]
			t.Ops = append(t.Ops, d)
		}
	}
	if len(untagged) > 0 {
		page.Tags = append(page.Tags, docsTag{Name: "other", Ops: untagged})
	}

	names := make([]string, 0, len(doc.Components.Schemas))
	for n := range doc.Components.Schemas {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		s := doc.Components.Schemas[n].Value
		js, err := schemaHTML(s)
		if err != nil {
			return nil, err
		}
		page.Schemas = append(page.Schemas, docsSchema{Name: n, Description: s.Description, JSON: js})
	}

	var buf bytes.Buffer
	if err := docsTmpl.Execute(&buf, page); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// docsOperation renders one operation.
func docsOperation(method, path string, op *openapi3.Operation) (docsOp, error) {
	d := docsOp{
		Anchor:      "op-" + op.OperationID,
		Method:      method,
		Path:        path,
		Summary:     op.Summary,
		Description: op.Description,
		Admin:       op.Security != nil && len(*op.Security) > 0,
	}
	if op.OperationID == "" {
		d.Anchor = "op-" + strings.ToLower(method) + strings.NewReplacer("/", "-", "{", "", "}", "").Replace(path)
	}
	for _, pr := range op.Parameters {
		p, err := docsParameter(pr.Value)
		if err != nil {
			return docsOp{}, err
		}
		d.Params = append(d.Params, p)
	}
	if rb := op.RequestBody; rb != nil && rb.Value != nil {
		media, err := docsContent(rb.Value.Content)
		if err != nil {
			return docsOp{}, err
		}
		d.Body = media
	}
	responses := op.Responses.Map()
	statuses := make([]string, 0, len(responses))
	for st := range responses {
		statuses = append(statuses, st)
	}
	slices.Sort(statuses)
	for _, st := range statuses {
		r := responses[st].Value
		dr := docsResponse{Status: st}
		if r.Description != nil {
			dr.Description = *r.Description
		}
		hnames := make([]string, 0, len(r.Headers))
		for h := range r.Headers {
			hnames = append(hnames, h)
		}
		slices.Sort(hnames)
		for _, h := range hnames {
			hp := r.Headers[h].Value.Parameter
			hp.Name, hp.In = h, "header"
			p, err := docsParameter(&hp)
			if err != nil {
				return docsOp{}, err
			}
			dr.Headers = append(dr.Headers, p)
		}
		media, err := docsContent(r.Content)
		if err != nil {
			return docsOp{}, err
		}
		dr.Content = media
		d.Responses = append(d.Responses, dr)
	}
	d.ExampleRequest = exampleRequest(method, path, op, d)
	d.ExampleResponse = exampleResponse(d.Responses)
	return d, nil
}

// exampleText is the example of a media type (its example, else its first
// named one, else its schema's): JSON indented, a string as it is.
func exampleText(m *openapi3.MediaType) string {
	if m == nil {
		return ""
	}
	v := m.Example
	if v == nil {
		names := make([]string, 0, len(m.Examples))
		for n := range m.Examples {
			names = append(names, n)
		}
		slices.Sort(names)
		if len(names) > 0 && m.Examples[names[0]].Value != nil {
			v = m.Examples[names[0]].Value.Value
		}
	}
	if v == nil && m.Schema != nil && m.Schema.Value != nil {
		v = m.Schema.Value.Example
	}
	switch v := v.(type) {
	case nil:
		return ""
	case string: // a text body (text/plain, text/html)
		return v
	}
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return ""
	}
	return string(js)
}

// paramExample is a parameter's example value as text ("" when it has none).
func paramExample(p *openapi3.Parameter) string {
	v := p.Example
	if v == nil && p.Schema != nil && p.Schema.Value != nil {
		v = p.Schema.Value.Example
	}
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// exampleRequest writes the request of an operation from its examples: the
// path with its parameters, the query parameters that have an example, the
// headers and the body.
func exampleRequest(method, path string, op *openapi3.Operation, d docsOp) string {
	var query, headers []string
	for _, pr := range op.Parameters {
		p := pr.Value
		ex := paramExample(p)
		if ex == "" {
			continue
		}
		switch p.In {
		case openapi3.ParameterInPath:
			path = strings.ReplaceAll(path, "{"+p.Name+"}", url.PathEscape(ex))
		case openapi3.ParameterInQuery:
			query = append(query, url.QueryEscape(p.Name)+"="+url.QueryEscape(ex))
		case openapi3.ParameterInHeader:
			headers = append(headers, p.Name+": "+ex)
		}
	}
	var b strings.Builder
	b.WriteString(method + " " + path)
	if len(query) > 0 {
		b.WriteString("?" + strings.Join(query, "&"))
	}
	b.WriteString("\n")
	if d.Admin {
		b.WriteString("Authorization: Bearer <admin token>\n")
	}
	for _, h := range headers {
		b.WriteString(h + "\n")
	}
	if len(d.Body) > 0 {
		b.WriteString("Content-Type: " + d.Body[0].Type + "\n\n" + d.Body[0].Example + "\n")
	}
	return b.String()
}

// exampleResponse writes the first success answer of responses (else the
// first answer) with its example body.
func exampleResponse(responses []docsResponse) string {
	if len(responses) == 0 {
		return ""
	}
	r := responses[0]
	for _, x := range responses { // 201 first: a POST's usual answer
		if x.Status == "201" {
			r = x
			break
		}
		if strings.HasPrefix(x.Status, "2") && !strings.HasPrefix(r.Status, "2") {
			r = x
		}
	}
	code, _ := strconv.Atoi(r.Status)
	var b strings.Builder
	b.WriteString("HTTP/1.1 " + r.Status + " " + utils.StatusMessage(code) + "\n")
	if len(r.Content) > 0 {
		b.WriteString("Content-Type: " + r.Content[0].Type + "\n\n" + r.Content[0].Example + "\n")
	}
	return b.String()
}

func docsParameter(p *openapi3.Parameter) (docsParam, error) {
	out := docsParam{Name: p.Name, In: p.In, Required: p.Required, Description: p.Description}
	if p.Schema != nil {
		js, err := schemaHTML(p.Schema)
		if err != nil {
			return docsParam{}, err
		}
		out.Schema = js
	}
	return out, nil
}

func docsContent(content openapi3.Content) ([]docsMedia, error) {
	types := make([]string, 0, len(content))
	for t := range content {
		types = append(types, t)
	}
	slices.Sort(types)
	var out []docsMedia
	for _, t := range types {
		m := docsMedia{Type: t, Example: exampleText(content[t])}
		if s := content[t].Schema; s != nil {
			js, err := schemaHTML(s)
			if err != nil {
				return nil, err
			}
			m.Schema = js
		}
		out = append(out, m)
	}
	return out, nil
}

// schemaRefRE finds a quoted, HTML-escaped reference to a component schema.
var schemaRefRE = regexp.MustCompile(`&#34;#/components/schemas/([A-Za-z0-9_.-]+)&#34;`)

// schemaHTML renders a schema (or a reference to one) as escaped, indented
// JSON in which every component reference links to that schema's section.
func schemaHTML(v any) (template.HTML, error) {
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	escaped := template.HTMLEscapeString(string(js))
	linked := schemaRefRE.ReplaceAllString(escaped, `&#34;<a href="#schema-$1">#/components/schemas/$1</a>&#34;`)
	return template.HTML(linked), nil //nolint:gosec // escaped above; the link target is [A-Za-z0-9_.-]+
}
