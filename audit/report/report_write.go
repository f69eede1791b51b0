package report

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Both renderings are made from one document (reportDoc), so the Markdown
// and the HTML page cannot say different things. Every string taken from
// the log is escaped by the renderer, never before: the document holds
// plain text, the Markdown writer escapes it for Markdown and html/template
// for HTML. Nothing in either output depends on the clock, so the same log
// always renders to the same bytes.

//go:embed report.html.tmpl
var reportHTML string

var reportTemplate = template.Must(template.New("report").Parse(reportHTML))

// reportLegend says how to read the figures; it is part of both outputs.
const reportLegend = "Digests are SHA-256, in hex. Sample counts and holdout accuracy are each hospital's own claims, " +
	"measured on its own rows; the coordinator never sees the data. A signature reads \"verified\" only when it was " +
	"checked with the coordinator's public keys while this report was made."

// docSpan is a run of text in the document. Code marks digests, serials and
// configuration, shown in monospace; Mark flags a status that must stand
// out ("good" or "bad").
type docSpan struct {
	Text string
	Code bool
	Mark string
}

type docLine []docSpan

type docFact struct {
	Key   string
	Value docLine
}

type docTable struct {
	Title string
	// Caption, when set, says how to read the table; it follows the title.
	Caption string
	Head    []string
	Rows    [][]docLine
	// Empty is said instead of a table without rows.
	Empty string
}

type docSection struct {
	ID      string
	Heading string
	Summary docLine
	Facts   []docFact
	Tables  []docTable
	Notes   []string
}

type reportDoc struct {
	Title    string
	Facts    []docFact
	Legend   string
	Sections []docSection
	// Charts are inline SVG, drawn in the HTML page only.
	Charts []template.HTML
}

func spanText(s string) docSpan { return docSpan{Text: s} }
func spanCode(s string) docSpan { return docSpan{Text: s, Code: true} }
func spanGood(s string) docSpan { return docSpan{Text: s, Mark: "good"} }
func spanBad(s string) docSpan  { return docSpan{Text: s, Mark: "bad"} }

// spanDigest shows a digest as code, or says that it is missing.
func spanDigest(s string) docSpan {
	if s == "" {
		return spanBad("none recorded")
	}
	return spanCode(s)
}

func reportTime(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format(time.RFC3339)
}

func reportFloat(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }

