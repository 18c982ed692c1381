package lava_test

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lava"
)

// gitRepo creates a git repository at dir holding files, committed, and
// returns the commit id.
func gitRepo(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	run := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "git %v: %s", args, out)
		return strings.TrimSpace(string(out))
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
		run("init", "--quiet", "--initial-branch=main")
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		require.NoError(t, os.WriteFile(p, []byte(body), mode))
	}
	run("add", "-A")
	run("commit", "--quiet", "-m", "update")
	return run("rev-parse", "HEAD")
}

func TestReposFetch(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "defs")
	first := gitRepo(t, src, map[string]string{"smoke.yaml": "v1"})
	second := gitRepo(t, src, map[string]string{"smoke.yaml": "v2"})
	r := &lava.Repos{Dir: filepath.Join(base, "cache"), Local: base}
	ctx := context.Background()

	read := func(c lava.Checkout) string {
		b, err := os.ReadFile(filepath.Join(c.Dir, "smoke.yaml"))
		require.NoError(t, err)
		return string(b)
	}
	tip, err := r.Fetch(ctx, src, "", "")
	require.NoError(t, err)
	assert.Equal(t, second, tip.Commit)
	assert.Equal(t, "v2", read(tip))

	old, err := r.Fetch(ctx, "file://"+src, "", first)
	require.NoError(t, err)
	assert.Equal(t, first, old.Commit)
	assert.Equal(t, "v1", read(old))
	_, err = os.Stat(filepath.Join(old.Dir, ".git"))
	assert.True(t, os.IsNotExist(err), "no git metadata in the delivered tree")

	// Cached by URL and revision: the source may go away (a mirror's: a
	// local path is checked to be under Local before the cache is looked
	// at, so a gone one is refused).
	mr := &lava.Repos{Dir: filepath.Join(base, "cache"), Mirrors: []lava.Mirror{{Prefix: "https://git.example.org/", Dir: base}}}
	viaMirror, err := mr.Fetch(ctx, "https://git.example.org/defs", "", first)
	require.NoError(t, err)
	assert.Equal(t, "v1", read(viaMirror))
	require.NoError(t, os.RemoveAll(src))
	again, err := mr.Fetch(ctx, "https://git.example.org/defs", "", first)
	require.NoError(t, err)
	assert.Equal(t, viaMirror, again)
	_, err = mr.Fetch(ctx, "https://git.example.org/defs", "", "")
	require.Error(t, err, "without a revision the tip is fetched again")
}

func TestReposBranchAndMirror(t *testing.T) {
	base := t.TempDir()
	mirror := filepath.Join(base, "mirror")
	src := filepath.Join(mirror, "qa", "test-definitions.git")
	gitRepo(t, src, map[string]string{"a.yaml": "main"})
	cmd := exec.Command("git", "checkout", "--quiet", "-b", "stable")
	cmd.Dir = src
	require.NoError(t, cmd.Run())
	stable := gitRepo(t, src, map[string]string{"a.yaml": "stable"})
	cmd = exec.Command("git", "checkout", "--quiet", "main")
	cmd.Dir = src
	require.NoError(t, cmd.Run())

	r := &lava.Repos{Dir: filepath.Join(base, "cache"), Mirrors: []lava.Mirror{
		{Prefix: "https://git.example.org/", Dir: filepath.Join(base, "nowhere")},
		{Prefix: "https://git.example.org/qa/", Dir: filepath.Join(mirror, "qa")},
	}}
	c, err := r.Fetch(context.Background(), "https://git.example.org/qa/test-definitions.git", "stable", "")
	require.NoError(t, err, "the longest mirror prefix wins; nothing goes to the network")
	assert.Equal(t, stable, c.Commit)
	b, err := os.ReadFile(filepath.Join(c.Dir, "a.yaml"))
	require.NoError(t, err)
	assert.Equal(t, "stable", string(b))
}

func TestReposRefuses(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "big")
	gitRepo(t, src, map[string]string{"blob": strings.Repeat("x", 4096)})
	r := &lava.Repos{Dir: filepath.Join(base, "cache"), MaxBytes: 1024, Local: base}
	ctx := context.Background()
	for _, tc := range []struct{ url, branch, rev, want string }{
		{"ext::sh -c touch% /tmp/pwned", "", "", `scheme "ext" is not allowed`},
		{"ssh://host/repo.git", "", "", `scheme "ssh" is not allowed`},
		{"relative/repo", "", "", "absolute path"},
		// A local repository outside Local (the images root), or a
		// mirror's, is refused like a missing one: a submitted job must
		// not make troupe clone whatever host path it names.
		{t.TempDir(), "", "", "must be under the images root"},
		{"file://" + filepath.Join(base, "missing"), "", "", "must be under the images root"},
		{"file://" + base + "/../" + filepath.Base(base) + "-elsewhere", "", "", "must be under the images root"},
		{src, "--upload-pack=touch /tmp/x", "", "invalid branch"},
		{src, "", "../HEAD", "invalid branch or revision"},
		{src, "", "", "limited to 1024"},
	} {
		_, err := r.Fetch(ctx, tc.url, tc.branch, tc.rev)
		require.Error(t, err, tc.url)
		assert.Contains(t, err.Error(), tc.want)
	}
	m, err := lava.ParseMirror("https://git.linaro.org/=/srv/mirror")
	require.NoError(t, err)
	assert.Equal(t, lava.Mirror{Prefix: "https://git.linaro.org/", Dir: "/srv/mirror"}, m)
	_, err = lava.ParseMirror("nodir")
	require.Error(t, err)
	// No Local: no local repository at all.
	_, err = (&lava.Repos{Dir: filepath.Join(base, "cache2")}).Fetch(ctx, src, "", "")
	assert.ErrorContains(t, err, "must be under the images root")
	// '..' after a mirror's prefix does not leave the mirror.
	mr := &lava.Repos{Dir: filepath.Join(base, "cache3"), Mirrors: []lava.Mirror{{Prefix: "https://git.example.org/", Dir: filepath.Join(base, "mirror")}}}
	_, err = mr.Fetch(ctx, "https://git.example.org/../big", "", "")
	assert.ErrorContains(t, err, "'..' after the mirror's URL")
}

