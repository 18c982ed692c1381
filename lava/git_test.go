package lava_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
