package validation

import (
	"fmt"
	"hash/maphash"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/fedguard/fedguard/dataset"
)

// Kind is a kind of personal data the PII screen looks for.
type Kind string

// The kinds of personal data the screen flags. See the package
// documentation for the header words and value patterns of each.
const (
	KindName       Kind = "name"
	KindIdentifier Kind = "identifier"
	KindPhone      Kind = "phone"
	KindEmail      Kind = "email"
	KindAddress    Kind = "address"
	KindBirthDate  Kind = "date_of_birth"
	KindFreeText   Kind = "free_text"
)

// kinds in the order findings list them.
var kinds = []Kind{KindName, KindIdentifier, KindPhone, KindEmail, KindAddress, KindBirthDate, KindFreeText}

// Thresholds of the value screen.
const (
	// PIISampleRows is how many data rows the value screen looks at: the
	// first ones of the file.
	PIISampleRows = 1000
	// PIIPatternShare is the share of a column's non-empty sampled values
	// that must match a precise pattern (national id, phone, e-mail,
	// address, date) for the column to be flagged.
	PIIPatternShare = 0.2
	// PIIFuzzyShare is the share for the fuzzy patterns (person names and
	// free text), which ordinary categories and labels can match now and then.
	PIIFuzzyShare = 0.5
	// PIINameDistinct is the least share of distinct values among the
	// name-like values: names vary from row to row, categories repeat.
	PIINameDistinct = 0.5
	// PIIFreeTextWords is how many words a value needs to count as free text.
	PIIFreeTextWords = 5
)

// Signal is one reason the screen flagged a column: a header word, or a
// count of sampled values that match a pattern of Kind.
type Signal struct {
	Kind Kind `json:"kind"`
	// Header is true when the column name looks like Kind.
	Header bool `json:"header,omitempty"`
	// Matches of Sampled non-empty values matched the pattern of Kind.
	Matches int `json:"matches,omitempty"`
	Sampled int `json:"sampled,omitempty"`
}

// describeSignals reads like "email: header, 5/5 values".
func describeSignals(ss []Signal) string {
	var parts []string
	for _, s := range ss {
		var why []string
		if s.Header {
			why = append(why, "header")
		}
		if s.Matches > 0 {
			why = append(why, fmt.Sprintf("%d/%d values", s.Matches, s.Sampled))
		}
		parts = append(parts, string(s.Kind)+": "+strings.Join(why, ", "))
	}
	return strings.Join(parts, "; ")
}

// headerWords maps a lower-case word of a column name to a kind.
var headerWords = map[string]Kind{
	"name": KindName, "names": KindName, "firstname": KindName, "lastname": KindName,
	"surname": KindName, "forename": KindName, "fullname": KindName, "initials": KindName,
	"patientname": KindName, "maiden": KindName,

	"id": KindIdentifier, "ids": KindIdentifier, "ssn": KindIdentifier, "bsn": KindIdentifier,
	"nhs": KindIdentifier, "mrn": KindIdentifier, "nino": KindIdentifier, "passport": KindIdentifier,
	"identifier": KindIdentifier, "uuid": KindIdentifier, "sofinummer": KindIdentifier,

	"phone": KindPhone, "telephone": KindPhone, "tel": KindPhone, "mobile": KindPhone,
	"fax": KindPhone, "phonenumber": KindPhone,

	"email": KindEmail, "mail": KindEmail, "emailaddress": KindEmail,

	"address": KindAddress, "addr": KindAddress, "street": KindAddress, "postcode": KindAddress,
	"zipcode": KindAddress, "zip": KindAddress, "postal": KindAddress, "city": KindAddress,
	"residence": KindAddress, "straat": KindAddress, "woonplaats": KindAddress,

	"dob": KindBirthDate, "birth": KindBirthDate, "birthdate": KindBirthDate,
	"birthday": KindBirthDate, "born": KindBirthDate, "geboortedatum": KindBirthDate,

	"notes": KindFreeText, "note": KindFreeText, "comment": KindFreeText, "comments": KindFreeText,
	"remarks": KindFreeText, "narrative": KindFreeText, "freetext": KindFreeText,
}

