package logbook

import (
	"fmt"
	"os"
	"path/filepath"
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

var epoch = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// tickClock returns a clock that advances by 1ns per call. Book calls it
// under its lock, so it needs none of its own.
func tickClock() func() time.Time {
	t := epoch
	return func() time.Time {
		t = t.Add(time.Nanosecond)
		return t
	}
}

func newBook(t *testing.T, now func() time.Time) (*Book, string) {
	t.Helper()
	dir := t.TempDir()
	b, err := New(dir, now)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b, dir
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	if len(data) == 0 {
		return nil
	}
	require.True(t, strings.HasSuffix(string(data), "\n"), "file ends with a complete line")
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func groupLog(dir string) string { return filepath.Join(dir, "logs", GroupFile) }

func TestNew(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "job")
	b, err := New(dir, nil)
	require.NoError(t, err)
	defer b.Close()
	assert.DirExists(t, filepath.Join(dir, "logs"))
	assert.FileExists(t, groupLog(dir))

	before := time.Now()
	e := b.Line("n", "x")
	assert.WithinRange(t, e.Time, before.Add(-time.Second), time.Now().Add(time.Second), "nil now uses time.Now")
	assert.Equal(t, time.UTC, e.Time.Location())
}

func TestNewError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, err := New(file, nil)
	require.ErrorContains(t, err, "logs dir")
}

func TestLine(t *testing.T) {
	zone := time.FixedZone("X", 3600)
	b, dir := newBook(t, func() time.Time { return time.Date(2024, 1, 2, 4, 4, 5, 600, zone) })

	e1 := b.Line("server-0", "booting\tkernel")
	e2 := b.Line("client-1", "login:")
	assert.Equal(t, Entry{Seq: 1, Time: time.Date(2024, 1, 2, 3, 4, 5, 600, time.UTC), Node: "server-0", Text: "booting\tkernel"}, e1)
	assert.Equal(t, uint64(2), e2.Seq)
	require.NoError(t, b.Close(), "group.log is complete once the book is closed")
	assert.Equal(t, []string{
		"2024-01-02T03:04:05.0000006Z server-0 booting\tkernel",
		"2024-01-02T03:04:05.0000006Z client-1 login:",
	}, readLines(t, groupLog(dir)))
}

func TestLineTimeNeverGoesBackwards(t *testing.T) {
	times := []time.Time{epoch, epoch.Add(-time.Hour), epoch.Add(time.Second)}
	i := 0
	b, _ := newBook(t, func() time.Time { i++; return times[i-1] })
	assert.Equal(t, epoch, b.Line("n", "a").Time)
	assert.Equal(t, epoch, b.Line("n", "b").Time, "clock stepped back")
	assert.Equal(t, epoch.Add(time.Second), b.Line("n", "c").Time)
}

func TestLineEscapesControlChars(t *testing.T) {
	b, dir := newBook(t, tickClock())
	forged := "ok\n2024-05-06T07:08:09Z server-0 PASS\r\x1b[0m"
	e := b.Line("evil\nnode", forged)
	assert.Equal(t, `ok\x0a2024-05-06T07:08:09Z server-0 PASS\x0d\x1b[0m`, e.Text)
	assert.Equal(t, `evil\x0anode`, e.Node)
	require.NoError(t, b.Close())
	lines := readLines(t, groupLog(dir))
	require.Len(t, lines, 1, "a line can not be forged")
	assert.Equal(t, "2024-05-06T07:08:09.000000001Z "+e.Node+" "+e.Text, lines[0])
}

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain text", "plain text"},
		{"tab\tkept", "tab\tkept"},
		{"nl\n", `nl\x0a`},
		{"cr\r", `cr\x0d`},
		{"\x00\x1b\x7f", `\x00\x1b\x7f`},
		{"c1\u0085", `c1\u0085`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"héllo ✓", "héllo ✓"},
		{`back\slash`, `back\slash`},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Escape(tt.in), "%q", tt.in)
	}
}

