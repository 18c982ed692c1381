// Package scenario reads fault-injection scenarios: TOML files that run a
// troupe job on a simulated lab, inject seeded faults into its boards
// (a hang in the bootloader, a kernel panic mid-barrier, a noisy serial
// line) and state how troupe must react. It plans the faults
// deterministically from the scenario's seed and checks the outcome of a
// run against the expectation, as a list of readable differences.
//
// Parsing is strict, in the style of package jobs: unknown keys, wrong
// types and invalid values are all reported together, as a jobs.Errors
// whose every error names the file, line and key.
package scenario

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/jobs/tomlfile"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/report"
)

// Fault kinds.
const (
	BootHang          = "boot-hang"          // the board never leaves the bootloader
	SlowBoot          = "slow-boot"          // booting takes Duration longer
	KernelPanic       = "kernel-panic"       // the kernel panics
	NoLoginPrompt     = "no-login-prompt"    // the board boots but never offers a shell
	ConsoleNoise      = "console-noise"      // random bytes at Rate bytes/s on the console
	ConsoleDrop       = "console-drop"       // each console byte is lost with Probability
	ConsoleSlow       = "console-slow"       // the console runs at Baud
	ConsoleDisconnect = "console-disconnect" // the console goes away, for Duration (0: forever)
	PowerLoss         = "power-loss"         // the board loses power
	PowerFail         = "power-fail"         // power commands fail
	PowerLie          = "power-lie"          // power commands report success and do nothing
	DeployFail        = "deploy-fail"        // deploying the image fails
	ShellHang         = "shell-hang"         // the shell stops answering
)

// Kinds lists the fault kinds, in the order of the documentation.
var Kinds = []string{
	BootHang, SlowBoot, KernelPanic, NoLoginPrompt, ConsoleNoise, ConsoleDrop, ConsoleSlow,
	ConsoleDisconnect, PowerLoss, PowerFail, PowerLie, DeployFail, ShellHang,
}

// Triggers of a fault (the When field); test: and console: are prefixes.
const (
	WhenBoot    = "boot"
	WhenDeploy  = "deploy"
	WhenTest    = "test:"    // followed by the name of a test action
	WhenConsole = "console:" // followed by a regular expression on the console output
)

// Results a test expectation may ask for besides the report results.
const Absent = "absent" // the test case must not be in the results

// Fault is one fault to inject. Exactly one of Node, Board and Role is set;
// for a role, Plan picks one node of the role from the seed.
type Fault struct {
	Node, Board, Role string
	Kind              string        // one of Kinds
	When              string        // "boot", "deploy", "test:<name>" or "console:<regexp>"
	After             time.Duration // delay after the trigger, >= 0
	// Duration: slow-boot (> 0, required), console-disconnect (> 0; 0 = forever).
	Duration    time.Duration
	Rate        float64 // console-noise: bytes/s, > 0
	Probability float64 // console-drop: 0 < p <= 1
	Baud        int     // console-slow: > 0
	Line        int     // in the scenario file
}

// Trigger splits When into its kind ("boot", "deploy", "test" or
// "console") and argument (the test name or the console regexp).
func (f Fault) Trigger() (kind, arg string) {
	if k, a, ok := strings.Cut(f.When, ":"); ok {
		return k, a
	}
	return f.When, ""
}

// NodeExpect is the expected outcome of one node. Empty fields are not
// checked; Error is a regexp.
type NodeExpect struct {
	Status, Error, Board string
}

// TestExpect is the expected result of one test case: one of the report
// results (pass, fail, skip, unknown) or Absent. An empty Suite matches
// any suite.
type TestExpect struct {
	Node, Suite, Name, Result string
}

// Expect is how troupe must react. Zero fields (empty strings, nil
// pointers and maps, Within 0) are not checked. Error and the nodes'
// errors are regexps.
type Expect struct {
	Status   string        // job status: complete, incomplete or canceled
	Exit     *int          // troupe exit code, 0..3
	Error    string        // regexp on the job error
	Class    string        // job error class: infrastructure, test or job
	Within   time.Duration // the job ended this soon after the first fault fired
	Attempts *int          // number of retried attempts recorded
	Nodes    map[string]NodeExpect
	Tests    []TestExpect      // in file order
	Boards   map[string]string // board -> health after the run
}

