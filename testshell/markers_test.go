package testshell

import (
	"github.com/troupe-lab/troupe/coordinator"
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
		{"run of a case", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass TROUPE_RUN=0a1b-2>",
			[]Marker{{Kind: TestCase, Case: "a", Result: "pass", Run: "0a1b-2"}}, 0},
		{"bad run of a case", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass TROUPE_RUN=a;b>", nil, 1},
		{"run of a raise", "<LAVA_SIGNAL_TESTRAISE TROUPE_RUN=0a1b-2 disk on fire>",
			[]Marker{{Kind: TestRaise, Message: "disk on fire", Run: "0a1b-2"}}, 0},
		{"run of a raise without message", "<LAVA_SIGNAL_TESTRAISE TROUPE_RUN=0a1b-2>",
			[]Marker{{Kind: TestRaise, Run: "0a1b-2"}}, 0},
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
	f.Add("<LAVA_SIGNAL_TESTRAISE TROUPE_RUN=ab-1 boom>")
	f.Add("<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass TROUPE_RUN=ab-1>")
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

func TestParseMultiNode(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
		want coordinator.Request
		err  string
	}{
		{"plain", false, coordinator.Request{}, ""},
		{"<LAVA_MULTI_NODE> <LAVA_SEND ready ip=127.0.0.2 port=80>", true,
			coordinator.Request{Kind: coordinator.Send, ID: "ready", Data: []coordinator.KV{{Key: "ip", Value: "127.0.0.2"}, {Key: "port", Value: "80"}}}, ""},
		{"junk<LAVA_MULTI_NODE> <LAVA_SEND ready>", true, coordinator.Request{Kind: coordinator.Send, ID: "ready"}, ""},
		{"<LAVA_MULTI_NODE> <LAVA_WAIT ready>", true, coordinator.Request{Kind: coordinator.Wait, ID: "ready"}, ""},
		{"<LAVA_MULTI_NODE> <LAVA_WAIT_ALL done client>", true, coordinator.Request{Kind: coordinator.WaitAll, ID: "done", Role: "client"}, ""},
		{"<LAVA_MULTI_NODE> <LAVA_WAIT_ALL done>", true, coordinator.Request{Kind: coordinator.WaitAll, ID: "done"}, ""},
		{"<LAVA_MULTI_NODE> <LAVA_SYNC go>", true, coordinator.Request{Kind: coordinator.Sync, ID: "go"}, ""},
		{"<LAVA_MULTI_NODE> <LAVA_SYNC>", false, coordinator.Request{}, ""},
		{"<LAVA_MULTI_NODE> <LAVA_SYNC go extra>", true, coordinator.Request{Kind: coordinator.Sync, ID: "go"}, "unexpected"},
		{"<LAVA_MULTI_NODE> <LAVA_SEND ready novalue>", true, coordinator.Request{Kind: coordinator.Send, ID: "ready"}, "not key=value"},
		{"<LAVA_MULTI_NODE> <LAVA_WAIT_ALL a b c>", true, coordinator.Request{Kind: coordinator.WaitAll, ID: "a"}, "at most one role"},
		{"<LAVA_MULTI_NODE> <LAVA_WAIT b@d>", true, coordinator.Request{Kind: coordinator.Wait}, "invalid message id"},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			req, ok, err := ParseMultiNode(tc.line)
			assert.Equal(t, tc.ok, ok)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, req)
		})
	}
}

func TestFormatReply(t *testing.T) {
	assert.Equal(t, "<LAVA_SYNC_COMPLETE>", FormatReply(coordinator.Sync, coordinator.Reply{OK: true}))
	assert.Equal(t, "<LAVA_SEND_COMPLETE>", FormatReply(coordinator.Send, coordinator.Reply{OK: true}))
	assert.Equal(t, "<LAVA_WAIT_COMPLETE server-0:ip=127.0.0.2 server-0:port=80>", FormatReply(coordinator.Wait, coordinator.Reply{OK: true,
		Data: []coordinator.Message{{Sender: "server-0", Key: "ip", Value: "127.0.0.2"}, {Sender: "server-0", Key: "port", Value: "80"}}}))
	assert.Equal(t, "<LAVA_WAIT_ALL_COMPLETE nack> wait-all 'x': node c-1 died during boot",
		FormatReply(coordinator.WaitAll, coordinator.Reply{Err: "wait-all 'x':\nnode c-1 died during boot"}))
}

func FuzzParseMultiNode(f *testing.F) {
	f.Add("<LAVA_MULTI_NODE> <LAVA_SEND ready ip=127.0.0.2 port=80>")
	f.Add("<LAVA_MULTI_NODE> <LAVA_WAIT_ALL done client>")
	f.Add("<LAVA_MULTI_NODE> <LAVA_SYNC go>")
	f.Fuzz(func(t *testing.T, line string) {
		req, ok, err := ParseMultiNode(line)
		if !ok || err != nil {
			return
		}
		require.NotEmpty(t, req.ID)
		require.Contains(t, line, req.ID)
		for _, kv := range req.Data {
			require.NotEmpty(t, kv.Key)
			require.NotContains(t, kv.Key+kv.Value, ">")
		}
		// A reply for the request can always be formatted as one line.
		require.NotContains(t, FormatReply(req.Kind, coordinator.Reply{Err: line}), "\n")
	})
}