func TestConcurrentLine(t *testing.T) {
	const writers, perWriter = 20, 200
	b, dir := newBook(t, tickClock())

	got := make([][]Entry, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				got[w] = append(got[w], b.Line(fmt.Sprintf("node-%d", w), fmt.Sprintf("line %d", i)))
			}
		})
	}
	wg.Wait()
	require.NoError(t, b.Close())

	// Seq i was given the i-th tick of the clock: seq order == time order.
	seen := map[uint64]bool{}
	for _, entries := range got {
		for i := 1; i < len(entries); i++ {
			assert.Greater(t, entries[i].Seq, entries[i-1].Seq)
		}
		for _, e := range entries {
			assert.Equal(t, epoch.Add(time.Duration(e.Seq)), e.Time)
			seen[e.Seq] = true
		}
	}
	assert.Len(t, seen, writers*perWriter, "no duplicate seq")

	// group.log holds every line, complete, in seq (and time) order.
	lines := readLines(t, groupLog(dir))
	require.Len(t, lines, writers*perWriter)
	next := map[string]int{}
	for i, line := range lines {
		parts := strings.SplitN(line, " ", 3)
		require.Len(t, parts, 3, line)
		ts, err := time.Parse(time.RFC3339Nano, parts[0])
		require.NoError(t, err)
		assert.Equal(t, epoch.Add(time.Duration(i+1)), ts, "line %d out of order", i)
		assert.Equal(t, fmt.Sprintf("line %d", next[parts[1]]), parts[2])
		next[parts[1]]++
	}
}

