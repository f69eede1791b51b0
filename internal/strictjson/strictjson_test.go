package strictjson_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/internal/strictjson"
)

type doc struct {
	A int    `json:"a"`
	B string `json:"b,omitempty"`
}

func TestUnmarshal(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     doc
		wantErr  string // "" for none
		trailing bool   // want ErrTrailing
	}{
		{name: "object", in: `{"a": 1, "b": "x"}`, want: doc{A: 1, B: "x"}},
		{name: "white space around", in: " \n\t{\"a\": 2}\n\n", want: doc{A: 2}},
		{name: "unknown field", in: `{"a": 1, "c": 2}`, wantErr: `json: unknown field "c"`},
		{name: "second value", in: `{"a": 1}{"a": 2}`, trailing: true},
		{name: "trailing garbage", in: `{"a": 1} x`, trailing: true},
		{name: "trailing bracket", in: `{"a": 1}]`, trailing: true},
		{name: "truncated", in: `{"a": 1`, wantErr: "unexpected EOF"},
		{name: "empty", in: ``, wantErr: "EOF"},
		{name: "wrong type", in: `{"a": "1"}`, wantErr: "json: cannot unmarshal string into Go struct field doc.a of type int"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got doc
			err := strictjson.Unmarshal([]byte(tt.in), &got)
			switch {
			case tt.trailing:
				if !errors.Is(err, strictjson.ErrTrailing) {
					t.Fatalf("Unmarshal(%q) = %v, want ErrTrailing", tt.in, err)
				}
			case tt.wantErr != "":
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Unmarshal(%q) = %v, want %q", tt.in, err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("Unmarshal(%q) = %v", tt.in, err)
			case got != tt.want:
				t.Fatalf("Unmarshal(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// TestReadFile reads real files at, under and over the bound, a missing
// one, a directory and an endless device, whose read must stop at the
// bound.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name    string
		path    string
		limit   int64
		want    string
		wantErr error  // want errors.Is(err, wantErr); nil for none
		errText string // the error's text must hold this
	}{
		{name: "under the bound", path: write("small.json", `{"a": 1}`), limit: 9, want: `{"a": 1}`},
		{name: "at the bound", path: write("exact.json", `{"a": 1}`), limit: 8, want: `{"a": 1}`},
		{name: "empty", path: write("empty.json", ""), limit: 8, want: ""},
		{name: "over the bound", path: write("big.json", `{"a": 10}`), limit: 8, wantErr: strictjson.ErrTooLarge, errText: "read " + filepath.Join(dir, "big.json") + ": larger than 8 bytes"},
		{name: "missing", path: filepath.Join(dir, "none.json"), limit: 8, wantErr: fs.ErrNotExist, errText: "open "},
		{name: "directory", path: dir, limit: 8, errText: "read " + dir},
		{name: "endless device", path: "/dev/zero", limit: 1 << 10, wantErr: strictjson.ErrTooLarge, errText: "larger than 1024 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := os.Stat(tt.path); tt.name == "endless device" && err != nil {
				t.Skipf("no %s here: %v", tt.path, err)
			}
			got, err := strictjson.ReadFile(tt.path, tt.limit)
			if tt.errText == "" {
				if err != nil || string(got) != tt.want {
					t.Fatalf("ReadFile = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ReadFile = %q, want an error", got)
			}
			if pe := (*fs.PathError)(nil); !errors.As(err, &pe) || pe.Path != tt.path {
				t.Errorf("ReadFile error %v (%T) is not an *fs.PathError for %s", err, err, tt.path)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("ReadFile error %v, want one wrapping %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("ReadFile error %q, want it to hold %q", err, tt.errText)
			}
		})
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{`{"a": 1}`, `{"a": 1}{}`, `{"c": 1}`, `[]`, `null`, ` {"b": "\u00e9"} `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v doc
		if err := strictjson.Unmarshal(data, &v); err != nil {
			return
		}
		// Accepted: the value is what encoding/json makes of data, and
		// its encoding decodes strictly to the same value.
		var loose doc
		if err := json.Unmarshal(data, &loose); err != nil || loose != v {
			t.Fatalf("accepted %q as %+v; encoding/json: %+v, %v", data, v, loose, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var again doc
		if err := strictjson.Unmarshal(b, &again); err != nil || again != v {
			t.Fatalf("accepted %q as %+v; its encoding %s: %+v, %v", data, v, b, again, err)
		}
	})
}
