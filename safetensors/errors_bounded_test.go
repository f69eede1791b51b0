package safetensors

import (
	"strings"
	"testing"
)

// TestErrorsQuoteBounded: an error quotes a name, token or shape from the
// file cut short, never whole. A header may be MaxHeaderSize bytes, and a
// hospital's trainer, a model file handed to predict or an initial model
// could otherwise put a 100 MB tensor name into an error the agent logs
// and the coordinator's operator reads.
func TestErrorsQuoteBounded(t *testing.T) {
	const maxErr = 1024
	long := strings.Repeat("w", 1<<20)
	dims := strings.Repeat("1,", 1<<16) + "2"
	entry := `{"dtype":"F32","shape":[2],"data_offsets":[0,8]}`
	two := f32s(1, 2)
	for _, tc := range []struct {
		name   string
		file   []byte
		layout Layout // nil: Open must refuse the file
	}{
		{"duplicate tensor", raw(`{"`+long+`":`+entry+`,"`+long+`":`+entry+`}`, two), nil},
		{"unknown dtype", raw(`{"a":{"dtype":"`+long+`","shape":[2],"data_offsets":[0,8]}}`, two), nil},
		{"unknown field", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"`+long+`":1}}`, two), nil},
		{"string offset", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":["`+long+`",8]}}`, two), nil},
		{"long number", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[1`+long[:0]+strings.Repeat("9", 1<<20)+`,8]}}`, two), nil},
		{"duplicate metadata", raw(`{"__metadata__":{"`+long+`":"1","`+long+`":"2"},"a":`+entry+`}`, two), nil},
		{"bad offsets", raw(`{"`+long+`":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, two), nil},
		{"many dims, wrong size", raw(`{"a":{"dtype":"F32","shape":[`+dims+`,3],"data_offsets":[0,8]}}`, two), nil},
		{"tensor not in layout", raw(`{"`+long+`":`+entry+`}`, two), Layout{{Name: "a", Shape: []int{2}}}},
		{"shape not the layout's", raw(`{"a":{"dtype":"F32","shape":[`+dims+`],"data_offsets":[0,8]}}`, two), Layout{{Name: "a", Shape: []int{2}}}},
		{"tensor not in file", raw(`{"a":`+entry+`}`, two), Layout{{Name: "a", Shape: []int{2}}, {Name: long, Shape: []int{0}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := open(tc.file)
			if tc.layout != nil {
				if err != nil {
					t.Fatalf("Open: %.200v", err)
				}
				err = r.ReadInto(tc.layout, make([]float32, tc.layout.NumParams()))
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if n := len(err.Error()); n > maxErr {
				t.Errorf("error of %d bytes, want at most %d: %.300s…", n, maxErr, err)
			}
		})
	}
}