func TestRaw(t *testing.T) {
	b, dir := newBook(t, nil)
	logs := filepath.Join(dir, "logs")

	w := b.Raw("server-0")
	assert.NoFileExists(t, filepath.Join(logs, "server-0.log"), "created on first write")

	const nodes, chunks = 8, 100
	var wg sync.WaitGroup
	for n := range nodes {
		wg.Go(func() {
			w := b.Raw(fmt.Sprintf("client-%d", n))
			for i := range chunks {
				_, err := fmt.Fprintf(w, "chunk %d\r\n\x1b", i)
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()

	n, err := w.Write([]byte("raw\x00bytes\n"))
	require.NoError(t, err)
	assert.Equal(t, 10, n)
	_, err = b.Raw("server-0").Write([]byte("more"))
	require.NoError(t, err)

	data, err := os.ReadFile(filepath.Join(logs, "server-0.log"))
	require.NoError(t, err)
	assert.Equal(t, "raw\x00bytes\nmore", string(data))
	for n := range nodes {
		var want strings.Builder
		for i := range chunks {
			fmt.Fprintf(&want, "chunk %d\r\n\x1b", i)
		}
		data, err := os.ReadFile(filepath.Join(logs, fmt.Sprintf("client-%d.log", n)))
		require.NoError(t, err)
		assert.Equal(t, want.String(), string(data))
	}
}

func TestRawInvalidNode(t *testing.T) {
	b, dir := newBook(t, nil)
	for _, node := range []string{"", ".", "..", "../escape", "a/b", `a\b`, "group", "nul\x00"} {
		_, err := b.Raw(node).Write([]byte("x"))
		assert.Error(t, err, "%q", node)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "logs"))
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, GroupFile, entries[0].Name())
	assert.NoFileExists(t, filepath.Join(dir, "escape.log"))
}

func seqs(entries []Entry) []uint64 {
	var s []uint64
	for _, e := range entries {
		s = append(s, e.Seq)
	}
	return s
}

func receive(t *testing.T, ch <-chan Entry, n int) []Entry {
	t.Helper()
	var got []Entry
	for range n {
		select {
		case e, ok := <-ch:
			require.True(t, ok, "channel closed early")
			got = append(got, e)
		case <-time.After(5 * time.Second):
			require.FailNow(t, "timed out waiting for entry")
		}
	}
	return got
}

func TestSubscribeReplayAndLive(t *testing.T) {
	tests := []struct {
		name   string
		from   uint64
		replay []uint64
	}{
		{"all", 0, []uint64{1, 2, 3, 4, 5}},
		{"from first", 1, []uint64{1, 2, 3, 4, 5}},
		{"from middle", 3, []uint64{3, 4, 5}},
		{"from last", 5, []uint64{5}},
		{"from next", 6, nil},
		{"from future", 1 << 63, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := newBook(t, tickClock())
			for i := range 5 {
				b.Line("n", fmt.Sprint(i))
			}
			entries, ch, cancel := b.Subscribe(tt.from, 10)
			defer cancel()
			assert.Equal(t, tt.replay, seqs(entries))
			assert.NotNil(t, entries)
			b.Line("n", "live 1")
			b.Line("n", "live 2")
			live := receive(t, ch, 2)
			assert.Equal(t, []uint64{6, 7}, seqs(live))
			assert.Equal(t, "live 2", live[1].Text)
		})
	}
}

func TestSubscribeRetainsLast(t *testing.T) {
	b, _ := newBook(t, tickClock())
	for range 2*Retain + 10 {
		b.Line("n", "x")
	}
	entries, _, cancel := b.Subscribe(0, 1)
	defer cancel()
	require.Len(t, entries, Retain)
	assert.Equal(t, uint64(Retain+11), entries[0].Seq)
	assert.Equal(t, uint64(2*Retain+10), entries[Retain-1].Seq)

	entries, _, cancel2 := b.Subscribe(2*Retain+5, 1)
	defer cancel2()
	assert.Equal(t, []uint64{2*Retain + 5, 2*Retain + 6, 2*Retain + 7, 2*Retain + 8, 2*Retain + 9, 2*Retain + 10}, seqs(entries))
}

func TestSubscribeWhileLoggingNoGapNoDuplicate(t *testing.T) {
	const total = 3000
	b, _ := newBook(t, nil)
	var wg sync.WaitGroup
	started := make(chan struct{})
	wg.Go(func() {
		for i := range total {
			if i == total/3 {
				close(started)
			}
			b.Line("n", "x")
		}
	})
	<-started
	entries, ch, cancel := b.Subscribe(100, total)
	defer cancel()
	wg.Wait()
	all := append(entries, receive(t, ch, total-100+1-len(entries))...)
	for i, e := range all {
		require.Equal(t, uint64(100+i), e.Seq)
	}
}

func TestSlowSubscriberDropped(t *testing.T) {
	b, _ := newBook(t, tickClock())
	_, slow, cancelSlow := b.Subscribe(0, 2)
	defer cancelSlow()
	_, fast, cancelFast := b.Subscribe(0, 100)
	defer cancelFast()

	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10 {
			b.Line("n", "x")
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		require.FailNow(t, "Line blocked on a slow subscriber")
	}

	assert.Equal(t, []uint64{1, 2}, seqs(receive(t, slow, 2)))
	_, ok := <-slow
	assert.False(t, ok, "slow subscriber's channel is closed")
	assert.Len(t, receive(t, fast, 10), 10, "fast subscriber keeps every entry")
	cancelSlow() // cancel after drop is harmless
}

func TestSubscribeBufferAtLeastOne(t *testing.T) {
	for _, buf := range []int{0, -5} {
		b, _ := newBook(t, tickClock())
		_, ch, cancel := b.Subscribe(0, buf)
		b.Line("n", "x")
		assert.Equal(t, []uint64{1}, seqs(receive(t, ch, 1)), "buf %d", buf)
		cancel()
	}
}

func TestCancelIdempotent(t *testing.T) {
	b, _ := newBook(t, tickClock())
	_, ch, cancel := b.Subscribe(0, 10)
	cancel()
	cancel()
	_, ok := <-ch
	assert.False(t, ok)
	b.Line("n", "after cancel") // must not send on the closed channel
	require.NoError(t, b.Close())
	cancel()
}

func TestClose(t *testing.T) {
	b, dir := newBook(t, tickClock())
	b.Line("n", "before")
	w := b.Raw("server-0")
	_, err := w.Write([]byte("before"))
	require.NoError(t, err)
	_, ch, cancel := b.Subscribe(0, 10)
	defer cancel()

	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "idempotent")

	_, ok := <-ch
	assert.False(t, ok, "subscriber channel closed")

	assert.Equal(t, Entry{}, b.Line("n", "after"))
	n, err := w.Write([]byte("after"))
	assert.NoError(t, err)
	assert.Equal(t, 5, n)
	_, err = b.Raw("client-0").Write([]byte("after"))
	assert.NoError(t, err)

	assert.Len(t, readLines(t, groupLog(dir)), 1)
	data, err := os.ReadFile(filepath.Join(dir, "logs", "server-0.log"))
	require.NoError(t, err)
	assert.Equal(t, "before", string(data))
	assert.NoFileExists(t, filepath.Join(dir, "logs", "client-0.log"))

	entries, ch2, cancel2 := b.Subscribe(0, 1)
	cancel2()
	assert.Len(t, entries, 1, "retained entries still readable")
	_, ok = <-ch2
	assert.False(t, ok, "subscribe after close gives a closed channel")
}