// Scenario is a parsed, valid scenario file.
type Scenario struct {
	Name string
	Seed uint64
	File string // path it was read from
	// JobPath is the job file (troupe .toml or LAVA .yaml), resolved
	// against the scenario's directory; empty when the job is inline.
	JobPath string
	// JobTOML is the inline [job] table as a job file, for jobs.Parse
	// (with File as the file name); empty when JobPath is set.
	JobTOML string
	// LabPath is the lab file, resolved against the scenario's directory;
	// empty for the built-in sim lab.
	LabPath string
	Faults  []Fault // in file order
	Expect  Expect
}

// Load reads and parses the scenario file at path.
func Load(path string) (*Scenario, error) {
	data, err := tomlfile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load scenario: %w", err)
	}
	return Parse(path, data)
}

// LoadDir loads scenarios from files and directories (the *.toml files
// directly in them, sorted by name). It returns the scenarios that loaded,
// in order, and every error found, joined (each a jobs.Errors for an
// invalid file).
func LoadDir(paths ...string) ([]*Scenario, error) {
	var out []*Scenario
	var errs []error
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("load scenarios: %w", err))
			continue
		}
		files := []string{p}
		if fi.IsDir() {
			files, err = filepath.Glob(filepath.Join(p, "*.toml"))
			if err != nil {
				errs = append(errs, fmt.Errorf("load scenarios: %s: %w", p, err))
				continue
			}
			sort.Strings(files)
			if len(files) == 0 {
				errs = append(errs, fmt.Errorf("load scenarios: no *.toml files in %s", p))
				continue
			}
		}
		for _, f := range files {
			// Only regular files: reading a device or a FIFO might never end.
			if fi, err := os.Stat(f); err == nil && !fi.Mode().IsRegular() {
				errs = append(errs, fmt.Errorf("load scenarios: %s is not a regular file", f))
				continue
			}
			s, err := Load(f)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, s)
		}
	}
	return out, errors.Join(errs...)
}

// Parse parses a scenario read from file, which names it in errors; the
// paths of the job and lab are resolved against its directory. The error,
// if any, is a jobs.Errors.
func Parse(file string, data []byte) (*Scenario, error) {
	doc, root, err := tomlfile.Parse(file, data)
	if err != nil {
		var errs jobs.Errors
		if errors.As(err, &errs) && len(errs) == 1 && strings.Contains(errs[0].Msg, "Key 'job' has already been defined") {
			// The TOML decoder's words for job = "..." followed by [job].
			errs[0].Key = "job"
			errs[0].Msg = "a job file path and a [job] table: give exactly one of them"
		}
		return nil, err
	}
	s := &Scenario{File: file}
	root.Only("name", "seed", "job", "lab", "fault", "expect")
	root.Require("name", "seed")
	if name, ok := root.String("name"); ok {
		if strings.TrimSpace(name) == "" {
			root.Errorf("name", "must not be empty")
		}
		s.Name = name
	}
	if n, ok := root.Int("seed"); ok {
		if n < 0 {
			root.Errorf("seed", "must be >= 0 (got %d)", n)
		}
		s.Seed = uint64(max(n, 0))
	}
	var extra jobs.Errors // errors of an inline job, located in this file
	parseJob(doc, root, s, &extra)
	if p, ok := root.String("lab"); ok {
		s.LabPath = resolve(file, p)
	}
	if faults, ok := root.Tables("fault"); ok {
		for _, t := range faults {
			s.Faults = append(s.Faults, parseFault(t))
		}
	}
	if t, ok := root.Table("expect"); ok {
		s.Expect = parseExpect(t)
	}
	var errs jobs.Errors
	if err := doc.Err(); err != nil {
		errs, _ = err.(jobs.Errors)
	}
	if errs = append(errs, extra...); len(errs) > 0 {
		sort.SliceStable(errs, func(a, b int) bool { return errs[a].Line < errs[b].Line })
		return nil, errs
	}
	return s, nil
}

// parseJob reads job: a path, or an inline table that must be a valid job.
func parseJob(doc *tomlfile.Doc, root tomlfile.Table, s *Scenario, extra *jobs.Errors) {
	v, found := root.M["job"]
	if !found {
		root.Errorf("job", `is required: a job file path (job = "relay.toml") or an inline [job] table`)
		return
	}
	switch v := v.(type) {
	case string:
		if v == "" {
			root.Errorf("job", "must not be empty")
			return
		}
		s.JobPath = resolve(s.File, v)
	case map[string]any:
		var b strings.Builder
		if err := toml.NewEncoder(&b).Encode(v); err != nil {
			root.Errorf("job", "cannot re-encode the inline job: %v", err)
			return
		}
		s.JobTOML = b.String()
		if _, err := jobs.Parse(s.File, []byte(s.JobTOML)); err != nil {
			jobErrors(doc, err, extra)
		}
	default:
		root.Errorf("job", "must be a job file path or a [job] table (got %s)", tomlfile.Describe(v))
	}
}

