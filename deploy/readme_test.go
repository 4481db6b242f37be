package deploy

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the values table of helm/bufferd/README.md")

const (
	chartREADME = chartDir + "/README.md"
	valuesStart = "<!-- values:start (generated from values.yaml by deploy's TestChartREADME; go test -run TestChartREADME -update) -->"
	valuesEnd   = "<!-- values:end -->"
)

// valueDoc is one documented value of values.yaml.
type valueDoc struct {
	key, typ, def, desc string
}

// valueDocs walks values.yaml as helm-docs does: a key whose comment starts
// with "# --" is documented (the comment's following lines continue it) and
// listed with its default; an undocumented map is descended into; an
// undocumented leaf is an error.
func valueDocs(t *testing.T) []valueDoc {
	t.Helper()
	var root yamlv3.Node
	if err := yamlv3.Unmarshal(mustRead(t, chartDir+"/values.yaml"), &root); err != nil {
		t.Fatal(err)
	}
	var out []valueDoc
	var walk func(prefix string, m *yamlv3.Node)
	walk = func(prefix string, m *yamlv3.Node) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			key := prefix + k.Value
			desc, ok := docComment(k.HeadComment)
			if !ok {
				if v.Kind == yamlv3.MappingNode && len(v.Content) > 0 {
					walk(key+".", v)
					continue
				}
				t.Errorf("values.yaml: %s has no \"# --\" comment", key)
				continue
			}
			var val any
			if err := v.Decode(&val); err != nil {
				t.Fatal(err)
			}
			def, _ := json.Marshal(val)
			out = append(out, valueDoc{key, typeOf(v, val), string(def), desc})
		}
	}
	walk("", root.Content[0])
	return out
}

// docComment returns the text of a "# --" comment and the lines after it.
func docComment(head string) (string, bool) {
	lines := strings.Split(head, "\n")
	for i, l := range lines {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "# --"); ok {
			parts := []string{strings.TrimSpace(rest)}
			for _, more := range lines[i+1:] {
				parts = append(parts, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(more), "#")))
			}
			return strings.Join(parts, " "), true
		}
	}
	return "", false
}

func typeOf(n *yamlv3.Node, v any) string {
	switch v.(type) {
	case nil:
		return "string/int/null"
	case bool:
		return "bool"
	case int, int64, uint64:
		return "int"
	case float64:
		return "float"
	case string:
		return "string"
	case []any:
		return "list"
	}
	if n.Kind == yamlv3.MappingNode {
		return "object"
	}
	return "string"
}

// valuesTable is the README's table of every documented value.
func valuesTable(docs []valueDoc) string {
	var b strings.Builder
	b.WriteString("| Key | Type | Default | Description |\n|-----|------|---------|-------------|\n")
	for _, d := range docs {
		def := strings.ReplaceAll(d.def, "|", `\|`)
		fmt.Fprintf(&b, "| %s | %s | `%s` | %s |\n", d.key, d.typ, def, strings.ReplaceAll(d.desc, "|", `\|`))
	}
	return b.String()
}

// TestChartREADME checks that helm/bufferd/README.md lists every value of
// values.yaml with its default and description, as generated from the
// "# --" comments (-update rewrites the table).
func TestChartREADME(t *testing.T) {
	docs := valueDocs(t)
	if len(docs) < 80 {
		t.Fatalf("only %d documented values", len(docs))
	}
	readme := string(mustRead(t, chartREADME))
	start, end := strings.Index(readme, valuesStart), strings.Index(readme, valuesEnd)
	if start < 0 || end < start {
		t.Fatalf("%s lacks the markers %q and %q", chartREADME, valuesStart, valuesEnd)
	}
	want := readme[:start+len(valuesStart)] + "\n" + valuesTable(docs) + readme[end:]
	if *update {
		if err := os.WriteFile(chartREADME, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		readme = want
	}
	if readme != want {
		t.Fatalf("%s's values table is out of date: go test -run TestChartREADME -update", chartREADME)
	}
	for _, d := range docs {
		if !strings.Contains(readme, "| "+d.key+" |") {
			t.Errorf("README lacks %s", d.key)
		}
	}
}
