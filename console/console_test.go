package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitTO = 5 * time.Second

// fakeRWC is fed by the test through feed; writes are recorded, at most
// chunk bytes per Write call (0 = unlimited) to exercise short writes.
type fakeRWC struct {
	r     *io.PipeReader
	w     *io.PipeWriter
	chunk int

	mu      sync.Mutex
	written bytes.Buffer
}

func newFake() *fakeRWC {
	r, w := io.Pipe()
	return &fakeRWC{r: r, w: w}
}

func (f *fakeRWC) Read(p []byte) (int, error) { return f.r.Read(p) }

func (f *fakeRWC) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.chunk > 0 && len(p) > f.chunk {
		p = p[:f.chunk]
	}
	return f.written.Write(p)
}

func (f *fakeRWC) Close() error { return f.r.Close() }

func (f *fakeRWC) feed(t *testing.T, chunks ...string) {
	t.Helper()
	for _, c := range chunks {
		_, err := f.w.Write([]byte(c))
		require.NoError(t, err)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newConsole(t *testing.T, o Options) (*Console, *fakeRWC) {
	t.Helper()
	f := newFake()
	c := New(f, o)
	t.Cleanup(func() { _ = c.Close() })
	return c, f
}

func TestSplitReads(t *testing.T) {
	c, f := newConsole(t, Options{})
	go f.feed(t, "hel", "lo wo", "rld\n")
	m, err := c.Expect(ctxT(t, waitTO), regexp.MustCompile(`hello (w\w+)\n`))
	require.NoError(t, err)
	assert.Equal(t, []string{"hello world\n", "world"}, m)
}

func TestANSIStrippedAcrossReads(t *testing.T) {
	var raw bytes.Buffer
	var mu sync.Mutex
	var lines []string
	c, f := newConsole(t, Options{
		Raw:    &raw, // only touched by the reader goroutine until Close
		OnLine: func(l string) { mu.Lock(); lines = append(lines, l); mu.Unlock() },
	})
	in := []string{"\x1b[3", "1mRED\x1b[0m \x1b]0;ti", "tle\x07ok\x1b", "(B \x1b]8;;x\x1b", "\\link\x1b7 done\r", "\nEND\r\n"}
	go f.feed(t, in...)
	_, err := c.Expect(ctxT(t, waitTO), regexp.MustCompile(`END\n`))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	assert.Equal(t, strings.Join(in, ""), raw.String())
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"RED ok link done", "END"}, lines)
}

func TestCRLFHandling(t *testing.T) {
	c, f := newConsole(t, Options{})
	go f.feed(t, "one\r", "\ntwo\r\r\nthree\r\n")
	m, err := c.Expect(ctxT(t, waitTO), regexp.MustCompile(`one\ntwo\n(\w+)\n`))
	require.NoError(t, err)
	assert.Equal(t, "three", m[1])
}

func TestExpectTimeoutMessage(t *testing.T) {
	c, f := newConsole(t, Options{})
	// One write, so one read: everything is buffered once HEAD matched.
	go f.feed(t, "HEAD"+strings.Repeat("y", 300)+"END-OF-TEXT")
	_, err := c.Expect(ctxT(t, waitTO), regexp.MustCompile(`HEAD`))
	require.NoError(t, err)
	_, err = c.Expect(ctxT(t, 50*time.Millisecond), regexp.MustCompile(`never-(here)`))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	msg := err.Error()
	assert.Contains(t, msg, `never-(here)`)
	assert.Contains(t, msg, strings.Repeat("y", 150)+"END-OF-TEXT")
	assert.NotContains(t, msg, strings.Repeat("y", 200))
	assert.NotContains(t, msg, "HEAD")
}

func TestExpectAfterClose(t *testing.T) {
	c, f := newConsole(t, Options{})
	go f.feed(t, "leftover MARK\n")
	_, err := c.Expect(ctxT(t, waitTO), regexp.MustCompile(`leftover`))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close()) // idempotent

	// Already buffered text still matches.
	_, err = c.Expect(ctxT(t, waitTO), regexp.MustCompile(`MARK`))
	require.NoError(t, err)
	_, err = c.Expect(ctxT(t, waitTO), regexp.MustCompile(`more`))
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, c.Send("x"), ErrClosed)
}

func TestExpectAfterReadError(t *testing.T) {
	c, f := newConsole(t, Options{})
	boom := errors.New("serial cable unplugged")
	go func() {
		f.feed(t, "partial")
		_ = f.w.CloseWithError(boom)
	}()
	_, err := c.Expect(ctxT(t, waitTO), regexp.MustCompile(`never`))
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "partial")
	// What was being waited for is internal: not in the message.
	assert.Equal(t, `serial cable unplugged; unmatched output: "partial"`, err.Error())
}

func TestExpectAfterEOF(t *testing.T) {
	c, f := newConsole(t, Options{})
	require.NoError(t, f.w.Close())
	_, err := c.Expect(ctxT(t, waitTO), regexp.MustCompile(`never`))
	require.ErrorIs(t, err, ErrClosed)
}

