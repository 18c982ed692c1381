package testshell

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Kind tells what a console marker signals.
type Kind int

// Marker kinds.
const (
	TestCase  Kind = iota + 1 // <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=.. RESULT=.. [MEASUREMENT=.. UNITS=..]>
	TestRaise                 // <LAVA_SIGNAL_TESTRAISE message>
)

// Marker is one signal a test script printed on the console.
type Marker struct {
	Kind        Kind
	Case        string   // TestCase: TEST_CASE_ID
	Result      string   // TestCase: pass, fail, skip or unknown
	Measurement *float64 // TestCase: MEASUREMENT, if any
	Units       string   // TestCase: UNITS, if any
	Message     string   // TestRaise
}

var (
	signalRE  = regexp.MustCompile(`<LAVA_SIGNAL_(TESTCASE|TESTRAISE) ([^<>]*)>`)
	caseIDRE  = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)
	unitsRE   = regexp.MustCompile(`^[A-Za-z0-9_/%.\-]+$`)
	results   = map[string]bool{"pass": true, "fail": true, "skip": true, "unknown": true}
	caseKeys  = map[string]bool{"TEST_CASE_ID": true, "RESULT": true, "MEASUREMENT": true, "UNITS": true}
	errNoCase = fmt.Errorf("no TEST_CASE_ID")
)

// ParseLine finds the markers in one console line. A marker that is
// recognisable but malformed (a corrupted byte, an unknown result, a missing
// field) is reported as an error and never as a result: a damaged line must
// not turn into a pass.
func ParseLine(line string) ([]Marker, []error) {
	var ms []Marker
	var errs []error
	for _, m := range signalRE.FindAllStringSubmatch(line, -1) {
		switch m[1] {
		case "TESTCASE":
			mk, err := parseTestCase(m[2])
			if err != nil {
				errs = append(errs, fmt.Errorf("marker %q: %w", m[0], err))
				continue
			}
			ms = append(ms, mk)
		case "TESTRAISE":
			ms = append(ms, Marker{Kind: TestRaise, Message: strings.TrimSpace(m[2])})
		}
	}
	return ms, errs
}

func parseTestCase(body string) (Marker, error) {
	mk := Marker{Kind: TestCase}
	seen := map[string]bool{}
	for _, f := range strings.Fields(body) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || !caseKeys[k] {
			return Marker{}, fmt.Errorf("unexpected field %q", f)
		}
		if seen[k] {
			return Marker{}, fmt.Errorf("repeated field %s", k)
		}
		seen[k] = true
		switch k {
		case "TEST_CASE_ID":
			if !caseIDRE.MatchString(v) {
				return Marker{}, fmt.Errorf("invalid TEST_CASE_ID %q", v)
			}
			mk.Case = v
		case "RESULT":
			if !results[v] {
				return Marker{}, fmt.Errorf("invalid RESULT %q", v)
			}
			mk.Result = v
		case "MEASUREMENT":
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return Marker{}, fmt.Errorf("invalid MEASUREMENT %q", v)
			}
			mk.Measurement = &x
		case "UNITS":
			if !unitsRE.MatchString(v) {
				return Marker{}, fmt.Errorf("invalid UNITS %q", v)
			}
			mk.Units = v
		}
	}
	if mk.Case == "" {
		return Marker{}, errNoCase
	}
	if mk.Result == "" {
		return Marker{}, fmt.Errorf("no RESULT")
	}
	return mk, nil
}