func reportPlural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// doc lays the report out.
func (r Report) doc() reportDoc {
	d := reportDoc{Title: "Provenance report", Legend: reportLegend}
	if r.Federation != "" {
		d.Title += ": " + r.Federation
	}
	origin := spanText(r.Origin)
	if r.Origin == "" {
		origin = spanText("not given")
	}
	federation := spanText(r.Federation)
	if r.Federation == "" {
		federation = spanBad("not recorded (no coordinator_started event)")
	}
	status := spanText(r.LogStatus)
	if r.LogStatus == "" {
		status = spanBad("not verified")
	}
	events := spanText("none")
	if r.Events > 0 {
		events = spanText(fmt.Sprintf("%d (seq %d to %d)", r.Events, r.FirstSeq, r.LastSeq))
	}
	checkpoints := docLine{spanBad("none supplied: no round is shown as covered by a signed checkpoint")}
	if len(r.Checkpoints) > 0 {
		sizes := make([]string, len(r.Checkpoints))
		for i, c := range r.Checkpoints {
			sizes[i] = strconv.FormatUint(c.Size, 10)
		}
		checkpoints = docLine{spanText(fmt.Sprintf("%d verified, tree %s %s", len(r.Checkpoints),
			map[bool]string{true: "size", false: "sizes"}[len(sizes) == 1], strings.Join(sizes, ", ")))}
	}
	rounds := fmt.Sprintf("all %d", r.RoundCount)
	if r.Round != 0 {
		rounds = fmt.Sprintf("round %d only, of %d in the log", r.Round, r.RoundCount)
	}
	refused := "none"
	if r.ConnectionsRefused > 0 {
		by := make([]string, len(r.RefusedBy))
		for i, c := range r.RefusedBy {
			by[i] = fmt.Sprintf("%s %d", c.Reason, c.Count)
		}
		refused = fmt.Sprintf("%d (%s)", r.ConnectionsRefused, strings.Join(by, ", "))
	}
	d.Facts = []docFact{
		{"Origin", docLine{origin}},
		{"Federation", docLine{federation}},
		{"Log status", docLine{status}},
		{"Events", docLine{events}},
		{"Checkpoints", checkpoints},
		{"Rounds", docLine{spanText(rounds)}},
		{"Refused connections", docLine{spanText(refused)}},
	}
	initial := docLine{spanBad("no manifest signed for round 0")}
	if m := r.Initial; m != nil {
		initial = docLine{spanText("manifest "), spanDigest(m.ManifestSHA256)}
		if m.ModelSHA256 != "" {
			initial = append(initial, spanText(" names model "), spanCode(m.ModelSHA256))
		}
		initial = append(initial, spanText(fmt.Sprintf(" (seq %d); signature ", m.Seq)), signatureSpan(m.Signature))
	}
	d.Facts = append(d.Facts, docFact{"Initial model", initial})

	tl := docTable{Head: []string{"seq", "time", "event", "actor", "detail"}, Empty: "None recorded."}
	for _, e := range r.Timeline {
		tl.Rows = append(tl.Rows, []docLine{{spanText(strconv.FormatUint(e.Seq, 10))}, {spanText(reportTime(e.Time))}, {spanText(e.Kind)}, {spanText(e.Actor)}, {spanText(e.Detail)}})
	}
	d.Sections = append(d.Sections, docSection{ID: "federation", Heading: "Federation events", Tables: []docTable{tl}})
	ct := docTable{Head: []string{"control", "ATLAS technique", "event", "detail", "about", "events", "seq"}, Empty: "Nothing flagged."}
	for _, c := range r.Controls {
		seqs := strconv.FormatUint(c.FirstSeq, 10)
		if c.LastSeq != c.FirstSeq {
			seqs += "–" + strconv.FormatUint(c.LastSeq, 10)
		}
		ct.Rows = append(ct.Rows, []docLine{{spanText(c.Control + " " + c.ControlName)}, {spanCode(c.Technique), spanText(" " + c.TechniqueName)},
			{spanText(c.Kind)}, {spanText(c.Detail)}, {spanText(c.Actor)}, {spanText(strconv.FormatUint(c.Count, 10))}, {spanText(seqs)}})
	}
	d.Sections = append(d.Sections, docSection{ID: "controls", Heading: "Controls", Tables: []docTable{ct},
		Summary: docLine{spanText("Every flagged event, linked to the control of docs/threat-model.md that produced it and to its MITRE ATLAS technique.")}})
	if r.Privacy != nil {
		d.Sections = append(d.Sections, r.Privacy.docSection())
	}
	for _, rr := range r.Rounds {
		d.Sections = append(d.Sections, rr.docSection(len(r.Checkpoints) > 0))
	}
	if len(r.Notes) > 0 {
		d.Sections = append(d.Sections, docSection{ID: "log-notes", Heading: "Notes on the log", Notes: r.Notes})
	}
	return d
}

// signatureSpan shows a signature status, flagging all but "verified".
func signatureSpan(s string) docSpan {
	if s == SignatureVerified {
		return spanGood(s)
	}
	return spanBad(s)
}

func (r RoundReport) summary() docLine {
	var l docLine
	switch r.Status {
	case RoundStatusClosed:
		l = r.closedSummary()
	case RoundStatusNotCompleted:
		l = docLine{spanBad("Not completed:"), spanText(fmt.Sprintf(" every attempt failed (%s); no model.", reportPlural(len(r.Attempts), "attempt", "attempts")))}
	default:
		l = docLine{spanBad("Open:"), spanText(" no round_closed event, so no model; " + r.contributions() + " so far; " +
			reportPlural(len(r.Excluded), "exclusion", "exclusions") + ".")}
	}
	if len(r.Notes) > 0 {
		// A clean-looking summary must not hide what the notes say.
		l = append(l, spanText(" "), spanBad(fmt.Sprintf("See %s below.", reportPlural(len(r.Notes), "note", "notes"))))
	}
	return l
}

func (r RoundReport) contributions() string {
	if r.Secure {
		return r.secureContributions()
	}
	contrib := fmt.Sprintf("%d of %d cohort members contributed", len(r.Contributors), len(r.Cohort))
	if r.Rule != "" {
		contrib += fmt.Sprintf(", %d selected by %s", r.SelectedCount(), r.Rule)
	}
	return contrib
}