// TestReposBounds: a repository is hostile input: its clone is stopped
// once it holds more than MaxBytes (before any checkout), and every git
// command is bounded in time.
func TestReposBounds(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "noise")
	noise := make([]byte, 256<<10)
	_, err := rand.Read(noise)
	require.NoError(t, err)
	gitRepo(t, src, map[string]string{"noise.bin": string(noise)})
	ctx := context.Background()

	r := &lava.Repos{Dir: filepath.Join(base, "cache"), MaxBytes: 64 << 10, Local: base}
	_, err = r.Fetch(ctx, "file://"+src, "", "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "git clone: ")
	assert.Contains(t, err.Error(), "bytes fetched")
	assert.Contains(t, err.Error(), "limited to 65536")
	left, err := os.ReadDir(filepath.Join(base, "cache"))
	require.NoError(t, err)
	assert.Empty(t, left, "nothing of a refused repository stays in the cache")

	slow := &lava.Repos{Dir: filepath.Join(base, "cache2"), Timeout: time.Nanosecond, Local: base}
	_, err = slow.Fetch(ctx, src, "", "")
	assert.ErrorContains(t, err, "took longer than 1ns")
}

// TestReposNoHooksNoSubmodules: no hook runs while a repository is
// fetched, even one the user's git configuration names, and submodules are
// not fetched even where that configuration asks for them.
func TestReposNoHooksNoSubmodules(t *testing.T) {
	base := t.TempDir()
	hooks := filepath.Join(base, "hooks")
	require.NoError(t, os.MkdirAll(hooks, 0o755))
	pwned := filepath.Join(base, "pwned")
	for _, h := range []string{"post-checkout", "reference-transaction", "post-index-change"} {
		require.NoError(t, os.WriteFile(filepath.Join(hooks, h), []byte("#!/bin/sh\ntouch "+pwned+"\n"), 0o755))
	}
	global := filepath.Join(base, "gitconfig")
	require.NoError(t, os.WriteFile(global, []byte("[core]\n\thooksPath = "+hooks+"\n[submodule]\n\trecurse = true\n[protocol \"file\"]\n\tallow = always\n"), 0o644))
	inner := filepath.Join(base, "inner")
	gitRepo(t, inner, map[string]string{"secret.txt": "inner"})
	src := filepath.Join(base, "outer")
	gitRepo(t, src, map[string]string{"a.yaml": "x"})
	cmd := exec.Command("git", "-c", "protocol.file.allow=always", "-c", "core.hooksPath=/dev/null", "submodule", "add", "--quiet", inner, "sub")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "HOME="+src)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	gitRepo(t, src, map[string]string{"b.yaml": "y"})

	t.Setenv("GIT_CONFIG_GLOBAL", global)
	r := &lava.Repos{Dir: filepath.Join(base, "cache"), Local: base}
	c, err := r.Fetch(context.Background(), src, "", "")
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(c.Dir, "b.yaml"))
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(c.Dir, "sub", "secret.txt"))
	assert.True(t, os.IsNotExist(err), "submodules are not fetched")
	_, err = os.Stat(pwned)
	assert.True(t, os.IsNotExist(err), "no hook ran")
}

// TestReposFetchesOnlyWhatItNeeds: a big file in a repository's history
// does not count against the size limit: the tip alone is fetched when no
// revision is named, and for a named revision the history comes without
// the file contents of other commits.
func TestReposFetchesOnlyWhatItNeeds(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "defs")
	noise := make([]byte, 256<<10)
	_, err := rand.Read(noise)
	require.NoError(t, err)
	old := gitRepo(t, src, map[string]string{"a.yaml": "v1", "noise.bin": string(noise)})
	require.NoError(t, os.Remove(filepath.Join(src, "noise.bin")))
	tip := gitRepo(t, src, map[string]string{"a.yaml": "v2"})
	ctx := context.Background()
	r := &lava.Repos{Dir: filepath.Join(base, "cache"), MaxBytes: 64 << 10, Local: base}

	c, err := r.Fetch(ctx, src, "", "")
	require.NoError(t, err, "the tip alone is fetched")
	assert.Equal(t, tip, c.Commit)
	c, err = r.Fetch(ctx, "file://"+src, "main", tip)
	require.NoError(t, err, "a revision's history comes without other commits' contents")
	assert.Equal(t, tip, c.Commit)
	b, err := os.ReadFile(filepath.Join(c.Dir, "a.yaml"))
	require.NoError(t, err)
	assert.Equal(t, "v2", string(b))
	_, err = r.Fetch(ctx, src, "", old)
	assert.ErrorContains(t, err, "limited to 65536", "the old revision's own files are over the limit")
}