var unknownKey = regexp.MustCompile(`^unknown key "(.*)"$`)

// jobErrors adds the errors of the inline job to extra, as errors about the
// keys under "job" in the scenario, at their lines there.
func jobErrors(doc *tomlfile.Doc, err error, extra *jobs.Errors) {
	var errs jobs.Errors
	if !errors.As(err, &errs) {
		doc.Errorf("job", "invalid inline job: %v", err)
		return
	}
	for _, e := range errs {
		key := "job"
		if e.Key != "" {
			key += "." + e.Key
		}
		where := key
		if m := unknownKey.FindStringSubmatch(e.Msg); m != nil {
			where = key + "." + m[1] // the line of the unknown key itself
		}
		*extra = append(*extra, &jobs.Error{File: e.File, Line: doc.Line(where), Key: key, Msg: e.Msg})
	}
}

func parseFault(t tomlfile.Table) Fault {
	f := Fault{When: WhenBoot, Line: t.Line()}
	t.Only("node", "board", "role", "kind", "when", "after", "duration", "rate", "probability", "baud")
	t.Require("kind")
	var targets []string
	for _, k := range []string{"node", "board", "role"} {
		v, ok := t.String(k)
		if !ok {
			continue
		}
		targets = append(targets, k)
		if v == "" {
			t.Errorf(k, "must not be empty")
		}
		switch k {
		case "node":
			f.Node = v
		case "board":
			f.Board = v
		case "role":
			f.Role = v
		}
	}
	switch {
	case len(targets) == 0 && !t.Has("node") && !t.Has("board") && !t.Has("role"):
		t.Errorf("", "exactly one of node, board and role is required")
	case len(targets) > 1:
		t.Errorf("", "exactly one of node, board and role is allowed (got %s)", strings.Join(targets, " and "))
	}
	if kind, ok := t.String("kind"); ok {
		if slices.Contains(Kinds, kind) {
			f.Kind = kind
		} else {
			t.Errorf("kind", "must be one of %s (got %q)", strings.Join(Kinds, ", "), kind)
		}
	}
	if when, ok := t.String("when"); ok {
		if checkWhen(t, when) {
			f.When = when
		}
	}
	if d, ok := t.Duration("after"); ok {
		if d < 0 {
			t.Errorf("after", "must be >= 0 (got %q)", t.M["after"])
		}
		f.After = d
	}
	// Parameters: only on the kinds that take them.
	for _, p := range params {
		if !t.Has(p.key) || f.Kind == "" {
			continue
		}
		if !slices.Contains(p.kinds, f.Kind) {
			t.Errorf(p.key, "not allowed on a %s fault (only on %s)", f.Kind, strings.Join(p.kinds, ", "))
		}
	}
	if f.Kind == SlowBoot {
		t.Require("duration")
	}
	if d, ok := t.Duration("duration"); ok {
		if d <= 0 {
			t.Errorf("duration", "must be > 0 (got %q)", t.M["duration"])
		}
		f.Duration = d
	}
	if f.Kind == ConsoleNoise {
		t.Require("rate")
	}
	if r, ok := t.Number("rate"); ok {
		if !(r > 0) || math.IsInf(r, 0) {
			t.Errorf("rate", "must be a number of bytes per second > 0 (got %v)", r)
		}
		f.Rate = r
	}
	if f.Kind == ConsoleDrop {
		t.Require("probability")
	}
	if p, ok := t.Number("probability"); ok {
		if !(p > 0 && p <= 1) {
			t.Errorf("probability", "must be > 0 and <= 1 (got %v)", p)
		}
		f.Probability = p
	}
	if f.Kind == ConsoleSlow {
		t.Require("baud")
	}
	if n, ok := t.Int("baud"); ok {
		if n <= 0 || n > math.MaxInt32 {
			t.Errorf("baud", "must be > 0 (got %d)", n)
		}
		f.Baud = int(min(max(n, 0), math.MaxInt32))
	}
	return f
}

// params are the fault parameters and the kinds that take them.
var params = []struct {
	key   string
	kinds []string
}{
	{"duration", []string{SlowBoot, ConsoleDisconnect}},
	{"rate", []string{ConsoleNoise}},
	{"probability", []string{ConsoleDrop}},
	{"baud", []string{ConsoleSlow}},
}