// headerKinds returns the kinds a column name suggests. The name is split
// into words at non-alphanumerics and lower-to-upper case changes
// ("patientEmail" → patient, email); every word, and the whole name with
// separators removed ("e-mail" → email), is looked up in headerWords.
func headerKinds(name string) []Kind {
	var words []string
	var cur []rune
	prevLower := false
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	for _, r := range name {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
			prevLower = false
			continue
		case unicode.IsUpper(r) && prevLower:
			flush()
		}
		cur = append(cur, r)
		prevLower = unicode.IsLower(r) || unicode.IsDigit(r)
	}
	flush()
	words = append(words, strings.Join(words, ""))
	var out []Kind
	for _, w := range words {
		if k, ok := headerWords[w]; ok && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

var (
	reEmail = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$`)
	reSSN   = regexp.MustCompile(`^\d{3}-\d{2}-\d{4}$`)
	// 9 or more digits (BSN has 9, NHS 10), or NHS-style 3 3 4 groups.
	reLongID = regexp.MustCompile(`^(\d{9,}|\d{3} \d{3} \d{4})$`)
	rePhone  = regexp.MustCompile(`^\+?[\d\s().\-/]{7,20}$`)
	reDate   = regexp.MustCompile(`^(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}([ T].*)?|\d{1,2}[-/.]\d{1,2}[-/.](\d{2}|\d{4})|\d{1,2} [A-Za-z]{3,9}\.? \d{4}|[A-Za-z]{3,9}\.? \d{1,2},? \d{4})$`)
	// UK, Dutch and US ZIP+4 postcodes.
	rePostcode = regexp.MustCompile(`(?i)^([A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|\d{4} ?[A-Z]{2}|\d{5}-\d{4})$`)
	reNumToken = regexp.MustCompile(`^\d{1,5}[A-Za-z]?,?$`)
)

// streetWords are words that, with a house number, make an address.
var streetWords = map[string]bool{
	"street": true, "st": true, "st.": true, "road": true, "rd": true, "rd.": true, "avenue": true,
	"ave": true, "ave.": true, "lane": true, "ln": true, "drive": true, "dr.": true, "boulevard": true,
	"blvd": true, "way": true, "court": true, "place": true, "square": true, "terrace": true,
	"close": true, "crescent": true, "straat": true, "weg": true, "laan": true, "plein": true,
	"gracht": true, "kade": true, "singel": true, "dijk": true, "strasse": true, "straße": true,
}

// streetSuffixes end Dutch and German compound street names ("Kerkstraat").
var streetSuffixes = []string{"straat", "weg", "laan", "plein", "gracht", "kade", "singel", "dijk", "strasse", "straße"}

// nameParticles may appear in lower case inside a person's name.
var nameParticles = map[string]bool{
	"van": true, "de": true, "der": true, "den": true, "von": true, "da": true, "di": true,
	"le": true, "la": true, "du": true, "del": true, "ten": true, "ter": true, "bin": true, "al": true,
}

// valueKind returns the kind a single trimmed, non-empty value looks like,
// or "" for none.
func valueKind(v string) Kind {
	if isDigits(v) {
		if len(v) >= 9 {
			return KindIdentifier
		}
		return ""
	}
	if _, err := dataset.ParseNumber(v); err == nil {
		return "" // an ordinary number
	}
	switch {
	case reEmail.MatchString(v):
		return KindEmail
	case reSSN.MatchString(v), reLongID.MatchString(v):
		return KindIdentifier
	case reDate.MatchString(v):
		return KindBirthDate
	case rePostcode.MatchString(v), looksLikeStreet(v):
		return KindAddress
	case rePhone.MatchString(v) && phoneDigits(v):
		return KindPhone
	case looksLikeName(v):
		return KindName
	case countWords(v) >= PIIFreeTextWords:
		return KindFreeText
	}
	return ""
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// phoneDigits: 7 to 15 digits (E.164 has at most 15).
func phoneDigits(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			n++
		}
	}
	return n >= 7 && n <= 15
}

// looksLikeStreet: a house number and a street word, e.g. "12 High Street"
// or "Kerkstraat 12a".
func looksLikeStreet(v string) bool {
	f := strings.Fields(v)
	if len(f) < 2 {
		return false
	}
	num, street := false, false
	for _, w := range f {
		lw := strings.ToLower(strings.TrimRight(w, ","))
		if reNumToken.MatchString(w) {
			num = true
		}
		if streetWords[lw] {
			street = true
		}
		for _, s := range streetSuffixes {
			if len(lw) > len(s)+2 && strings.HasSuffix(lw, s) {
				street = true
			}
		}
	}
	return num && street
}

// looksLikeName: two to five words, each capitalised ("Ann", "O'Neil",
// "Smith-Jones", "J.") or a lower-case particle ("van"), at least two
// capitalised, no digits; "Smith, John" too.
func looksLikeName(v string) bool {
	f := strings.Fields(strings.ReplaceAll(v, ",", " "))
	if len(f) < 2 || len(f) > 5 {
		return false
	}
	caps := 0
	for _, w := range f {
		if nameParticles[w] {
			continue
		}
		if !isNameWord(w) {
			return false
		}
		caps++
	}
	return caps >= 2
}

func isNameWord(w string) bool {
	rs := []rune(w)
	if !unicode.IsUpper(rs[0]) {
		return false
	}
	if len(rs) == 2 && rs[1] == '.' {
		return true // an initial
	}
	if len(rs) < 2 {
		return false
	}
	lower := 0
	for _, r := range rs[1:] {
		switch {
		case unicode.IsLower(r):
			lower++
		case r == '\'' || r == '’' || r == '-' || unicode.IsUpper(r):
		default:
			return false
		}
	}
	return lower > 0
}

func countWords(v string) int {
	n := 0
	for _, w := range strings.Fields(v) {
		if strings.IndexFunc(w, unicode.IsLetter) >= 0 {
			n++
		}
	}
	return n
}

// screen accumulates the value screen of one column over the sample rows.
type screen struct {
	sampled int
	matches map[Kind]int
	names   map[uint64]struct{} // hashes of name-like values, to count distinct ones
}

var nameSeed = maphash.MakeSeed()

func (s *screen) add(v string) {
	if v == "" {
		return
	}
	s.sampled++
	k := valueKind(v)
	if k == "" {
		return
	}
	if s.matches == nil {
		s.matches = map[Kind]int{}
	}
	s.matches[k]++
	if k == KindName {
		if s.names == nil {
			s.names = map[uint64]struct{}{}
		}
		s.names[maphash.String(nameSeed, v)] = struct{}{}
	}
}

// signals combines the header and value screens of a column.
func (s *screen) signals(name string) []Signal {
	hk := headerKinds(name)
	var out []Signal
	for _, k := range kinds {
		sig := Signal{Kind: k, Header: slices.Contains(hk, k)}
		if m := s.matches[k]; m > 0 && s.flagged(k, m) {
			sig.Matches, sig.Sampled = m, s.sampled
		}
		if sig.Header || sig.Matches > 0 {
			out = append(out, sig)
		}
	}
	return out
}

func (s *screen) flagged(k Kind, m int) bool {
	share := float64(m) / float64(s.sampled)
	switch k {
	case KindName:
		return share >= PIIFuzzyShare && float64(len(s.names)) >= PIINameDistinct*float64(m)
	case KindFreeText:
		return share >= PIIFuzzyShare
	default:
		return share >= PIIPatternShare
	}
}
