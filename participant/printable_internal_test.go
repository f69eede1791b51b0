package participant

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestPrintableDetail: what the agent sends as a sit-out's or a refusal's
// detail is what the coordinator accepts (at most 1 KiB of valid UTF-8,
// no control characters but tab and newline, no format characters or
// line separators), whatever the trainer wrote, so that the report is
// never refused for its detail. Before the coordinator refused format
// characters the agent passed a bidirectional override through.
func TestPrintableDetail(t *testing.T) {
	for _, in := range []string{
		"exit status 2: see trainer.log\u202egol.exe",
		"oom\u2028forged line\u2029",
		"zero\u200bwidth\ufeff",
		"\x1b[2J\r\nred\x00",
		"\xff\xfe" + strings.Repeat("é", 600),
	} {
		got := printable(in)
		bad := strings.IndexFunc(got, func(r rune) bool {
			return unicode.IsControl(r) && r != '\n' && r != '\t' || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
		})
		if len(got) > 1024 || !utf8.ValidString(got) || bad >= 0 {
			t.Errorf("printable(%q) = %q", in, got)
		}
	}
}
