package messages_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/bccstop/bccstop/messages"
)

// TestContractDocumentFollowsTheCode: docs/contract.md, the project's own
// copy of the wire contract, names every command field of the schema,
// every code, outcome and subject this package defines. A field or code
// added here and not there (or the other way round) fails.
func TestContractDocumentFollowsTheCode(t *testing.T) {
	raw, err := os.ReadFile("../docs/contract.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	var schema struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	b, err := messages.Schemas.ReadFile("schema/command.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	_, commandTable, _ := strings.Cut(doc, "## 2. Commands")
	commandTable, _, _ = strings.Cut(commandTable, "## 3.")
	for field := range schema.Properties {
		if !strings.Contains(commandTable, "| `"+field+"` |") {
			t.Errorf("command field %s is in the schema but not in section 2 of docs/contract.md", field)
		}
	}
	for _, line := range strings.Split(commandTable, "\n") {
		if f, ok := strings.CutPrefix(line, "| `"); ok {
			name, _, _ := strings.Cut(f, "`")
			if _, known := schema.Properties[name]; !known {
				t.Errorf("docs/contract.md lists command field %s, which the schema does not have", name)
			}
		}
	}
	for _, code := range codeConstants(t) {
		if !strings.Contains(doc, "`"+code+"`") {
			t.Errorf("code %s is defined in messages but not named in docs/contract.md", code)
		}
	}
	for _, o := range messages.Outcomes {
		if !strings.Contains(doc, "| `"+string(o)+"` |") {
			t.Errorf("outcome %s missing from the outcome table", o)
		}
	}
	for _, subject := range []string{messages.CommandSubject, messages.ResultSubjectPrefix + "<outcome>", messages.ResultSubjects,
		messages.ControlSubjectPrefix + "<action>", messages.ScheduleSubjectPrefix + "<schedule id>"} {
		if !strings.Contains(doc, "`"+subject+"`") {
			t.Errorf("subject %s is not in docs/contract.md", subject)
		}
	}
	for _, action := range messages.ControlActions {
		if !strings.Contains(doc, "`"+action+"`") {
			t.Errorf("control action %s is not in docs/contract.md", action)
		}
	}
}

// codeConstants returns the values of the Code* constants of outcome.go.
func codeConstants(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "outcome.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Code") || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok {
					v, _ := strconv.Unquote(lit.Value)
					codes = append(codes, v)
				}
			}
		}
	}
	if len(codes) < 10 {
		t.Fatalf("found only %d codes in outcome.go", len(codes))
	}
	return codes
}
