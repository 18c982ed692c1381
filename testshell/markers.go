package testshell

import (
	"github.com/troupe-lab/troupe/coordinator"

	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Kind tells what a console marker signals.
type Kind int

// Marker kinds.
const (
	TestCase      Kind = iota + 1 // <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=.. RESULT=.. [MEASUREMENT=.. UNITS=..]>
	TestRaise                     // <LAVA_SIGNAL_TESTRAISE message>
	TestSet                       // <LAVA_SIGNAL_TESTSET START name> or <LAVA_SIGNAL_TESTSET STOP>
	TestReference                 // <LAVA_SIGNAL_TESTREFERENCE case result url>
	TestAttach                    // <LAVA_SIGNAL_TESTATTACH case file size sha256 [mimetype]>, base64 lines, <LAVA_SIGNAL_TESTATTACH_END>
)

// Marker is one signal a test script printed on the console.
type Marker struct {
	Kind        Kind
	Case        string   // TestCase: TEST_CASE_ID
	Result      string   // TestCase: pass, fail, skip or unknown
	Measurement *float64 // TestCase: MEASUREMENT, if any
	Units       string   // TestCase: UNITS, if any
	Message     string   // TestRaise
	Set         string   // TestSet: the set started; "" when it stops
	Reference   string   // TestReference: the URL
	File        string   // TestAttach: the file's base name
	Size        int64    // TestAttach: its size in bytes
	SHA256      string   // TestAttach: its SHA-256 in hex, "" if the board has no sha256sum
	MimeType    string   // TestAttach: its MIME type, if given
	// Run is the TROUPE_RUN token the helpers add to their markers: the
	// run whose script printed it. Empty for markers printed by hand.
	Run string
}

var (
	signalRE = regexp.MustCompile(`<LAVA_SIGNAL_(TESTCASE|TESTRAISE|TESTSET|TESTREFERENCE|TESTATTACH) ([^<>]*)>`)
	caseIDRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)
	unitsRE  = regexp.MustCompile(`^[A-Za-z0-9_/%.\-]+$`)
	results  = map[string]bool{"pass": true, "fail": true, "skip": true, "unknown": true}
	caseKeys = map[string]bool{"TEST_CASE_ID": true, "RESULT": true, "MEASUREMENT": true, "UNITS": true, "TROUPE_RUN": true}
	runRE    = regexp.MustCompile(`^[A-Za-z0-9-]+$`)
	// raiseRunRE is the run token troupe-raise puts before its message.
	raiseRunRE = regexp.MustCompile(`^TROUPE_RUN=([A-Za-z0-9-]+)(?: |$)`)
	errNoCase  = fmt.Errorf("no TEST_CASE_ID")
	// urlRE is what a test reference may point at: an http(s) or ftp URL
	// of printable characters (it is shown, and linked, in results).
	urlRE  = regexp.MustCompile(`^(?i:https?|ftp)://[!-~]+$`)
	fileRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.+-]*$`)
	mimeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$`)
	sumRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// MaxReference bounds the length of a test reference's URL.
const MaxReference = 2048

// MaxAttachment bounds one attachment's size (lava-test-case-attach):
// its bytes travel base64-encoded through the console.
const MaxAttachment = 1 << 20

// ParseLine finds the markers in one console line. The helpers mark what
// they print with the run they belong to: TROUPE_RUN=token as a field of a
// test case, or before the message of a raise. A marker that is
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
			mk := Marker{Kind: TestRaise, Message: strings.TrimSpace(m[2])}
			if r := raiseRunRE.FindStringSubmatch(mk.Message); r != nil {
				mk.Run, mk.Message = r[1], strings.TrimSpace(mk.Message[len(r[0]):])
			}
			ms = append(ms, mk)
		default:
			mk, err := parsePositional(m[1], m[2])
			if err != nil {
				errs = append(errs, fmt.Errorf("marker %q: %w", m[0], err))
				continue
			}
			ms = append(ms, mk)
		}
	}
	return ms, errs
}

