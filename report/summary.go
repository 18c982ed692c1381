package report

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
)

// maxErrorLen is how many characters of a node error the summary shows.
const maxErrorLen = 60

// Summary writes a human readable table of the nodes of r (columns NODE,
// ROLE, BOARD, STATUS, PASSED, FAILED, ERROR) followed by the line
// "job <name>: <status> in <duration> (N passed, M failed)" and, if the job
// has an error, "error: <msg>". Write errors are ignored.
func Summary(w io.Writer, r *Results) {
	if r == nil {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tBOARD\tSTATUS\tPASSED\tFAILED\tERROR")
	for _, n := range r.Nodes {
		passed, failed := r.Counts(n.Name)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n",
			oneLine(n.Name), oneLine(n.Role), oneLine(n.Board), oneLine(n.Status),
			passed, failed, truncate(oneLine(n.Error), maxErrorLen))
	}
	_ = tw.Flush()
	passed, failed := r.Counts("")
	fmt.Fprintf(w, "job %s: %s in %ss (%d passed, %d failed)\n",
		oneLine(r.Job.Name), oneLine(r.Job.Status),
		strconv.FormatFloat(r.Job.DurationS, 'f', 1, 64), passed, failed)
	if r.Job.Error != "" {
		fmt.Fprintf(w, "error: %s\n", oneLine(r.Job.Error))
	}
}

// oneLine replaces control characters (newlines, tabs, ...) with spaces so
// a value cannot break the table layout.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// truncate shortens s to at most n runes, ending with "..." when cut.
func truncate(s string, n int) string {
	runes := []rune(s)
	if len(runes) <= n {
		return s
	}
	return string(runes[:n-3]) + "..."
}