func (r RoundReport) closedSummary() docLine {
	return docLine{spanGood("Closed."), spanText(" Model "), spanDigest(r.ModelSHA256), spanText("; signature "), signatureSpan(r.Signature),
		spanText("; " + r.contributions() + "; " + reportPlural(len(r.Excluded), "exclusion", "exclusions") + ".")}
}

func (r RoundReport) docSection(haveCheckpoints bool) docSection {
	s := docSection{ID: fmt.Sprintf("round-%d", r.Round), Heading: fmt.Sprintf("Round %d", r.Round), Summary: r.summary(), Notes: r.Notes}
	s.Facts = append(s.Facts, docFact{"Opened", docLine{spanText(reportTime(r.Opened))}})
	if r.Status == RoundStatusClosed {
		closed := docLine{spanText(reportTime(r.Closed))}
		if r.Recovered {
			closed = append(closed, spanText(" (recorded at restart: the commit outlived a crash)"))
		}
		s.Facts = append(s.Facts, docFact{"Closed", closed})
	}
	trained := docLine{spanBad("unknown: no model_published event")}
	if r.Published {
		trained = docLine{spanText(fmt.Sprintf("model of round %d ", r.ParentRound)), spanDigest(r.ParentModelSHA256), spanText(", manifest "), spanDigest(r.ParentManifestSHA256)}
	}
	s.Facts = append(s.Facts, docFact{"Trained on", trained})
	rule := spanText(r.Rule)
	switch {
	case r.Rule != "":
	case r.Status == RoundStatusOpen:
		rule = spanText("not applied yet")
	default:
		rule = spanBad("unknown: no aggregation report")
	}
	s.Facts = append(s.Facts, docFact{"Rule", docLine{rule}})
	if r.Secure {
		s.Facts = append(s.Facts, docFact{"Secure aggregation", r.secureFact()})
	}
	if r.Status == RoundStatusClosed && r.Secure {
		s.Facts = append(s.Facts, docFact{"Shaped the model", r.secureShaped()})
	} else if r.Status == RoundStatusClosed {
		// The regulator's first question, answered in one line.
		shaped, unknown := r.shapedBy()
		value := docLine{spanText(fmt.Sprintf("%s (%d of %d accepted updates)", reportList(shaped), len(shaped), len(r.Contributors)))}
		if len(unknown) > 0 {
			value = append(value, spanBad(fmt.Sprintf("; unknown for %s: the aggregation report does not name them", reportList(unknown))))
		}
		s.Facts = append(s.Facts, docFact{"Shaped the model", value})
	}
	s.Facts = append(s.Facts, docFact{fmt.Sprintf("Cohort (%d)", len(r.Cohort)), docLine{spanText(reportList(r.Cohort))}})
	manifest := docLine{spanBad("none signed")}
	if r.ManifestSHA256 != "" || r.Signature != SignatureMissing {
		manifest = docLine{spanDigest(r.ManifestSHA256)}
		if r.ManifestModelSHA256 != "" {
			manifest = append(manifest, spanText(", names model "), spanCode(r.ManifestModelSHA256))
			if strings.EqualFold(r.ManifestModelSHA256, r.ModelSHA256) {
				manifest = append(manifest, spanGood(" (the round's model)"))
			} else {
				manifest = append(manifest, spanBad(" (NOT the round's model)"))
			}
		}
		manifest = append(manifest, spanText("; signature "), signatureSpan(r.Signature))
	}
	s.Facts = append(s.Facts, docFact{"Manifest", manifest})
	var cp docLine
	switch {
	case r.Checkpoint != nil:
		cp = docLine{spanText(fmt.Sprintf("covered by the checkpoint of tree size %d, root ", r.Checkpoint.Size)),
			spanCode(base64.StdEncoding.EncodeToString(r.Checkpoint.Root[:]))}
	case haveCheckpoints:
		cp = docLine{spanBad("not covered by any supplied checkpoint: only the hash chain protects these events")}
	default:
		cp = docLine{spanBad("not checked: no checkpoints supplied")}
	}
	s.Facts = append(s.Facts, docFact{"Checkpoint", cp}, docFact{"Events", docLine{spanText(fmt.Sprintf("seq %d to %d", r.FirstSeq, r.LastSeq))}})

	if len(r.Attempts) > 1 || (len(r.Attempts) == 1 && r.Attempts[0].Outcome != AttemptClosed) {
		at := docTable{Title: "Attempts", Head: []string{"attempt", "seq", "opened", "deadline", "cohort", "updates", "refused", "outcome", "reason"}}
		for _, a := range r.Attempts {
			outcome := spanText(a.Outcome)
			if a.Outcome != AttemptClosed {
				outcome = spanBad(a.Outcome)
			}
			seq := spanText(strconv.FormatUint(a.Seq, 10))
			if a.Unopened {
				seq = spanBad(fmt.Sprintf("never opened (first named at seq %d)", a.Seq))
			}
			updates := strconv.Itoa(a.Updates)
			if a.Secure {
				updates = secureAttemptInputs(a)
			}
			at.Rows = append(at.Rows, []docLine{
				{spanText(strconv.FormatUint(uint64(a.Attempt), 10))}, {seq}, {spanText(reportTime(a.Opened))},
				{spanText(a.Deadline)}, {spanText(strconv.Itoa(len(a.Cohort)))}, {spanText(updates)}, {spanText(strconv.Itoa(a.Refused))},
				{outcome}, {spanText(a.Reason)},
			})
		}
		s.Tables = append(s.Tables, at)
	}

	if len(r.Sums) > 0 {
		s.Tables = append(s.Tables, r.sumsTable())
	}
	var scored, weighted bool
	for _, c := range r.Contributors {
		scored = scored || c.Score != 0
		weighted = weighted || c.Weight != 0
	}
	ct := docTable{Title: "Contributors", Empty: "None: no update was accepted.",
		Head: []string{"participant", "seq", "samples", "norm", "update sha256", "holdout accuracy", "score", "weight", "selected", "rule's note"}}
	for _, c := range r.Contributors {
		holdout := "no holdout"
		if c.HoldoutCount > 0 {
			holdout = fmt.Sprintf("%s%% of %d", strconv.FormatFloat(100*c.HoldoutAccuracy, 'f', 1, 64), c.HoldoutCount)
		}
		score, weight, selected := "n/a", "n/a", spanBad("unknown")
		if r.Status == RoundStatusOpen {
			selected = spanText("pending")
		}
		if c.Ruled {
			if scored {
				score = reportFloat(c.Score)
			}
			if weighted {
				weight = strconv.FormatFloat(c.Weight, 'f', 4, 64)
			}
			selected = spanGood("yes")
			if !c.Selected {
				selected = spanBad("no")
			}
		}
		ct.Rows = append(ct.Rows, []docLine{
			{spanText(c.Participant)}, {spanText(strconv.FormatUint(c.Seq, 10))}, {spanText(strconv.FormatUint(c.Samples, 10))}, {spanText(reportFloat(c.Norm))},
			{spanDigest(c.UpdateSHA256)}, {spanText(holdout)}, {spanText(score)}, {spanText(weight)}, {selected}, {spanText(c.RuleReason)},
		})
	}
	if r.Secure {
		ct = r.secureContributorsTable()
	}
	et := docTable{Title: "Exclusions", Head: []string{"participant", "exclusion", "reason", "seq"}, Empty: "None."}
	if r.Status == RoundStatusOpen {
		et.Empty = "None so far; dropped participants are known only once the attempt ends."
	}
	for _, e := range r.Excluded {
		et.Rows = append(et.Rows, []docLine{{spanText(e.Participant)}, {spanText(e.Kind)}, {spanText(e.Reason)}, {spanText(strconv.FormatUint(e.Seq, 10))}})
	}
	s.Tables = append(s.Tables, ct, et)
	return s
}

