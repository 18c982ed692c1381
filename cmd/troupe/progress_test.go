package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/troupe-lab/troupe/internal/lockedbuf"
	"github.com/troupe-lab/troupe/report"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestProgress(w, h int) (*progress, *fakeClock) {
	clk := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	return newProgress(clk.now, func() (int, int) { return w, h }), clk
}

// tableOf returns the table lines of a frame (after the escape sequence
// and the lines above it): from the header on.
func tableOf(t *testing.T, frame string) []string {
	t.Helper()
	i := strings.Index(frame, "NODE ")
	require.GreaterOrEqual(t, i, 0, "no table in %q", frame)
	return strings.Split(strings.TrimSuffix(frame[i:], "\n"), "\n")
}

func TestProgressFrames(t *testing.T) {
	p, clk := newTestProgress(100, 30)
	start := clk.now()
	assert.Empty(t, string(p.frame()), "nothing to draw before the first node")

	p.Phase("server-0", "sim-0", "boot", start)
	p.Phase("client-0", "sim-1", "boot", start)
	clk.advance(1500 * time.Millisecond)
	f := string(p.frame())
	assert.NotContains(t, f, "\x1b[", "the first frame moves nothing back")
	lines := tableOf(t, f)
	require.Len(t, lines, 4, f)
	assert.Regexp(t, `^NODE\s+BOARD\s+PHASE\s+TIME\s+PASS\s+FAIL$`, lines[0])
	assert.Regexp(t, `^client-0\s+sim-1\s+boot\s+1\.5s\s+0\s+0$`, lines[1], "rows sorted by node")
	assert.Regexp(t, `^server-0\s+sim-0\s+boot\s+1\.5s\s+0\s+0$`, lines[2])
	assert.Equal(t, "2 nodes, 2 running, 0 passed, 0 failed, 1.5s", lines[3])

	// Test case markers on the console count; other lines do not.
	p.Phase("server-0", "sim-0", "test 'serve'", clk.now())
	p.Line("server-0", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=uname RESULT=pass>")
	p.Line("server-0", "x<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass><LAVA_SIGNAL_TESTCASE TEST_CASE_ID=b RESULT=fail>")
	p.Line("server-0", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=bad RESULT=maybe>")
	p.Line("server-0", "just a line")
	p.Print("client-0 incomplete: boot failed")
	clk.advance(time.Second)
	p.Phase("client-0", "sim-1", report.StatusIncomplete, clk.now())
	clk.advance(61 * time.Second)
	f = string(p.frame())
	assert.True(t, strings.HasPrefix(f, "\r\x1b[4A\x1b[J"), "back up over the 4 lines drawn, clear: %q", f)
	assert.Contains(t, f, "\x1b[J"+"client-0 incomplete: boot failed\nNODE", "printed lines go above the table")
	lines = tableOf(t, f)
	require.Len(t, lines, 4, f)
	assert.Regexp(t, `^client-0\s+sim-1\s+incomplete\s+2\.5s\s+0\s+0$`, lines[1], "the time of an ended node stops")
	assert.Regexp(t, `^server-0\s+sim-0\s+test 'serve'\s+1m04s\s+2\s+1$`, lines[2])
	assert.Equal(t, "2 nodes, 1 running, 2 passed, 1 failed, 1m04s", lines[3])

	// A retry runs the node again; the results are the final counts.
	p.Phase("client-0", "sim-2", "boot", clk.now())
	p.Results("", []report.Test{
		{Node: "server-0", Result: report.Pass}, {Node: "server-0", Result: report.Pass},
		{Node: "server-0", Result: report.Pass}, {Node: "server-0", Result: report.Fail},
	})
	f = string(p.frame())
	assert.NotContains(t, f, "boot failed", "a printed line is printed once")
	lines = tableOf(t, f)
	assert.Regexp(t, `^client-0\s+sim-2\s+boot\s+1m04s\s+0\s+0$`, lines[1])
	assert.Regexp(t, `^server-0\s+sim-0\s+test 'serve'\s+1m04s\s+3\s+1$`, lines[2])
}

func TestProgressFitsTheTerminal(t *testing.T) {
	p, clk := newTestProgress(40, 10)
	for i := range 20 {
		p.Phase(fmt.Sprintf("job/node-with-a-long-name-%02d", i), "board", "test 'a very long test name that goes on'", clk.now())
	}
	f := string(p.frame())
	lines := tableOf(t, f)
	assert.LessOrEqual(t, len(lines), 10-2, "the table fits the screen: %q", f)
	assert.Equal(t, "… and 15 more nodes", lines[len(lines)-2])
	for _, l := range lines {
		assert.LessOrEqual(t, len([]rune(l)), 39, "a line as wide as the terminal would wrap: %q", l)
	}
	f = string(p.frame())
	assert.True(t, strings.HasPrefix(f, fmt.Sprintf("\r\x1b[%dA", len(lines))), "%q", f)
}

// TestProgressBoundsPrintedLines: a terminal slower than the log loses the
// oldest lines and says so; the memory held stays bounded.
func TestProgressBoundsPrintedLines(t *testing.T) {
	p, clk := newTestProgress(80, 24)
	p.Phase("a-0", "sim-0", "boot", clk.now())
	for i := range maxAbove + 500 {
		p.Print(fmt.Sprintf("line %d", i))
	}
	p.mu.Lock()
	assert.Len(t, p.above, maxAbove)
	p.mu.Unlock()
	f := string(p.frame())
	assert.True(t, strings.HasPrefix(f, "[500 lines not shown: the terminal was slower than the log]\nline 500\n"), f[:80])
	assert.Contains(t, f, fmt.Sprintf("line %d\nNODE", maxAbove+499))
	assert.NotContains(t, string(p.frame()), "not shown", "said once")
}

// TestProgressShow: a change is drawn without waiting for the next tick;
// stop draws the last frame and leaves no goroutine behind.
func TestProgressShow(t *testing.T) {
	defer goleak.VerifyNone(t)
	p, clk := newTestProgress(80, 24)
	var out lockedbuf.Buffer
	p.show(&out)
	p.Phase("a-0", "sim-0", "boot", clk.now())
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "a-0") }, 5*time.Second, 5*time.Millisecond)
	p.Phase("a-0", "sim-0", report.StatusComplete, clk.now())
	p.stop()
	p.stop()
	lines := tableOf(t, out.String()[strings.LastIndex(out.String(), "\x1b[J"):])
	assert.Regexp(t, `^a-0\s+sim-0\s+complete\s`, lines[1])
}

