package participant

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// printableInputs are details a trainer or a parser could produce, with
// everything the coordinator refuses in them.
var printableInputs = []string{
	"exit status 2: see trainer.log\u202egol.exe",
	"oom\u2028forged line\u2029",
	"zero\u200bwidth\ufeff",
	"\x1b[2J\r\nred\x00",
	"\xff\xfe" + strings.Repeat("é", 600),
}

// acceptedDetail is the coordinator's check of a detail (at most 1 KiB of
// valid UTF-8, no control characters but tab and newline, no format
// characters or line separators).
func acceptedDetail(d string) bool {
	return len(d) <= 1024 && utf8.ValidString(d) && strings.IndexFunc(d, func(r rune) bool {
		return unicode.IsControl(r) && r != '\n' && r != '\t' || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
	}) < 0
}

// TestPrintableDetail: what the agent sends as a sit-out's or a refusal's
// detail is what the coordinator accepts, whatever the trainer wrote, so
// that the report is never refused for its detail. Before the coordinator
// refused format characters the agent passed a bidirectional override
// through.
func TestPrintableDetail(t *testing.T) {
	for _, in := range printableInputs {
		if got := printable(in); !acceptedDetail(got) {
			t.Errorf("printable(%q) = %q", in, got)
		}
	}
}

// FuzzPrintable is TestPrintableDetail for any text (a trainer's last
// stderr line, a parser's message quoting a manifest): a refused report
// is a refusal or sit-out nobody records.
func FuzzPrintable(f *testing.F) {
	for _, in := range printableInputs {
		f.Add(in)
	}
	f.Add(strings.Repeat("\xff", 2000))
	f.Fuzz(func(t *testing.T, in string) {
		if got := printable(in); !acceptedDetail(got) {
			t.Fatalf("printable(%q) = %q, which the coordinator refuses", in, got)
		}
	})
}