// TestLogLimitCutsANodeWithOneMarker: a node printing without end (yes)
// keeps at most the limit in its raw file and its merged lines, marked by
// one Dropped line; writes go on succeeding and other nodes are not cut.
func TestLogLimitCutsANodeWithOneMarker(t *testing.T) {
	const limit = 1000
	b, dir := newBook(t, tickClock())
	b.SetLimit(limit)
	_, ch, cancel := b.Subscribe(1, 2000)
	defer cancel()
	raw := b.Raw("loud")
	chunk := []byte(strings.Repeat("y\n", 150))
	for range 100 { // 30 000 bytes
		n, err := raw.Write(chunk)
		require.NoError(t, err)
		require.Equal(t, len(chunk), n)
		for range 150 {
			b.Line("loud", "y")
		}
	}
	b.Line("quiet", "still here")
	_, err := b.Raw("quiet").Write([]byte("still here\n"))
	require.NoError(t, err)
	require.NoError(t, b.Close())

	marker := Dropped(limit)
	data, err := os.ReadFile(filepath.Join(dir, "logs", "loud.log"))
	require.NoError(t, err)
	assert.Equal(t, limit+len(marker)+2, len(data))
	assert.Equal(t, 1, strings.Count(string(data), marker))
	assert.True(t, strings.HasSuffix(string(data), marker+"\n"))

	group, err := os.ReadFile(filepath.Join(dir, "logs", GroupFile))
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(group), marker))
	var keptBytes, kept int
	for line := range strings.Lines(string(group)) {
		if strings.HasSuffix(line, " loud y\n") {
			keptBytes += len(line)
			kept++
		}
	}
	assert.LessOrEqual(t, keptBytes, limit, "lines up to the limit are kept")
	assert.Greater(t, keptBytes, limit-64, "lines up to the limit are kept")
	assert.Contains(t, string(group), " quiet still here\n")
	quiet, err := os.ReadFile(filepath.Join(dir, "logs", "quiet.log"))
	require.NoError(t, err)
	assert.Equal(t, "still here\n", string(quiet))

	var live, markers int
	for e := range ch {
		live++
		if e.Text == marker {
			markers++
		}
	}
	assert.Equal(t, kept+2, live, "subscribers get the kept lines, the marker and the other node's line")
	assert.Equal(t, 1, markers)
}

func TestDefaultLogLimit(t *testing.T) {
	b, dir := newBook(t, nil)
	raw := b.Raw("n")
	chunk := make([]byte, 1<<20)
	for range 17 {
		_, err := raw.Write(chunk)
		require.NoError(t, err)
	}
	require.NoError(t, b.Close())
	fi, err := os.Stat(filepath.Join(dir, "logs", "n.log"))
	require.NoError(t, err)
	assert.Equal(t, int64(DefaultLimit+len(Dropped(DefaultLimit))+2), fi.Size())
}
