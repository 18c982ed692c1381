package sim

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/troupe-lab/troupe/console"
)

// boardIn opens a board named name in the work directory work (as a lab's
// boards are: work/<name>), closed at the end of the test.
func boardIn(t *testing.T, work, name string) *Board {
	t.Helper()
	b, err := New(Options{Name: name, Dir: filepath.Join(work, name)})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, b.Close()) })
	return b
}

func statIn(t *testing.T, b *Board, name string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(filepath.Join(b.Root(), "tmp", name))
	require.NoError(t, err)
	return fi
}

func sharedCopies(t *testing.T, work string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(work, sharedName))
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestPutFilesShared: with a root harness and sandboxed boards, a content
// put on the boards of one work directory from its second put on is one
// read-only inode of the harness's (a hard link on each board); a content
// put once (a node's environment) stays the board's own and is never
// kept beside the boards; the copies go once no board holds them. With
// any other harness, or an unsandboxed board, every file is the board's own.
func TestPutFilesShared(t *testing.T) {
	work := t.TempDir()
	helper := []byte("#!/bin/sh\necho helper\n")
	put := func(b *Board) {
		t.Helper()
		require.NoError(t, b.PutFiles(map[string][]byte{
			"troupe/bin/h": helper, "troupe/bin/h2": helper,
			"troupe/env": fmt.Appendf(nil, "NODE=%s\n", b.o.Name),
		}, 0o755))
	}
	a, b, c := boardIn(t, work, "a"), boardIn(t, work, "b"), boardIn(t, work, "c")
	for _, brd := range []*Board{a, b, c} {
		put(brd)
	}
	uid, _ := sandboxIDs()
	own := func(fi os.FileInfo) int { return int(fi.Sys().(*syscall.Stat_t).Uid) }
	assert.Equal(t, uid, own(statIn(t, a, "troupe/bin/h")), "the first put is the board's own")
	assert.True(t, os.SameFile(statIn(t, a, "troupe/bin/h"), statIn(t, a, "troupe/bin/h2")), "equal files in one directory: one")
	for _, brd := range []*Board{a, b, c} {
		assert.Equal(t, uid, own(statIn(t, brd, "troupe/env")), "an environment is the board's own")
	}
	if os.Geteuid() != 0 {
		assert.False(t, os.SameFile(statIn(t, b, "troupe/bin/h"), statIn(t, c, "troupe/bin/h")), "not root: nothing shared")
		assert.Empty(t, sharedCopies(t, work))
		return
	}
	hb, hc := statIn(t, b, "troupe/bin/h"), statIn(t, c, "troupe/bin/h")
	assert.True(t, os.SameFile(hb, hc), "second put on: one inode")
	assert.False(t, os.SameFile(statIn(t, a, "troupe/bin/h"), hb))
	assert.Equal(t, 0, own(hb), "the harness's")
	assert.Equal(t, os.FileMode(0o755), hb.Mode().Perm())
	assert.Len(t, sharedCopies(t, work), 1, "only the helper: nothing put once is kept")

	// An unsandboxed board (it runs as the harness) shares nothing.
	u, err := New(Options{Name: "u", Dir: filepath.Join(work, "u"), Unsandboxed: true})
	require.NoError(t, err)
	require.NoError(t, u.PutFiles(map[string][]byte{"troupe/bin/h": helper}, 0o755))
	assert.False(t, os.SameFile(statIn(t, u, "troupe/bin/h"), hb), "unsandboxed: its own")
	require.NoError(t, u.Close())

	// A mode that gives others less than the owner is not shared.
	require.NoError(t, b.PutFiles(map[string][]byte{"x": helper}, 0o700))
	require.NoError(t, c.PutFiles(map[string][]byte{"x": helper}, 0o700))
	assert.False(t, os.SameFile(statIn(t, b, "x"), statIn(t, c, "x")))
	assert.Equal(t, os.FileMode(0o700), statIn(t, c, "x").Mode().Perm())

	require.NoError(t, b.Close())
	assert.Len(t, sharedCopies(t, work), 1, "c holds it")
	require.NoError(t, c.Close())
	assert.Empty(t, sharedCopies(t, work), "no board holds it")
	assert.Nil(t, sharedIn(work), "a work directory without copies is forgotten")

	// The next job on the boards shares it again, from its second put.
	b, c, d := boardIn(t, work, "b2"), boardIn(t, work, "c2"), boardIn(t, work, "d2")
	put(b)
	put(c)
	put(d)
	assert.False(t, os.SameFile(statIn(t, b, "troupe/bin/h"), statIn(t, c, "troupe/bin/h")))
	assert.True(t, os.SameFile(statIn(t, c, "troupe/bin/h"), statIn(t, d, "troupe/bin/h")))
}