func TestInterspersedFlags(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
		out  string
		v    bool
	}{
		{[]string{"a", "--out", "d", "b"}, []string{"a", "b"}, "d", false},
		{[]string{"--out=d", "a", "-v"}, []string{"a"}, "d", true},
		{[]string{"a", "-out", "d", "-v=true"}, []string{"a"}, "d", true},
		{[]string{"-v", "a", "--", "--out", "-v"}, []string{"a", "--out", "-v"}, "", true},
		{[]string{"-", "--out", "-"}, []string{"-"}, "-", false},
		{[]string{"--out", "--", "a"}, []string{"a"}, "--", false},
		{nil, nil, "", false},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			fs := newFlags("test", &bytes.Buffer{})
			out := fs.String("out", "", "")
			v := fs.Bool("v", false, "")
			code, ok := parseFlags(fs, tc.args, &bytes.Buffer{})
			require.True(t, ok, code)
			assert.Equal(t, tc.pos, append([]string(nil), fs.Args()...))
			assert.Equal(t, tc.out, *out)
			assert.Equal(t, tc.v, *v)
		})
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, args := range [][]string{{"a", "--nope"}, {"a", "--out"}, {"-v=maybe"}} {
		var stdout, stderr bytes.Buffer
		fs := newFlags("run", &stderr)
		fs.String("out", "", "")
		fs.Bool("v", false, "")
		code, ok := parseFlags(fs, args, &stdout)
		assert.False(t, ok)
		assert.Equal(t, exitInvalid, code, args)
		assert.Empty(t, stdout.String())
		assert.Regexp(t, `^troupe run: .*\nusage: troupe run `, stderr.String())
		assert.True(t, strings.HasSuffix(stderr.String(), "\n"))
	}
	var stdout, stderr bytes.Buffer
	fs := newFlags("run", &stderr)
	code, ok := parseFlags(fs, []string{"job.toml", "-h"}, &stdout)
	assert.False(t, ok)
	assert.Equal(t, exitOK, code)
	assert.Empty(t, stderr.String())
	assert.True(t, strings.HasPrefix(stdout.String(), "usage: troupe run "), stdout.String())
}

// FuzzParseFlags: any command line parses or is refused with exit 3 (or 0
// for -h), never a panic; the arguments are those of the command line, in
// order.
func FuzzParseFlags(f *testing.F) {
	f.Add("a\x00--out\x00d\x00-v")
	f.Add("--\x00-v\x00--out")
	f.Add("-out=x\x00-\x00--v=false\x00b")
	f.Add("a\x00--out")
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, "\x00")
		fs := newFlags("run", io.Discard)
		fs.String("out", "", "")
		fs.Bool("v", false, "")
		code, ok := parseFlags(fs, args, io.Discard)
		if !ok {
			if code != exitOK && code != exitInvalid {
				t.Fatalf("%q: code %d", args, code)
			}
			return
		}
		i := 0
		for _, a := range fs.Args() {
			for i < len(args) && args[i] != a {
				i++
			}
			if i == len(args) {
				t.Fatalf("%q: argument %q not in order in the command line (args %q)", args, a, fs.Args())
			}
			i++
		}
	})
}
