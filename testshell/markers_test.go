package testshell

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func f(x float64) *float64 { return &x }

func TestParseLine(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    []Marker
		invalid int
	}{
		{"plain text", "hello world", nil, 0},
		{"pass", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=ping RESULT=pass>", []Marker{{Kind: TestCase, Case: "ping", Result: "pass"}}, 0},
		{"measurement any order", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=lat RESULT=pass UNITS=ms MEASUREMENT=12.5>",
			[]Marker{{Kind: TestCase, Case: "lat", Result: "pass", Measurement: f(12.5), Units: "ms"}}, 0},
		{"noise around", "\x00junk<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=fail>tail", []Marker{{Kind: TestCase, Case: "a", Result: "fail"}}, 0},
		{"two on a line", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=skip><LAVA_SIGNAL_TESTCASE TEST_CASE_ID=b RESULT=unknown>",
			[]Marker{{Kind: TestCase, Case: "a", Result: "skip"}, {Kind: TestCase, Case: "b", Result: "unknown"}}, 0},
		{"raise", "<LAVA_SIGNAL_TESTRAISE disk on fire>", []Marker{{Kind: TestRaise, Message: "disk on fire"}}, 0},
		{"dropped byte in result", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pas>", nil, 1},
		{"dropped '=' ", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULTpass>", nil, 1},
		{"no closing bracket", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass", nil, 0},
		{"missing result", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a>", nil, 1},
		{"missing id", "<LAVA_SIGNAL_TESTCASE RESULT=pass>", nil, 1},
		{"bad measurement", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass MEASUREMENT=1x2>", nil, 1},
		{"repeated field", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=fail RESULT=pass>", nil, 1},
		{"unknown field", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass FOO=1>", nil, 1},
		{"echo of the helper's printf", `printf '\n<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=%s RESULT=%s%s>\n'`, nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := ParseLine(tc.line)
			assert.Equal(t, tc.want, got)
			assert.Len(t, errs, tc.invalid)
		})
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add("<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=ping RESULT=pass MEASUREMENT=1 UNITS=ms>")
	f.Add("<LAVA_SIGNAL_TESTRAISE boom>")
	f.Add("<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass")
	f.Fuzz(func(t *testing.T, line string) {
		ms, _ := ParseLine(line)
		for _, m := range ms {
			if m.Kind != TestCase {
				continue
			}
			require.NotEmpty(t, m.Case)
			require.Contains(t, []string{"pass", "fail", "skip", "unknown"}, m.Result)
			// A reported result is always backed by the exact text in the line.
			require.True(t, strings.Contains(line, "TEST_CASE_ID="+m.Case) && strings.Contains(line, "RESULT="+m.Result))
		}
	})
}
