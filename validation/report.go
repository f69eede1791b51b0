package validation

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// WriteTable writes r as a table for people: one line per finding, then a
// summary line, e.g.
//
//	SEVERITY  RULE   COLUMN       COUNT   MESSAGE
//	error     range  mean_radius  3/569   3 of 569 cells out of range [5, 30] (…)
//	569 rows, 32 columns: 1 error, 0 warnings
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(r.Findings) > 0 {
		fmt.Fprintln(tw, "SEVERITY\tRULE\tCOLUMN\tCOUNT\tMESSAGE")
	}
	for _, f := range r.Findings {
		count := "-"
		if f.Total > 0 {
			count = strconv.Itoa(f.Count) + "/" + strconv.Itoa(f.Total)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Severity, f.Rule, f.Column, count, f.Message)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	errs := r.Errors()
	_, err := fmt.Fprintf(w, "%d rows, %d columns: %s, %s\n", r.Rows, r.Columns,
		plural(errs, "error"), plural(len(r.Findings)-errs, "warning"))
	return err
}

func plural(n int, s string) string {
	if n == 1 {
		return "1 " + s
	}
	return strconv.Itoa(n) + " " + s + "s"
}
