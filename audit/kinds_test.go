package audit

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// kindConstants parses events.go and returns its Kind* constants, name to
// value, in declaration order.
func kindConstants(t *testing.T) (names []string, values map[string]string) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "events.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	values = map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, "Kind") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Fatalf("%s is not a string literal", n.Name)
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				names = append(names, n.Name)
				values[n.Name] = v
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("events.go declares no Kind constants")
	}
	return names, values
}

// TestKindTable checks the table against the Kind constants: one row per
// constant, in their order, each with the payload type named after it, a
// writer, and a timeline line for exactly the timeline kinds.
func TestKindTable(t *testing.T) {
	names, values := kindConstants(t)
	var want []string
	for _, n := range names {
		want = append(want, values[n])
	}
	if got := KindNames(func(KindSpec) bool { return true }); !slices.Equal(got, want) {
		t.Fatalf("table rows = %q,\nwant the Kind constants %q", got, want)
	}
	for i, k := range Kinds() {
		if err := checkKind(k.Name); err != nil {
			t.Errorf("row %q: %v", k.Name, err)
		}
		if got, want := k.Payload.Name(), strings.TrimPrefix(names[i], "Kind"); got != want || k.Payload.PkgPath() != reflect.TypeFor[Event]().PkgPath() {
			t.Errorf("row %q: payload type %v, want audit.%s", k.Name, k.Payload, want)
		}
		if k.Writers == 0 {
			t.Errorf("row %q: no log writes it", k.Name)
		}
		if k.Section < SectionTimeline || k.Section > SectionCounted {
			t.Errorf("row %q: section %d", k.Name, k.Section)
		}
		if (k.Section == SectionTimeline) != (k.Detail != nil) {
			t.Errorf("row %q: section %d with Detail set %t; a timeline kind, and only one, renders a line", k.Name, k.Section, k.Detail != nil)
		}
		if got, ok := LookupKind(k.Name); !ok || got.Name != k.Name {
			t.Errorf("LookupKind(%q) = %q, %t", k.Name, got.Name, ok)
		}
	}
	if _, ok := LookupKind("no_such_kind"); ok {
		t.Error(`LookupKind("no_such_kind") found a row`)
	}
}

// TestEveryEmittedKindIsInTable scans the module's Go files for every
// kind an emitter names, as a Kind constant (audit.KindX, or KindX inside
// package audit) or as a string literal in an Entry's Kind field or an
// event(…) helper's first argument, and checks that the table has it: a
// kind emitted without its row would reach the report and the metrics
// unknown.
func TestEveryEmittedKindIsInTable(t *testing.T) {
	_, values := kindConstants(t)
	root := filepath.Join("..")
	fset := token.NewFileSet()
	seen := 0
	check := func(pos token.Pos, kind string) {
		seen++
		if _, ok := LookupKind(kind); !ok {
			t.Errorf("%s: kind %q is emitted but has no row in the table", fset.Position(pos), kind)
		}
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "testdata" || n == "vendor" || (strings.HasPrefix(n, ".") && n != "." && n != "..") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		inAudit := f.Name.Name == "audit"
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && x.Name == "audit" && strings.HasPrefix(n.Sel.Name, "Kind") && n.Sel.Name != "KindSpec" && n.Sel.Name != "KindNames" {
					v, ok := values[n.Sel.Name]
					if !ok {
						t.Errorf("%s: audit.%s is not a Kind constant of events.go", fset.Position(n.Pos()), n.Sel.Name)
						return true
					}
					check(n.Pos(), v)
				}
			case *ast.Ident:
				if v, ok := values[n.Name]; ok && inAudit {
					check(n.Pos(), v)
				}
			case *ast.CompositeLit:
				if !isEntryType(n.Type, inAudit) {
					return true
				}
				for _, el := range n.Elts {
					kv, ok := el.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Kind" {
						if lit, ok := kv.Value.(*ast.BasicLit); ok && lit.Kind == token.STRING {
							v, _ := strconv.Unquote(lit.Value)
							check(lit.Pos(), v)
						}
					}
				}
			case *ast.CallExpr:
				if fn, ok := n.Fun.(*ast.Ident); ok && fn.Name == "event" && len(n.Args) > 0 {
					if lit, ok := n.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						v, _ := strconv.Unquote(lit.Value)
						check(lit.Pos(), v)
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The coordinator alone names more than 40 kinds: a scan that finds
	// few has lost its way, not proved anything.
	if seen < 40 {
		t.Fatalf("the scan found %d kind references under %s; expected the coordinator's", seen, root)
	}
}

// TestNewKindIsOneRow shows what one new row gives, with no other change:
// the kind is found, decoded, rendered, and listed for the coordinator's
// metrics and quota.
func TestNewKindIsOneRow(t *testing.T) {
	type ModelExported struct {
		Path string `json:"path"`
	}
	const kind = "model_exported"
	saved := kindTable
	t.Cleanup(func() { kindTable = saved })
	kindTable = append(slices.Clone(saved), timeline(kind, WriterCoordinator, true, func(_ Event, p ModelExported) string {
		return "model exported to " + p.Path
	}))

	k, ok := LookupKind(kind)
	if !ok {
		t.Fatalf("LookupKind(%q) found no row", kind)
	}
	ev := Event{Kind: kind, Payload: []byte(`{"path":"model.bin"}`)}
	p, err := k.Decode(ev)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got, want := k.Detail(ev, p), "model exported to model.bin"; got != want {
		t.Errorf("Detail = %q, want %q", got, want)
	}
	if !slices.Contains(KindNames(func(k KindSpec) bool { return k.Writers&WriterCoordinator != 0 }), kind) {
		t.Error("the coordinator's kinds do not list the new kind")
	}
	if !slices.Contains(KindNames(func(k KindSpec) bool { return k.Quota }), kind) {
		t.Error("the quota's kinds do not list the new kind")
	}
	if _, err := k.Decode(Event{Kind: kind, Payload: []byte(`{"path":1}`)}); err == nil {
		t.Error("Decode of a payload of the wrong shape succeeded")
	}
}

// isEntryType says whether a composite literal's type is audit.Entry
// (Entry inside package audit).
func isEntryType(e ast.Expr, inAudit bool) bool {
	switch e := e.(type) {
	case *ast.Ident:
		return inAudit && e.Name == "Entry"
	case *ast.SelectorExpr:
		x, ok := e.X.(*ast.Ident)
		return ok && x.Name == "audit" && e.Sel.Name == "Entry"
	}
	return false
}
