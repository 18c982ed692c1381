package testshell

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
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
		{"set start", "<LAVA_SIGNAL_TESTSET START net-io>", []Marker{{Kind: TestSet, Set: "net-io"}}, 0},
		{"set start of a run", "<LAVA_SIGNAL_TESTSET START net TROUPE_RUN=ab-1>", []Marker{{Kind: TestSet, Set: "net", Run: "ab-1"}}, 0},
		{"set stop", "<LAVA_SIGNAL_TESTSET STOP>", []Marker{{Kind: TestSet}}, 0},
		{"set stop of a run", "<LAVA_SIGNAL_TESTSET STOP TROUPE_RUN=ab-1>", []Marker{{Kind: TestSet, Run: "ab-1"}}, 0},
		{"set without name", "<LAVA_SIGNAL_TESTSET START>", nil, 1},
		{"set bad name", "<LAVA_SIGNAL_TESTSET START a;b>", nil, 1},
		{"set bad verb", "<LAVA_SIGNAL_TESTSET BEGIN a>", nil, 1},
		{"reference", "<LAVA_SIGNAL_TESTREFERENCE ltp fail https://ci.example.org/ltp/1?x=y#z>",
			[]Marker{{Kind: TestReference, Case: "ltp", Result: "fail", Reference: "https://ci.example.org/ltp/1?x=y#z"}}, 0},
		{"reference of a run", "<LAVA_SIGNAL_TESTREFERENCE a pass http://h/ TROUPE_RUN=ab-1>",
			[]Marker{{Kind: TestReference, Case: "a", Result: "pass", Reference: "http://h/", Run: "ab-1"}}, 0},
		{"reference javascript", "<LAVA_SIGNAL_TESTREFERENCE a pass javascript:alert(1)>", nil, 1},
		{"reference bad result", "<LAVA_SIGNAL_TESTREFERENCE a ok http://h/>", nil, 1},
		{"reference too long", "<LAVA_SIGNAL_TESTREFERENCE a pass http://h/" + strings.Repeat("x", MaxReference) + ">", nil, 1},
		{"reference missing url", "<LAVA_SIGNAL_TESTREFERENCE a pass>", nil, 1},
		{"attach", "<LAVA_SIGNAL_TESTATTACH a log.txt 12 " + strings.Repeat("0f", 32) + " text/plain TROUPE_RUN=ab-1>",
			[]Marker{{Kind: TestAttach, Case: "a", File: "log.txt", Size: 12, SHA256: strings.Repeat("0f", 32), MimeType: "text/plain", Run: "ab-1"}}, 0},
		{"attach without sum", "<LAVA_SIGNAL_TESTATTACH a log.txt 0 ->", []Marker{{Kind: TestAttach, Case: "a", File: "log.txt"}}, 0},
		{"attach too large", "<LAVA_SIGNAL_TESTATTACH a big.bin 1048577 ->", nil, 1},
		{"attach dot dot", "<LAVA_SIGNAL_TESTATTACH a .. 1 ->", nil, 1},
		{"attach path", "<LAVA_SIGNAL_TESTATTACH a x/y 1 ->", nil, 1},
		{"attach bad sum", "<LAVA_SIGNAL_TESTATTACH a x 1 abc>", nil, 1},
		{"attach negative", "<LAVA_SIGNAL_TESTATTACH a x -1 ->", nil, 1},
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
	f.Add("<LAVA_SIGNAL_TESTSET START s TROUPE_RUN=ab-1><LAVA_SIGNAL_TESTSET STOP>")
	f.Add("<LAVA_SIGNAL_TESTREFERENCE a pass https://h/x TROUPE_RUN=ab-1>")
	f.Add("<LAVA_SIGNAL_TESTATTACH a f.txt 3 - text/plain TROUPE_RUN=ab-1>")
	f.Fuzz(func(t *testing.T, line string) {
		ms, _ := ParseLine(line)
		for _, m := range ms {
			if m.Kind == TestAttach {
				require.LessOrEqual(t, m.Size, int64(MaxAttachment))
				require.Regexp(t, fileRE, m.File)
			}
			if m.Kind == TestReference {
				require.LessOrEqual(t, len(m.Reference), MaxReference)
				require.Regexp(t, urlRE, m.Reference)
			}
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

// attachShell is a shell in the middle of run "r", with no console: Feed
// only records.
func attachShell() *Shell {
	return &Shell{run: &Outcome{}, runID: "r"}
}

// FuzzAttach: whatever lines follow an attachment's marker, an attachment
// kept has exactly the bytes announced (size and SHA-256), and the run's
// attachments stay within MaxRunAttachments.
func FuzzAttach(f *testing.F) {
	f.Add(3, "YWJj", "", "")
	f.Add(3, "YW", "Jj", "")
	f.Add(4, "YWJj", "ZA==", "<x>")
	f.Add(0, "", "", "")
	f.Fuzz(func(t *testing.T, size int, l1, l2, l3 string) {
		if size < 0 || size > MaxAttachment {
			return
		}
		s := attachShell()
		s.Feed(fmt.Sprintf("<LAVA_SIGNAL_TESTATTACH c f.bin %d - TROUPE_RUN=r>", size))
		for _, l := range []string{l1, l2, l3, attachEnd, "tail"} {
			s.Feed(l)
		}
		for _, a := range s.run.Attachments {
			require.Len(t, a.Data, size)
			require.Equal(t, "c", a.Case)
		}
		require.Nil(t, s.attach, "the end marker ends the attachment")
	})
}

func TestAttachReceiver(t *testing.T) {
	data := []byte("line one\nline two\x00\xff")
	enc := base64.StdEncoding.EncodeToString(data)
	sum := fmt.Sprintf("%x", sha256.Sum256(data))
	marker := func(size int, sum string) string {
		return fmt.Sprintf("<LAVA_SIGNAL_TESTATTACH c log.bin %d %s application/octet-stream TROUPE_RUN=r>", size, sum)
	}
	for _, tc := range []struct {
		name    string
		lines   []string
		kept    bool
		invalid string
	}{
		{"split lines, CR LF", []string{marker(len(data), sum), enc[:10] + "\r", enc[10:] + "\r", attachEnd + "\r"}, true, ""},
		{"no sha256sum on the board", []string{marker(len(data), "-"), enc, attachEnd}, true, ""},
		{"sum mismatch", []string{marker(len(data), strings.Repeat("0", 64)), enc, attachEnd}, false, "SHA-256 mismatch"},
		{"short", []string{marker(len(data)+3, "-"), enc, attachEnd}, false, "announced"},
		{"more than announced", []string{marker(2, "-"), enc, attachEnd}, false, "more than the 2 bytes announced"},
		{"not base64", []string{marker(len(data), "-"), "hello world!", attachEnd}, false, "not base64"},
		{"interrupted by a marker", []string{marker(len(data), sum), enc[:8], "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=x RESULT=pass>", enc[8:], attachEnd}, false, "interrupted"},
		{"another run's", []string{fmt.Sprintf("<LAVA_SIGNAL_TESTATTACH c log.bin %d - TROUPE_RUN=old>", len(data)), enc, attachEnd}, false, ""},
		{"never ended", []string{marker(len(data), sum), enc}, false, "ended before its end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := attachShell()
			for _, l := range tc.lines {
				s.Feed(l)
			}
			s.mu.Lock()
			s.endAttach("the test ended before its end")
			s.mu.Unlock()
			if tc.kept {
				require.Len(t, s.run.Attachments, 1)
				assert.Equal(t, Attachment{Case: "c", Name: "log.bin", MimeType: "application/octet-stream", Data: data}, s.run.Attachments[0])
			} else {
				assert.Empty(t, s.run.Attachments)
			}
			if tc.invalid == "" {
				assert.Empty(t, s.run.Invalid)
			} else {
				require.Len(t, s.run.Invalid, 1)
				assert.Contains(t, s.run.Invalid[0], tc.invalid)
			}
		})
	}
	// The attachments of one run are bounded together.
	s := attachShell()
	big := make([]byte, MaxAttachment)
	bigEnc := base64.StdEncoding.EncodeToString(big)
	for i := 0; i < MaxRunAttachments/MaxAttachment+1; i++ {
		s.Feed(fmt.Sprintf("<LAVA_SIGNAL_TESTATTACH c f%d 1048576 - TROUPE_RUN=r>", i))
		s.Feed(bigEnc)
		s.Feed(attachEnd)
	}
	assert.Len(t, s.run.Attachments, MaxRunAttachments/MaxAttachment)
	require.Len(t, s.run.Invalid, 1)
	assert.Contains(t, s.run.Invalid[0], "exceed")
}