func checkWhen(t tomlfile.Table, when string) bool {
	switch kind, arg, _ := strings.Cut(when, ":"); {
	case when == WhenBoot || when == WhenDeploy:
		return true
	case kind == "test" && strings.HasPrefix(when, WhenTest):
		if arg == "" {
			t.Errorf("when", "test: needs the name of a test action (got %q)", when)
			return false
		}
		return true
	case kind == "console" && strings.HasPrefix(when, WhenConsole):
		if arg == "" {
			t.Errorf("when", "console: needs a regular expression (got %q)", when)
			return false
		}
		if _, err := regexp.Compile(arg); err != nil {
			t.Errorf("when", "invalid regular expression %q: %v", arg, reason(arg, err))
			return false
		}
		return true
	}
	t.Errorf("when", `must be "boot", "deploy", "test:<name>" or "console:<regexp>" (got %q)`, when)
	return false
}

var (
	statuses = []string{report.StatusComplete, report.StatusIncomplete, report.StatusCanceled}
	classes  = []string{report.Infrastructure, report.TestFailure, report.JobError}
	results  = []string{report.Pass, report.Fail, report.Skip, report.Unknown, Absent}
)

func parseExpect(t tomlfile.Table) Expect {
	var e Expect
	t.Only("status", "exit", "error", "class", "within", "attempts", "nodes", "tests", "boards")
	e.Status = t.OneOf("status", statuses...)
	if n, ok := t.Int("exit"); ok {
		if n < 0 || n > 3 {
			t.Errorf("exit", "must be between 0 and 3 (got %d)", n)
		} else {
			x := int(n)
			e.Exit = &x
		}
	}
	e.Error = regex(t, "error")
	e.Class = t.OneOf("class", classes...)
	if d, ok := t.Duration("within"); ok {
		if d <= 0 {
			t.Errorf("within", "must be > 0 (got %q)", t.M["within"])
		}
		e.Within = d
	}
	if n, ok := t.Int("attempts"); ok {
		if n < 0 || n > math.MaxInt32 {
			t.Errorf("attempts", "must be >= 0 (got %d)", n)
		} else {
			x := int(n)
			e.Attempts = &x
		}
	}
	if nodes, ok := t.Table("nodes"); ok {
		e.Nodes = map[string]NodeExpect{}
		for _, name := range nodes.Keys() {
			nt, ok := nodes.Table(name)
			if !ok {
				continue
			}
			nt.Only("status", "error", "board")
			nt.Require("status")
			var ne NodeExpect
			ne.Status = nt.OneOf("status", statuses...)
			ne.Error = regex(nt, "error")
			if b, ok := nt.String("board"); ok {
				if b == "" {
					nt.Errorf("board", "must not be empty")
				}
				ne.Board = b
			}
			e.Nodes[name] = ne
		}
	}
	if tests, ok := t.Tables("tests"); ok {
		for _, tt := range tests {
			tt.Only("node", "suite", "name", "result")
			tt.Require("node", "name", "result")
			var te TestExpect
			te.Node = nonEmpty(tt, "node")
			te.Suite, _ = tt.String("suite")
			te.Name = nonEmpty(tt, "name")
			te.Result = tt.OneOf("result", results...)
			e.Tests = append(e.Tests, te)
		}
	}
	if boards, ok := t.Table("boards"); ok {
		e.Boards = map[string]string{}
		for _, name := range boards.Keys() {
			if h := boards.OneOf(name, lab.Healths...); h != "" {
				e.Boards[name] = h
			}
		}
	}
	return e
}

// regex reads a string that must be a valid regexp.
func regex(t tomlfile.Table, k string) string {
	v, ok := t.String(k)
	if !ok {
		return ""
	}
	if _, err := regexp.Compile(v); err != nil {
		t.Errorf(k, "invalid regular expression %q: %v", v, reason(v, err))
		return ""
	}
	return v
}

func nonEmpty(t tomlfile.Table, k string) string {
	v, ok := t.String(k)
	if ok && v == "" {
		t.Errorf(k, "must not be empty")
	}
	return v
}

// reason is the message of the error of compiling the regexp pattern,
// without repeating the whole pattern.
func reason(pattern string, err error) string {
	var re *syntax.Error
	if !errors.As(err, &re) {
		return err.Error()
	}
	if re.Expr == "" || re.Expr == pattern {
		return re.Code.String()
	}
	return fmt.Sprintf("%s at %q", re.Code, re.Expr)
}

// resolve makes a path relative to the scenario file's directory.
func resolve(file, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(filepath.Dir(file), path)
}
