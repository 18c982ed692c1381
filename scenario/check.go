package scenario

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/troupe-lab/troupe/report"
)

// Outcome is what happened when a scenario ran.
type Outcome struct {
	Results *report.Results   // results.json of the job; nil if there is none
	Exit    int               // troupe's exit code
	FaultAt time.Time         // when the first fault fired; zero if none did
	EndedAt time.Time         // when the job ended
	Boards  map[string]string // board -> health after the run
}

// Diff is one expectation that does not hold. Regexp expectations are
// written /like this/; "absent" stands for a node, test case or board that
// is not in the outcome.
type Diff struct {
	What, Want, Got string
}

// String formats d as `node server-0 status: want "incomplete", got "complete"`.
func (d Diff) String() string {
	return fmt.Sprintf("%s: want %q, got %q", d.What, d.Want, d.Got)
}

// Check compares the outcome with e. It returns no diffs when every
// expectation holds, otherwise one per expectation that does not, in a
// fixed order: job status, exit code, job error and class, within,
// attempts, nodes (by name), tests (in file order), boards (by name).
func (e Expect) Check(o Outcome) []Diff {
	var diffs []Diff
	add := func(what, want, got string) {
		diffs = append(diffs, Diff{What: what, Want: want, Got: got})
	}
	r := o.Results
	needResults := e.Status != "" || e.Error != "" || e.Class != "" || e.Attempts != nil || len(e.Nodes) > 0 || len(e.Tests) > 0
	if r == nil && needResults {
		add("results", "present", Absent)
	}
	if r != nil {
		if e.Status != "" && r.Job.Status != e.Status {
			add("job status", e.Status, r.Job.Status)
		}
	}
	if e.Exit != nil && o.Exit != *e.Exit {
		add("exit code", strconv.Itoa(*e.Exit), strconv.Itoa(o.Exit))
	}
	if r != nil {
		if e.Error != "" && !matches(e.Error, r.Job.Error) {
			add("job error", "/"+e.Error+"/", r.Job.Error)
		}
		if e.Class != "" && r.Job.Class != e.Class {
			add("job error class", e.Class, r.Job.Class)
		}
	}
	if e.Within > 0 {
		switch {
		case o.FaultAt.IsZero():
			add("job ended after the fault", "within "+e.Within.String(), "no fault fired")
		case o.EndedAt.IsZero():
			add("job ended after the fault", "within "+e.Within.String(), "the job did not end")
		default:
			if took := o.EndedAt.Sub(o.FaultAt); took > e.Within {
				add("job ended after the fault", "within "+e.Within.String(), "after "+took.Round(time.Millisecond).String())
			}
		}
	}
	if r != nil {
		if e.Attempts != nil && len(r.Job.Attempts) != *e.Attempts {
			add("attempts", strconv.Itoa(*e.Attempts), strconv.Itoa(len(r.Job.Attempts)))
		}
		for _, name := range sortedKeys(e.Nodes) {
			checkNode(name, e.Nodes[name], r, add)
		}
		for _, te := range e.Tests {
			checkTest(te, r, add)
		}
	}
	for _, name := range sortedKeys(e.Boards) {
		want := e.Boards[name]
		got, ok := o.Boards[name]
		if !ok {
			got = Absent
		}
		if got != want {
			add("board "+name+" health", want, got)
		}
	}
	return diffs
}

func checkNode(name string, ne NodeExpect, r *report.Results, add func(what, want, got string)) {
	i := slices.IndexFunc(r.Nodes, func(n report.Node) bool { return n.Name == name })
	if i < 0 {
		add("node "+name, "present", Absent)
		return
	}
	n := r.Nodes[i]
	if ne.Status != "" && n.Status != ne.Status {
		add("node "+name+" status", ne.Status, n.Status)
	}
	if ne.Error != "" && !matches(ne.Error, n.Error) {
		add("node "+name+" error", "/"+ne.Error+"/", n.Error)
	}
	if ne.Board != "" && n.Board != ne.Board {
		add("node "+name+" board", ne.Board, n.Board)
	}
}

func checkTest(te TestExpect, r *report.Results, add func(what, want, got string)) {
	what := "test " + te.Node + " " + te.Name
	if te.Suite != "" {
		what = "test " + te.Node + " " + te.Suite + "/" + te.Name
	}
	var got []string
	for _, t := range r.Tests {
		if t.Node == te.Node && t.Name == te.Name && (te.Suite == "" || t.Suite == te.Suite) {
			if t.Result == te.Result {
				return // one matching case with the result is enough
			}
			if !slices.Contains(got, t.Result) {
				got = append(got, t.Result)
			}
		}
	}
	switch {
	case te.Result == Absent && len(got) == 0:
	case len(got) == 0:
		add(what, te.Result, Absent)
	default:
		sort.Strings(got)
		add(what, te.Result, strings.Join(got, ", "))
	}
}

// matches reports whether the (already validated) regexp re matches s.
func matches(re, s string) bool {
	m, err := regexp.MatchString(re, s)
	return err == nil && m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
