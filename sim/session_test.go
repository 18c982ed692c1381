package sim

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/console"
)

// TestSessions: a session is a shell of its own on the board (as an ssh
// login): it sees the files of the console's shell, has a $TMPDIR of its
// own, fails on a board that is off, ends when closed and at power off.
func TestSessions(t *testing.T) {
	b, c := newBoard(t, "sess")
	testSessions(t, b, c, "/tmp")
}

// TestSessionsUnsandboxed: the same on a board without a sandboxed shell
// (a lab's sandbox = "none").
func TestSessionsUnsandboxed(t *testing.T) {
	b, err := New(Options{Name: "sess", Dir: filepath.Join(t.TempDir(), "sess"), Unsandboxed: true})
	require.NoError(t, err)
	c := console.New(b.Console(), console.Options{})
	t.Cleanup(func() {
		assert.NoError(t, b.Close())
		_ = c.Close()
	})
	testSessions(t, b, c, filepath.Join(b.Root(), "tmp"))
}

func testSessions(t *testing.T, b *Board, c *console.Console, tmp string) {
	_, err := b.OpenSession(ctxT(t, waitTO), "")
	require.ErrorIs(t, err, ErrOff)

	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	run(t, b, c, `echo from-the-console > "$HOME/f"`)

	open := func() (io.ReadWriteCloser, *console.Console) {
		rw, err := b.OpenSession(ctxT(t, waitTO), "192.0.2.1")
		require.NoError(t, err)
		sc := console.New(rw, console.Options{})
		t.Cleanup(func() { _ = sc.Close() })
		expect(t, sc, prompt("sess"))
		return rw, sc
	}
	rw1, s1 := open()
	_, s2 := open()
	// A session's terminal echoes what is typed, as an ssh login's does:
	// only the console's shell has echo off.
	require.NoError(t, s1.Send("echo typed-$((6*7))\n"))
	m := expect(t, s1, `(?s)^(.*?)typed-42\n`)
	assert.Contains(t, m[1], "echo typed-$((6*7))", "the session echoes")
	expect(t, s1, prompt("sess"))
	assert.Equal(t, "from-the-console\n", run(t, b, s1, `cat "$HOME/f"`))
	// Shells and what they start yield the CPU to the harness (ShellNice).
	assert.Equal(t, "10\n", run(t, b, c, "nice"))
	assert.Equal(t, "10\n", run(t, b, s1, "nice"))
	tmp1, tmp2 := run(t, b, s1, `echo "$TMPDIR"`), run(t, b, s2, `echo "$TMPDIR"`)
	assert.Equal(t, tmp+"/session-1\n", tmp1)
	assert.Equal(t, tmp+"/session-2\n", tmp2)
	assert.Equal(t, tmp+"\n", run(t, b, c, `echo "$TMPDIR"`))
	assert.Equal(t, tmp+"/session-1/lava_multi_node_cache.txt\n", run(t, b, s1, `echo "$LAVA_MULTI_NODE_CACHE"`))

	// Closing a session ends its shell; the others go on.
	require.NoError(t, rw1.Close())
	assert.Equal(t, "still\n", run(t, b, s2, `echo still`))
	assert.Equal(t, "here\n", run(t, b, c, `echo here`))

	// Power off ends every session.
	require.NoError(t, b.Off(ctxT(t, waitTO)))
	ctx := ctxT(t, waitTO)
	_, err = s2.Expect(ctx, regexp.MustCompile(`never printed`))
	require.Error(t, err)
	assert.NoError(t, ctx.Err(), "the session's console ends at power off, before the deadline: %v", err)
}

// TestRefusedSessionLeavesNoDescriptor: a session that no shell can take
// (the board's shells hang) leaves none of the descriptors its sandbox
// was given (pipe, environment) open in this process.
func TestRefusedSessionLeavesNoDescriptor(t *testing.T) {
	b, c := newBoardOn(t, "nofds", Options{})
	run(t, b, c, "true")
	b.ShellHang()
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		require.NoError(t, err)
		return len(ents)
	}
	before := fds()
	for range 10 {
		_, err := b.OpenSession(ctxT(t, waitTO), "")
		require.Error(t, err)
	}
	assert.Less(t, fds()-before, 5, "refused sessions left descriptors open")
}
