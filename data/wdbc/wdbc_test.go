package wdbc

import (
	"bytes"
	"strings"
	"testing"
)

func TestEmbedded(t *testing.T) {
	lines := bytes.Count(CSV, []byte("\n"))
	if lines != 570 {
		t.Errorf("wdbc.csv has %d lines, want 570 (header + 569 rows)", lines)
	}
	header, _, _ := strings.Cut(string(CSV), "\n")
	cols := strings.Split(strings.TrimSuffix(header, "\r"), ",") // the file has CRLF line ends
	if len(cols) != 32 || cols[0] != IDColumn || cols[31] != Label {
		t.Errorf("header = %d columns, first %q, last %q; want 32, %q, %q", len(cols), cols[0], cols[len(cols)-1], IDColumn, Label)
	}
	if c := Classes(); len(c) != 2 || c[0] != "B" || c[1] != "M" {
		t.Errorf("Classes() = %q, want [B M]", c)
	}
	for _, s := range []string{"UCI", "Wolberg", "Street", "Mangasarian", "1995", "CC BY 4.0"} {
		if !strings.Contains(Attribution, s) {
			t.Errorf("Attribution lacks %q", s)
		}
	}
}