// WriteMarkdown writes the report as GitHub-flavoured Markdown. Text from
// the log is escaped, so a participant name cannot inject markup, links or
// table cells.
func (r Report) WriteMarkdown(w io.Writer) error {
	d := r.doc()
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n\n", mdText(d.Title))
	for _, f := range d.Facts {
		fmt.Fprintf(&b, "- **%s:** %s\n", mdText(f.Key), mdLine(f.Value))
	}
	fmt.Fprintf(&b, "\n%s\n", mdText(d.Legend))
	for _, s := range d.Sections {
		fmt.Fprintf(&b, "\n## %s\n", mdText(s.Heading))
		if len(s.Summary) > 0 {
			fmt.Fprintf(&b, "\n%s\n", mdLine(s.Summary))
		}
		if len(s.Facts) > 0 {
			b.WriteString("\n")
			for _, f := range s.Facts {
				fmt.Fprintf(&b, "- %s: %s\n", mdText(f.Key), mdLine(f.Value))
			}
		}
		for _, t := range s.Tables {
			if t.Title != "" {
				fmt.Fprintf(&b, "\n### %s\n", mdText(t.Title))
			}
			if t.Caption != "" {
				fmt.Fprintf(&b, "\n%s\n", mdText(t.Caption))
			}
			b.WriteString("\n")
			if len(t.Rows) == 0 {
				fmt.Fprintf(&b, "%s\n", mdText(t.Empty))
				continue
			}
			mdRow(&b, t.Head, mdText)
			seps := make([]string, len(t.Head))
			for i := range seps {
				seps[i] = "---"
			}
			mdRow(&b, seps, func(s string) string { return s })
			for _, row := range t.Rows {
				mdRow(&b, row, mdLine)
			}
		}
		if len(s.Notes) > 0 {
			if len(s.Facts)+len(s.Tables) > 0 {
				b.WriteString("\n### Notes\n")
			}
			b.WriteString("\n")
			for _, n := range s.Notes {
				fmt.Fprintf(&b, "- %s\n", mdText(n))
			}
		}
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("audit: write markdown report: %w", err)
	}
	return nil
}