func TestConsumption(t *testing.T) {
	c, f := newConsole(t, Options{})
	re := regexp.MustCompile(`MARK(\d)`)
	go f.feed(t, "MARK1 foo\n")
	m, err := c.Expect(ctxT(t, waitTO), re)
	require.NoError(t, err)
	assert.Equal(t, "1", m[1])
	_, err = c.Expect(ctxT(t, 50*time.Millisecond), re)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), " foo") // the unmatched remainder

	go f.feed(t, "MARK2\n")
	m, err = c.Expect(ctxT(t, waitTO), re)
	require.NoError(t, err)
	assert.Equal(t, "2", m[1])
}

func TestDiscard(t *testing.T) {
	c, f := newConsole(t, Options{})
	go f.feed(t, "OLD-MARK\n") // one write, so one read: all of it is buffered at once
	_, err := c.Expect(ctxT(t, waitTO), regexp.MustCompile(`OLD`))
	require.NoError(t, err)
	c.Discard()
	_, err = c.Expect(ctxT(t, 30*time.Millisecond), regexp.MustCompile(`MARK`))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	go f.feed(t, "NEW-MARK\n")
	_, err = c.Expect(ctxT(t, waitTO), regexp.MustCompile(`(\w+)-MARK`))
	require.NoError(t, err)
}

func TestOnLineBeforeExpect(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	c, f := newConsole(t, Options{OnLine: func(l string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, l)
	}})
	var in strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&in, "line %d\r\n", i)
	}
	in.WriteString("DONE\r\n")
	go f.feed(t, in.String())
	_, err := c.Expect(ctxT(t, waitTO), regexp.MustCompile(`DONE`))
	require.NoError(t, err)
	mu.Lock()
	got := append([]string(nil), lines...)
	mu.Unlock()
	require.GreaterOrEqual(t, len(got), 1000)
	for i := range 1000 {
		require.Equal(t, fmt.Sprintf("line %d", i), got[i])
	}
}

func TestPartialLineOnClose(t *testing.T) {
	lines := make(chan string, 10)
	c, f := newConsole(t, Options{OnLine: func(l string) { lines <- l }})
	go f.feed(t, "full\nprompt# ")
	_, err := c.Expect(ctxT(t, waitTO), regexp.MustCompile(`# `))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	close(lines)
	var got []string
	for l := range lines {
		got = append(got, l)
	}
	assert.Equal(t, []string{"full", "prompt# "}, got)
}

func TestBoundedBuffer(t *testing.T) {
	c, f := newConsole(t, Options{})
	big := strings.Repeat("0123456789abcdef", 200<<10/16)
	go f.feed(t, big, "END")
	_, err := c.Expect(ctxT(t, waitTO), regexp.MustCompile(`f(END)`))
	require.NoError(t, err)
	// Still feeding when the test ends and closes the console: the
	// write's error then is expected.
	go func() { _, _ = f.w.Write([]byte(big)) }()
	_, err = c.Expect(ctxT(t, 200*time.Millisecond), regexp.MustCompile(`never`))
	require.Error(t, err)
	c.mu.Lock()
	n := len(c.buf)
	c.mu.Unlock()
	assert.LessOrEqual(t, n, maxBuffer)
	assert.Greater(t, n, 0)
}

func TestConcurrentSend(t *testing.T) {
	c, f := newConsole(t, Options{})
	f.chunk = 3 // force many short writes per Send
	const workers, per = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*per)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				errs <- c.Send(fmt.Sprintf("msg-%d-%d\n", w, i))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	f.mu.Lock()
	out := f.written.String()
	f.mu.Unlock()
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, got, workers*per)
	seen := map[string]bool{}
	for _, l := range got {
		require.Regexp(t, `^msg-\d+-\d+$`, l)
		seen[l] = true
	}
	assert.Len(t, seen, workers*per)
}

func TestStripANSI(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                        "plain",
		"a\r\nb":                       "a\nb",
		"\x1b[1;31mred\x1b[0m":         "red",
		"\x1b]0;title\x07x":            "x",
		"\x1b]0;title\x1b\\x":          "x",
		"\x1b(Bx\x1b=y":                "xy",
		"\x1b[?2004hroot# \x1b[?2004l": "root# ",
		"\x1bPdcs\x1b\\z":              "z",
		"\x1b\x1b[Kz":                  "z",
		"trailing\x1b":                 "trailing",
		"\x1b[12\x00ab":                "\x00ab",
	} {
		assert.Equal(t, want, StripANSI(in), "input %q", in)
	}
}

func FuzzStripANSI(f *testing.F) {
	for _, s := range []string{"", "a\r\nb", "\x1b[31mx\x1b[0m", "\x1b]0;t\x07", "\x1b]x\x1b\\", "\x1b(B", "\x1b\x1b\x1b", "\xff\xfe\x1b[\x9b"} {
		f.Add([]byte(s), 1)
	}
	f.Fuzz(func(t *testing.T, in []byte, split int) {
		var whole stripper
		out := whole.strip(nil, in)
		if bytes.IndexByte(out, 0x1b) >= 0 || bytes.IndexByte(out, '\r') >= 0 {
			t.Fatalf("output %q of %q contains ESC or CR", out, in)
		}
		if len(in) > 0 {
			split := int(uint(split) % uint(len(in)+1))
			var parts stripper
			got := parts.strip(nil, in[:split])
			got = parts.strip(got, in[split:])
			if !bytes.Equal(out, got) {
				t.Fatalf("split at %d changed output: %q vs %q", split, got, out)
			}
		}
	})
}
