package actors

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

// TestProxyLinesInOrder: console batches that arrive out of order are
// logged in their order, with their original times; a repeated or stale
// one is dropped.
func TestProxyLinesInOrder(t *testing.T) {
	dir := t.TempDir()
	book, err := logbook.New(dir, nil)
	require.NoError(t, err)
	p := &boardProxy{cfg: Config{Book: book}, node: "n-0", next: 1, held: map[uint64]*workerpb.ConsoleLines{}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := func(seq uint64, texts ...string) *workerpb.ConsoleLines {
		b := &workerpb.ConsoleLines{Seq: seq, Raw: []byte(strings.Join(texts, "\n") + "\n")}
		for i, s := range texts {
			b.Lines = append(b.Lines, &workerpb.Line{TimeUnixNano: t0.Add(time.Duration(seq*10+uint64(i)) * time.Second).UnixNano(), Text: s})
		}
		return b
	}
	p.lines(batch(3, "five", "six"))
	p.lines(batch(2, "three", "four"))
	p.lines(batch(1, "one", "two"))
	p.lines(batch(2, "three", "four")) // again: already logged
	p.lines(batch(4, "seven"))
	require.NoError(t, book.Close())
	group, err := os.ReadFile(filepath.Join(dir, "logs", logbook.GroupFile))
	require.NoError(t, err)
	var texts []string
	for _, l := range strings.Split(strings.TrimSpace(string(group)), "\n") {
		f := strings.SplitN(l, " ", 3)
		texts = append(texts, f[2])
	}
	assert.Equal(t, []string{"one", "two", "three", "four", "five", "six", "seven"}, texts)
	assert.True(t, strings.HasPrefix(string(group), t0.Add(10*time.Second).Format(time.RFC3339Nano)+" n-0 one\n"), "original time: %s", group)
	raw, err := os.ReadFile(filepath.Join(dir, "logs", "n-0.log"))
	require.NoError(t, err)
	assert.Equal(t, "one\ntwo\nthree\nfour\nfive\nsix\nseven\n", string(raw))
}

// TestBatchLogBound: a board's console beyond twice the log limit is not
// sent; each batch takes what came since the last, numbered from 1.
func TestBatchLogBound(t *testing.T) {
	l := &batchLog{clock: RealClock{}, limit: 10}
	l.Line("n", "abcd")
	_, _ = l.Raw("n").Write([]byte("xyz"))
	l.Line("n", "this one is past the limit")
	b := l.take("w1", "s")
	require.NotNil(t, b)
	assert.Equal(t, uint64(1), b.Seq)
	require.Len(t, b.Lines, 1)
	assert.Equal(t, "abcd", b.Lines[0].Text)
	assert.Equal(t, "xyz", string(b.Raw))
	assert.Nil(t, l.take("w1", "s"), "nothing new")
	l.Line("n", "more")
	assert.Nil(t, l.take("w1", "s"), "past the limit: dropped")
}
