package strictjson_test

import (
	"encoding/json"
	"errors"
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
