package logbook

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gateWriter holds every Write of group.log until open is closed, and
// tells entered when one starts: a disk that stalls.
type gateWriter struct {
	io.WriteCloser
	entered chan struct{}
	open    chan struct{}
}

func gate(b *Book) *gateWriter {
	g := &gateWriter{WriteCloser: b.group, entered: make(chan struct{}, 1), open: make(chan struct{})}
	b.group = g
	return g
}

func (g *gateWriter) Write(p []byte) (int, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.open
	return g.WriteCloser.Write(p)
}

// waitEntered waits until the book's writer is inside a Write.
func (g *gateWriter) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the group log's writer did not start")
	}
}

// checkGroupLog asserts that group.log holds exactly the entries, in Seq
// order: nothing lost, nothing reordered.
func checkGroupLog(t *testing.T, dir string, entries []Entry) {
	t.Helper()
	byseq := make([]Entry, len(entries))
	for _, e := range entries {
		require.True(t, e.Seq >= 1 && int(e.Seq) <= len(entries), "seq %d", e.Seq)
		byseq[e.Seq-1] = e
	}
	lines := readLines(t, groupLog(dir))
	require.Len(t, lines, len(entries))
	for i, l := range lines {
		e := byseq[i]
		assert.Equal(t, e.Time.Format(time.RFC3339Nano)+" "+e.Node+" "+e.Text, l, "line %d", i+1)
	}
}

// TestLineDoesNotWaitForTheGroupLog: while group.log's write is stalled,
// other writers' lines are still logged and delivered (the write is not
// done under the book's lock); once it goes on, the file holds every line
// in Seq order.
func TestLineDoesNotWaitForTheGroupLog(t *testing.T) {
	b, dir := newBook(t, tickClock())
	g := gate(b)
	all := []Entry{b.Line("n-0", "first")}
	g.waitEntered(t)

	_, live, cancel := b.Subscribe(2, 1000)
	defer cancel()
	const writers, perWriter = 8, 50
	got := make([][]Entry, writers)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					got[w] = append(got[w], b.Line(fmt.Sprintf("n-%d", w), fmt.Sprintf("line %d", i)))
				}
			})
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		close(g.open)
		t.Fatal("Line waited for the stalled group log")
	}
	for i := range writers * perWriter {
		select {
		case e := <-live:
			assert.Equal(t, uint64(i+2), e.Seq)
		case <-time.After(10 * time.Second):
			t.Fatalf("entry %d not delivered while group.log stalls", i+2)
		}
	}
	close(g.open)
	require.NoError(t, b.Close())
	for _, es := range got {
		all = append(all, es...)
	}
	checkGroupLog(t, dir, all)
}

// TestSubscribeReplaysWhatTheFileLacks: entries not yet in group.log are
// kept for Subscribe even past Retain, so that a subscriber reading the
// file for older ones (the server's live log) meets no gap.
func TestSubscribeReplaysWhatTheFileLacks(t *testing.T) {
	b, dir := newBook(t, tickClock())
	g := gate(b)
	var all []Entry
	all = append(all, b.Line("n", "x0"))
	g.waitEntered(t)
	for i := range 2*Retain + 10 {
		all = append(all, b.Line("n", fmt.Sprintf("x%d", i+1)))
	}
	entries, _, cancel := b.Subscribe(0, 1)
	require.NotEmpty(t, entries)
	assert.Equal(t, uint64(1), entries[0].Seq, "nothing is in the file yet: everything is replayed")
	assert.Equal(t, uint64(2*Retain+11), entries[len(entries)-1].Seq)
	cancel()

	close(g.open)
	require.NoError(t, b.Close())
	checkGroupLog(t, dir, all)

	entries, _, cancel = b.Subscribe(0, 1)
	cancel()
	assert.Len(t, entries, Retain, "all written: the latest Retain")
}

// TestLineWaitsForAStuckWriter: the lines queued for group.log are
// bounded; past the bound Line waits for the writer.
func TestLineWaitsForAStuckWriter(t *testing.T) {
	b, dir := newBook(t, tickClock())
	b.maxPending = 100
	g := gate(b)
	all := []Entry{b.Line("n", "first")}
	g.waitEntered(t)
	all = append(all, b.Line("n", "short")) // under the bound
	returned := make(chan Entry)
	go func() { returned <- b.Line("n", strings.Repeat("y", 200)) }()
	select {
	case <-returned:
		t.Fatal("Line returned with the queue past its bound and the writer stuck")
	case <-time.After(200 * time.Millisecond): // still waiting, as it should
	}
	close(g.open)
	select {
	case e := <-returned:
		all = append(all, e)
	case <-time.After(10 * time.Second):
		t.Fatal("Line still waits after the writer went on")
	}
	require.NoError(t, b.Close())
	checkGroupLog(t, dir, all)
}

// TestCloseWaitsForTheWriter: Close returns once every line is in
// group.log, and reports a failed write.
func TestCloseWaitsForTheWriter(t *testing.T) {
	b, dir := newBook(t, tickClock())
	g := gate(b)
	all := []Entry{b.Line("n", "a")}
	g.waitEntered(t)
	all = append(all, b.Line("n", "b"), b.Line("n", "c"))
	closed := make(chan error)
	go func() { closed <- b.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned with lines not written")
	case <-time.After(200 * time.Millisecond):
	}
	close(g.open)
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	checkGroupLog(t, dir, all)
}

// failWriter fails every write.
type failWriter struct{ io.WriteCloser }

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrShortWrite }

func TestCloseReportsAWriteError(t *testing.T) {
	b, _ := newBook(t, tickClock())
	b.group = failWriter{b.group}
	b.Line("n", "a")
	assert.ErrorIs(t, b.Close(), io.ErrShortWrite)
}