// parsePositional reads the markers whose fields are positional, as LAVA
// writes them, with the helpers' TROUPE_RUN=token as an optional last field.
func parsePositional(kind, body string) (Marker, error) {
	f := strings.Fields(body)
	var mk Marker
	if n := len(f); n > 0 && strings.HasPrefix(f[n-1], "TROUPE_RUN=") {
		mk.Run, f = strings.TrimPrefix(f[n-1], "TROUPE_RUN="), f[:n-1]
		if !runRE.MatchString(mk.Run) {
			return Marker{}, fmt.Errorf("invalid TROUPE_RUN %q", mk.Run)
		}
	}
	switch kind {
	case "TESTSET":
		mk.Kind = TestSet
		switch {
		case len(f) == 2 && f[0] == "START":
			if !caseIDRE.MatchString(f[1]) {
				return Marker{}, fmt.Errorf("invalid test set name %q", f[1])
			}
			mk.Set = f[1]
		case len(f) == 1 && f[0] == "STOP":
		default:
			return Marker{}, fmt.Errorf("want START NAME or STOP")
		}
	case "TESTREFERENCE":
		mk.Kind = TestReference
		if len(f) != 3 {
			return Marker{}, fmt.Errorf("want TEST_CASE_ID RESULT URL")
		}
		if !caseIDRE.MatchString(f[0]) {
			return Marker{}, fmt.Errorf("invalid TEST_CASE_ID %q", f[0])
		}
		if !results[f[1]] {
			return Marker{}, fmt.Errorf("invalid RESULT %q", f[1])
		}
		if len(f[2]) > MaxReference || !urlRE.MatchString(f[2]) {
			return Marker{}, fmt.Errorf("invalid reference %.80q: an http, https or ftp URL of at most %d characters", f[2], MaxReference)
		}
		mk.Case, mk.Result, mk.Reference = f[0], f[1], f[2]
	case "TESTATTACH":
		mk.Kind = TestAttach
		if len(f) != 4 && len(f) != 5 {
			return Marker{}, fmt.Errorf("want TEST_CASE_ID FILE SIZE SHA256 [MIMETYPE]")
		}
		if !caseIDRE.MatchString(f[0]) {
			return Marker{}, fmt.Errorf("invalid TEST_CASE_ID %q", f[0])
		}
		if !fileRE.MatchString(f[1]) || len(f[1]) > 255 {
			return Marker{}, fmt.Errorf("invalid file name %q", f[1])
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || size < 0 {
			return Marker{}, fmt.Errorf("invalid size %q", f[2])
		}
		if size > MaxAttachment {
			return Marker{}, fmt.Errorf("attachment %s is %d bytes; at most %d are kept", f[1], size, MaxAttachment)
		}
		if f[3] != "-" && !sumRE.MatchString(f[3]) {
			return Marker{}, fmt.Errorf("invalid SHA-256 %q", f[3])
		}
		mk.Case, mk.File, mk.Size = f[0], f[1], size
		if f[3] != "-" {
			mk.SHA256 = f[3]
		}
		if len(f) == 5 {
			if !mimeRE.MatchString(f[4]) || len(f[4]) > 127 {
				return Marker{}, fmt.Errorf("invalid MIME type %q", f[4])
			}
			mk.MimeType = f[4]
		}
	}
	return mk, nil
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
		case "TROUPE_RUN":
			if !runRE.MatchString(v) {
				return Marker{}, fmt.Errorf("invalid TROUPE_RUN %q", v)
			}
			mk.Run = v
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

var multiNodeRE = regexp.MustCompile(`<LAVA_MULTI_NODE> <LAVA_(SEND|WAIT_ALL|WAIT|SYNC) ([^<>]*)>`)

var callKinds = map[string]coordinator.Kind{
	"SEND": coordinator.Send, "WAIT": coordinator.Wait, "WAIT_ALL": coordinator.WaitAll, "SYNC": coordinator.Sync,
}

// ParseMultiNode finds a MultiNode request marker in a console line:
//
//	<LAVA_MULTI_NODE> <LAVA_SEND id [key=value ...]>
//	<LAVA_MULTI_NODE> <LAVA_WAIT id>
//	<LAVA_MULTI_NODE> <LAVA_WAIT_ALL id [role]>
//	<LAVA_MULTI_NODE> <LAVA_SYNC id>
//
// It returns ok=false when the line holds none. Node and Timeout of the
// request are left for the caller to fill in.
func ParseMultiNode(line string) (req coordinator.Request, ok bool, err error) {
	m := multiNodeRE.FindStringSubmatch(line)
	if m == nil {
		return req, false, nil
	}
	req.Kind = callKinds[m[1]]
	f := strings.Fields(m[2])
	if len(f) == 0 || !caseIDRE.MatchString(f[0]) {
		return req, true, fmt.Errorf("marker %q: missing or invalid message id", m[0])
	}
	req.ID, f = f[0], f[1:]
	switch req.Kind {
	case coordinator.Send:
		for _, kv := range f {
			k, v, found := strings.Cut(kv, "=")
			if !found || k == "" {
				return req, true, fmt.Errorf("marker %q: %q is not key=value", m[0], kv)
			}
			req.Data = append(req.Data, coordinator.KV{Key: k, Value: v})
		}
	case coordinator.WaitAll:
		if len(f) > 1 {
			return req, true, fmt.Errorf("marker %q: wait-all takes an id and at most one role", m[0])
		}
		if len(f) == 1 {
			req.Role = f[0]
		}
	default:
		if len(f) > 0 {
			return req, true, fmt.Errorf("marker %q: unexpected %q", m[0], strings.Join(f, " "))
		}
	}
	return req, true, nil
}

var replyNames = map[coordinator.Kind]string{
	coordinator.Send: "LAVA_SEND_COMPLETE", coordinator.Wait: "LAVA_WAIT_COMPLETE",
	coordinator.WaitAll: "LAVA_WAIT_ALL_COMPLETE", coordinator.Sync: "LAVA_SYNC_COMPLETE",
	"": "LAVA_UNKNOWN_COMPLETE", // the side channel's answer to a line that is no request
}

// FormatReply renders a coordinator reply as the line typed back into the
// console: LAVA's reply marker with sender:key=value pairs, or with "nack"
// followed by troupe's error message.
func FormatReply(kind coordinator.Kind, r coordinator.Reply) string {
	var b strings.Builder
	b.WriteString("<" + replyNames[kind])
	if !r.OK {
		msg := strings.NewReplacer("\n", " ", "\r", " ").Replace(r.Err)
		b.WriteString(" nack> " + msg)
		return b.String()
	}
	for _, m := range r.Data {
		fmt.Fprintf(&b, " %s:%s=%s", m.Sender, m.Key, m.Value)
	}
	b.WriteString(">")
	return b.String()
}