// TestSharedFileCannotBeTampered: a board's root (in its sandbox) cannot
// write, truncate, chmod or touch a shared file: another board's copy,
// and the next job's, stay as they were. Removing its own name of it and
// putting a file of its own there is the board's business.
func TestSharedFileCannotBeTampered(t *testing.T) {
	if os.Geteuid() != 0 {
		// Nothing is shared (TestPutFilesShared checks it): each board
		// tampers with its own file only, which clearRoot removes.
		work := t.TempDir()
		a, b := boardIn(t, work, "a"), boardIn(t, work, "b")
		for _, brd := range []*Board{a, b, a} {
			require.NoError(t, brd.PutFiles(map[string][]byte{"h": []byte("x")}, 0o755))
		}
		assert.False(t, os.SameFile(statIn(t, a, "h"), statIn(t, b, "h")))
		return
	}
	work := t.TempDir()
	helper := []byte("#!/bin/sh\necho helper\n")
	first, other := boardIn(t, work, "first"), boardIn(t, work, "other")
	b, err := New(Options{Name: "tamper", Dir: filepath.Join(work, "tamper")})
	require.NoError(t, err)
	c := console.New(b.Console(), console.Options{})
	t.Cleanup(func() {
		assert.NoError(t, b.Close())
		_ = c.Close()
	})
	for _, brd := range []*Board{first, other, b} {
		require.NoError(t, brd.PutFiles(map[string][]byte{"troupe/bin/h": helper}, 0o755))
	}
	require.True(t, os.SameFile(statIn(t, other, "troupe/bin/h"), statIn(t, b, "troupe/bin/h")))
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)

	const f = "/tmp/troupe/bin/h"
	assert.Equal(t, "helper\n", run(t, b, c, f), "the board runs it")
	for _, attack := range []string{
		"echo x >> " + f,
		"echo x > " + f,
		"truncate -s 0 " + f,
		"chmod 777 " + f,
		"chown 0:0 " + f,
		"touch -d 2000-01-01 " + f,
	} {
		assert.Equal(t, "refused\n", run(t, b, c, "("+attack+") 2>/dev/null && echo done || echo refused"), attack)
	}
	assert.Equal(t, "mine\n", run(t, b, c, "rm -f "+f+" && echo 'echo mine' > "+f+" && sh "+f), "its own name is the board's")

	got, err := os.ReadFile(filepath.Join(other.Root(), "tmp", "troupe/bin/h"))
	require.NoError(t, err)
	assert.Equal(t, string(helper), string(got), "another board's copy changed")
	fi := statIn(t, other, "troupe/bin/h")
	assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
	assert.Equal(t, uint32(0), fi.Sys().(*syscall.Stat_t).Uid)
	var st unix.Stat_t
	require.NoError(t, unix.Stat(filepath.Join(other.Root(), "tmp", "troupe/bin/h"), &st))
	assert.Greater(t, st.Mtim.Sec, int64(946684800+86400), "the board set its time")

	// The next job on the board that tampered gets the shared copy.
	require.NoError(t, b.Close())
	b2 := boardIn(t, work, "tamper")
	require.NoError(t, b2.PutFiles(map[string][]byte{"troupe/bin/h": helper}, 0o755))
	assert.True(t, os.SameFile(statIn(t, other, "troupe/bin/h"), statIn(t, b2, "troupe/bin/h")))
}

// TestPutFilesTooManyLinks: when the file system takes no more links to a
// shared copy (EMLINK), the board gets a file of its own, and the next
// put a new copy.
func TestPutFilesTooManyLinks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Log("not root: nothing is shared, no link to a copy is made (TestPutFilesShared)")
	}
	work := t.TempDir()
	data := []byte("same\n")
	a, b, c, d := boardIn(t, work, "a"), boardIn(t, work, "b"), boardIn(t, work, "c"), boardIn(t, work, "d")
	require.NoError(t, a.PutFiles(map[string][]byte{"f": data}, 0o644))
	require.NoError(t, b.PutFiles(map[string][]byte{"f": data}, 0o644))
	full := linkFiles
	linkFiles = func(oldDir int, oldName string, newDir int, newName string) error { return unix.EMLINK }
	err := c.PutFiles(map[string][]byte{"f": data, "g": data}, 0o644)
	linkFiles = full
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(c.Root(), "tmp", "g"))
	require.NoError(t, err)
	assert.Equal(t, string(data), string(got))
	assert.False(t, os.SameFile(statIn(t, b, "f"), statIn(t, c, "f")), "EMLINK: its own file")
	require.NoError(t, d.PutFiles(map[string][]byte{"f": data}, 0o644))
	if os.Geteuid() == 0 {
		assert.False(t, os.SameFile(statIn(t, b, "f"), statIn(t, d, "f")), "a new copy")
		assert.Len(t, sharedCopies(t, work), 1, "the full copy is no longer shared")
	}
}
