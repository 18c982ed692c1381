package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
)

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Classname  string        `xml:"classname,attr"`
	Name       string        `xml:"name,attr"`
	Properties *junitProps   `xml:"properties,omitempty"`
	Failure    *junitMessage `xml:"failure,omitempty"`
	Error      *junitMessage `xml:"error,omitempty"`
	Skipped    *junitSkipped `xml:"skipped,omitempty"`
	SystemOut  string        `xml:"system-out,omitempty"`
}

type junitProps struct {
	Props []junitProp `xml:"property"`
}

type junitProp struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

type junitSkipped struct{}

// WriteJUnit writes r as JUnit XML: one <testsuite> per (node, suite) pair,
// named "<node>.<suite>", in order of first appearance. Failed cases get a
// <failure>, skipped ones <skipped/>, unknown ones an <error>. A measurement
// and its units become <properties> of the testcase. If the job did not
// complete, every node that did not complete gets an extra suite
// "<node>.troupe" with an "infrastructure" case holding an <error> with the
// node's error. Characters not allowed in XML are removed.
func WriteJUnit(w io.Writer, r *Results) error {
	if r == nil {
		return errNil
	}
	doc := buildJUnit(r)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("results: write junit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("results: encode junit: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("results: write junit: %w", err)
	}
	return nil
}

func buildJUnit(r *Results) junitSuites {
	doc := junitSuites{
		Name: clean(r.Job.Name),
		Time: strconv.FormatFloat(r.Job.DurationS, 'f', 3, 64),
	}
	index := map[string]int{} // suite name → index in doc.Suites
	add := func(name string, c junitCase) {
		i, ok := index[name]
		if !ok {
			i = len(doc.Suites)
			index[name] = i
			doc.Suites = append(doc.Suites, junitSuite{Name: name})
		}
		s := &doc.Suites[i]
		s.Cases = append(s.Cases, c)
		s.Tests++
		switch {
		case c.Failure != nil:
			s.Failures++
		case c.Error != nil:
			s.Errors++
		case c.Skipped != nil:
			s.Skipped++
		}
	}
	for _, t := range r.Tests {
		suite := clean(t.Node + "." + t.Suite)
		add(suite, testCase(suite, t))
	}
	if r.Job.Status != StatusComplete {
		for _, n := range r.Nodes {
			if n.Status == StatusComplete {
				continue
			}
			suite := clean(n.Name + ".troupe")
			msg := n.Error
			if msg == "" {
				msg = "node status: " + n.Status
			}
			add(suite, junitCase{
				Classname: suite,
				Name:      "infrastructure",
				Error:     &junitMessage{Message: clean(msg), Text: clean(msg)},
			})
		}
	}
	for _, s := range doc.Suites {
		doc.Tests += s.Tests
		doc.Failures += s.Failures
		doc.Errors += s.Errors
		doc.Skipped += s.Skipped
	}
	return doc
}

func testCase(suite string, t Test) junitCase {
	c := junitCase{Classname: suite, Name: clean(t.Name)}
	switch t.Result {
	case Pass:
	case Fail:
		c.Failure = &junitMessage{Message: "test failed"}
	case Skip:
		c.Skipped = &junitSkipped{}
	default:
		msg := "result: " + clean(t.Result)
		if t.Result == Unknown {
			msg = "result unknown"
		}
		c.Error = &junitMessage{Message: msg}
	}
	var props []junitProp
	if t.Measurement != nil {
		props = append(props, junitProp{Name: "measurement", Value: strconv.FormatFloat(*t.Measurement, 'g', -1, 64)})
	}
	if t.Units != "" {
		props = append(props, junitProp{Name: "units", Value: clean(t.Units)})
	}
	if t.Set != "" {
		props = append(props, junitProp{Name: "set", Value: clean(t.Set)})
	}
	if t.Reference != "" {
		props = append(props, junitProp{Name: "reference", Value: clean(t.Reference)})
	}
	// Attachments as the JUnit attachments convention names them, by
	// their path relative to the results directory (junit.xml's own).
	var out strings.Builder
	for _, a := range t.Attachments {
		fmt.Fprintf(&out, "[[ATTACHMENT|%s]]\n", clean(a.Path))
	}
	c.SystemOut = out.String()
	if props != nil {
		c.Properties = &junitProps{Props: props}
	}
	return c
}

// clean removes the characters that XML 1.0 does not allow, and invalid
// UTF-8, from s.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if isXMLChar(r) {
			return r
		}
		return -1
	}, strings.ToValidUTF8(s, ""))
}

func isXMLChar(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' ||
		(r >= 0x20 && r <= 0xD7FF) ||
		(r >= 0xE000 && r <= 0xFFFD) ||
		(r >= 0x10000 && r <= 0x10FFFF)
}