func mdRow[T any](b *bytes.Buffer, cells []T, render func(T) string) {
	b.WriteString("|")
	for _, c := range cells {
		b.WriteString(" " + render(c) + " |")
	}
	b.WriteString("\n")
}

func mdLine(l docLine) string {
	var b strings.Builder
	for _, s := range l {
		t := mdText(s.Text)
		if s.Code {
			t = mdCode(s.Text)
		}
		if s.Mark == "bad" && t != "" {
			t = "**" + t + "**"
		}
		b.WriteString(t)
	}
	return b.String()
}

// mdText escapes s as Markdown inline text: every character with a
// meaning inline (emphasis, code, links, HTML, entities, table cells) is
// backslash-escaped, and control characters, line breaks included, become
// spaces so that s stays on its line and in its table cell. An underscore
// between two letters or digits is left alone: it can neither open nor
// close emphasis there, and names like round_closed stay readable.
func mdText(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, c := range rs {
		switch {
		case c < ' ' || c == 0x7f || c == '\u2028' || c == '\u2029':
			b.WriteByte(' ')
		case c == '_' && i > 0 && i < len(rs)-1 && isAlnum(rs[i-1]) && isAlnum(rs[i+1]):
			b.WriteRune(c)
		case strings.ContainsRune("\\`*_[]<>|&~", c):
			b.WriteByte('\\')
			b.WriteRune(c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// isAlnum says whether c is a letter or a digit: in CommonMark's terms
// neither whitespace nor punctuation.
func isAlnum(c rune) bool { return unicode.IsLetter(c) || unicode.IsDigit(c) }

// mdCode renders s as a Markdown code span: HTML inside one is shown, not
// interpreted. The fence is one backtick longer than any run of backticks
// in s; pipes are escaped, which GitHub-flavoured tables require even in
// code spans.
func mdCode(s string) string {
	var b strings.Builder
	run, longest := 0, 0
	for _, c := range s {
		switch {
		case c < ' ' || c == 0x7f || c == '\u2028' || c == '\u2029':
			b.WriteByte(' ')
		case c == '|':
			b.WriteString(`\|`)
		default:
			b.WriteRune(c)
		}
		if c == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	body := b.String()
	if body == "" {
		return ""
	}
	if strings.HasPrefix(body, "`") || strings.HasSuffix(body, "`") {
		body = " " + body + " "
	}
	fence := strings.Repeat("`", longest+1)
	return fence + body + fence
}

// WriteHTML writes the report as one self-contained HTML page: inline CSS,
// no scripts, no external resources (its Content-Security-Policy forbids
// them), so it can be archived and opened offline. html/template escapes
// everything taken from the log.
func (r Report) WriteHTML(w io.Writer) error {
	var b bytes.Buffer
	d := r.doc()
	d.Charts = r.charts()
	if err := reportTemplate.Execute(&b, d); err != nil {
		return fmt.Errorf("audit: render html report: %w", err)
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("audit: write html report: %w", err)
	}
	return nil
}

// shapedBy splits the round's contributors into those the rule selected
// and those it has no verdict on.
func (r RoundReport) shapedBy() (shaped, unknown []string) {
	for _, c := range r.Contributors {
		switch {
		case !c.Ruled:
			unknown = append(unknown, c.Participant)
		case c.Selected:
			shaped = append(shaped, c.Participant)
		}
	}
	return shaped, unknown
}
