package sim

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPutFiles: files land in the board's tmp with their mode, and a link
// the board's processes made there cannot lead the writes out of the
// board's root; a path leaving tmp is refused.
func TestPutFiles(t *testing.T) {
	b, _ := newBoard(t, "put")
	require.NoError(t, b.PutFiles(map[string][]byte{"troupe/bin/x": []byte("#!/bin/sh\n"), "troupe/helpers.sum": []byte("s\n")}, 0o755))
	fi, err := os.Stat(filepath.Join(b.Root(), "tmp", "troupe", "bin", "x"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm())

	outside := t.TempDir()
	require.NoError(t, os.RemoveAll(filepath.Join(b.Root(), "tmp", "troupe")))
	require.NoError(t, os.Symlink(outside, filepath.Join(b.Root(), "tmp", "troupe")))
	assert.Error(t, b.PutFiles(map[string][]byte{"troupe/bin/x": []byte("escaped")}, 0o755))
	ents, err := os.ReadDir(outside)
	require.NoError(t, err)
	assert.Empty(t, ents, "nothing written outside the board")

	assert.Error(t, b.PutFiles(map[string][]byte{"../escaped": []byte("x")}, 0o644))
	assert.NoFileExists(t, filepath.Join(b.Root(), "escaped"))
}

// TestPutFilesFIFO: a FIFO the board's processes put where a file goes
// cannot block the harness on its open: it is replaced by the file.
func TestPutFilesFIFO(t *testing.T) {
	b, _ := newBoard(t, "put-fifo")
	require.NoError(t, b.PutFiles(map[string][]byte{"troupe/run.sh": []byte("true\n")}, 0o755))
	p := filepath.Join(b.Root(), "tmp", "troupe", "run.sh")
	require.NoError(t, os.Remove(p))
	require.NoError(t, syscall.Mkfifo(p, 0o666))
	done := make(chan error, 1)
	go func() { done <- b.PutFiles(map[string][]byte{"troupe/run.sh": []byte("x")}, 0o755) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(waitTO):
		t.Fatal("PutFiles blocked on a FIFO")
	}
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "x", string(data))
}

// TestPutFilesLinksSame: small files (at most maxLinked bytes) of one put
// with the same contents in the same directory are one file under several
// names (hard links); in another directory, or larger, they are not. A
// later put under one of the names leaves the others as they were.
func TestPutFilesLinksSame(t *testing.T) {
	b, _ := newBoard(t, "put-same")
	same := []byte("#!/bin/sh\n. troupe-calls\n")
	big := bytes.Repeat([]byte("g"), maxLinked+1)
	require.NoError(t, b.PutFiles(map[string][]byte{"t/bin/a": same, "t/bin/b": same, "t/bin/c": []byte("other"), "t/x/a": same,
		"t/bin/g1": big, "t/bin/g2": big}, 0o755))
	stat := func(name string) os.FileInfo {
		t.Helper()
		fi, err := os.Stat(filepath.Join(b.Root(), "tmp", name))
		require.NoError(t, err)
		return fi
	}
	assert.True(t, os.SameFile(stat("t/bin/a"), stat("t/bin/b")), "same contents, same directory: one file")
	assert.False(t, os.SameFile(stat("t/bin/a"), stat("t/bin/c")))
	assert.False(t, os.SameFile(stat("t/bin/a"), stat("t/x/a")), "another directory: another file")
	assert.Equal(t, os.FileMode(0o755), stat("t/bin/b").Mode().Perm())
	assert.False(t, os.SameFile(stat("t/bin/g1"), stat("t/bin/g2")), "larger than maxLinked: not compared")

	require.NoError(t, b.PutFiles(map[string][]byte{"t/bin/a": []byte("new")}, 0o644))
	got, err := os.ReadFile(filepath.Join(b.Root(), "tmp", "t/bin/b"))
	require.NoError(t, err)
	assert.Equal(t, string(same), string(got), "b kept its contents")
	got, err = os.ReadFile(filepath.Join(b.Root(), "tmp", "t/bin/a"))
	require.NoError(t, err)
	assert.Equal(t, "new", string(got))
}

// TestPutFilesRemakesTmp: a tmp the board's processes removed, or
// replaced with a symlink, is made a directory of the board's again
// before files are put in it: nothing lands where the link points.
func TestPutFilesRemakesTmp(t *testing.T) {
	b, _ := newBoard(t, "put-tmp")
	tmp := filepath.Join(b.Root(), "tmp")
	require.NoError(t, os.RemoveAll(tmp))
	require.NoError(t, b.PutFiles(map[string][]byte{"a": []byte("1")}, 0o644))
	assert.FileExists(t, filepath.Join(tmp, "a"))

	outside := t.TempDir()
	require.NoError(t, os.RemoveAll(tmp))
	require.NoError(t, os.Symlink(outside, tmp))
	require.NoError(t, b.PutFiles(map[string][]byte{"b": []byte("2")}, 0o644))
	fi, err := os.Lstat(tmp)
	require.NoError(t, err)
	assert.True(t, fi.IsDir(), "tmp is a directory again")
	assert.FileExists(t, filepath.Join(tmp, "b"))
	ents, err := os.ReadDir(outside)
	require.NoError(t, err)
	assert.Empty(t, ents, "nothing written where the link pointed")
}
