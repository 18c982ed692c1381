package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHostileJobFiles: the files of issue 12 that took gigabytes are
// invalid input (exit 3) before they are decoded.
func TestHostileJobFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct{ file, src, want string }{
		{"arrays.toml", "x = " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000), "arrays.toml:1: arrays and inline tables are nested more than 32 deep"},
		{"tables.toml", "x = " + strings.Repeat("{a=", 13000) + "1" + strings.Repeat("}", 13000), "tables.toml:1: arrays and inline tables are nested more than 32 deep"},
		{"header.toml", "[" + strings.Repeat("a.", 100000) + "a]\n", "header.toml:1: a key has more than 64 dotted parts"},
		{"/dev/zero", "", "/dev/zero: the file is 1048577 bytes; at most 1048576 are allowed"},
		{"flow.yaml", "job_name: x\nx: " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000), "flow.yaml:2: mappings and sequences are nested more than 32 deep"},
	} {
		p := tc.file
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, tc.file)
			require.NoError(t, os.WriteFile(p, []byte(tc.src), 0o644))
		}
		for _, cmd := range [][]string{{"validate", p}, {"run", "--out", "OUT", p}} {
			res := troupe(t, cmd...)
			assert.Equal(t, exitInvalid, res.code, "%v: %s", cmd, res.stderr)
			assert.Contains(t, res.stderr, tc.want, "%v", cmd)
			assert.NoDirExists(t, res.out)
		}
	}
}

// deployJob is a valid sim job that deploys with the action line given.
func deployJob(name, line string) string {
	return "name = \"" + name + "\"\n[roles.a]\ndevice_type = \"sim\"\n[[action]]\ntype = \"deploy\"\n" + line +
		"\n[[action]]\ntype = \"boot\"\n[[action]]\ntype = \"test\"\nname = \"t\"\nrun = \"true\"\n"
}

// TestImagesConfinedToJobDir: troupe run resolves images under the job
// file's directory only; what is refused is exit 3, with the same message
// for a path outside that exists and one that does not.
func TestImagesConfinedToJobDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "out-existing")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "missing"), filepath.Join(dir, "out-missing")))
	refused := func(line, name string) string {
		t.Helper()
		p := filepath.Join(dir, "job.toml")
		require.NoError(t, os.WriteFile(p, []byte(deployJob("img", line)), 0o644))
		res := troupe(t, "validate", p)
		assert.Equal(t, exitInvalid, res.code, "%s: %s", line, res.stderr)
		run := troupe(t, "run", "--out", "OUT", p)
		assert.Equal(t, exitInvalid, run.code, "%s: %s", line, run.stderr)
		assert.NoDirExists(t, run.out, "nothing ran")
		return strings.ReplaceAll(res.stderr, name, "NAME")
	}
	for _, pair := range [][2]string{
		{"/etc", "/no/such/dir"},
		{"../" + filepath.Base(outside) + "/secret", "../" + filepath.Base(outside) + "/missing"},
		{"out-existing", "out-missing"},
		{"out-existing", "not-there"},
	} {
		for _, key := range []string{`image = "%s"`, `images = {kernel = "%s"}`} {
			a := refused(strings.Replace(key, "%s", pair[0], 1), pair[0])
			b := refused(strings.Replace(key, "%s", pair[1], 1), pair[1])
			assert.Equal(t, a, b, "%s vs %s", pair[0], pair[1])
		}
	}
	assert.Contains(t, refused(`images = {kernel = "k", rootfs = "d,if=none"}`, "d,if=none"), "must not contain ','")
}

// TestJobNameCannotLeaveOut: a job called ".." (or with ".." in it) is
// invalid, so its results cannot land outside --out.
func TestJobNameCannotLeaveOut(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	var paths []string
	for i, name := range []string{"ok", "..", "a..b", ".x"} {
		p := filepath.Join(dir, "job"+string(rune('0'+i))+".toml")
		require.NoError(t, os.WriteFile(p, []byte(strings.Replace(testJobSrc, `name = "n"`, `name = "`+name+`"`, 1)), 0o644))
		paths = append(paths, p)
	}
	res := troupe(t, append([]string{"run", "--out", out}, paths...)...)
	assert.Equal(t, exitInvalid, res.code, res.stderr)
	assert.Contains(t, res.stderr, `job1.toml:1: name: must start with a letter or digit (got "..")`)
	assert.Contains(t, res.stderr, `job2.toml:1: name: must not contain ".." (got "a..b")`)
	assert.Contains(t, res.stderr, `job3.toml:1: name: must start with a letter or digit (got ".x")`)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, len(paths), "nothing but the job files in %s", dir)
}

// testJobSrc is a valid one-node sim job called "n".
const testJobSrc = "name = \"n\"\n[roles.a]\ndevice_type = \"sim\"\n[[action]]\ntype = \"boot\"\n[[action]]\ntype = \"test\"\nname = \"t\"\nrun = \"true\"\n"

// TestTestWithoutBoot: a test on a role nothing booted is invalid input
// naming the role, not a board failure.
func TestTestWithoutBoot(t *testing.T) {
	t.Parallel()
	p := writeJob(t, "name = \"n\"\n[roles.server]\ndevice_type = \"sim\"\n[roles.client]\ndevice_type = \"sim\"\n[[action]]\ntype = \"boot\"\nroles = [\"client\"]\n[[action]]\ntype = \"test\"\nname = \"t\"\nrun = \"true\"\n")
	for _, cmd := range [][]string{{"validate", p}, {"run", "--out", "OUT", p}} {
		res := troupe(t, cmd...)
		assert.Equal(t, exitInvalid, res.code, "%v: %s", cmd, res.stderr)
		assert.Contains(t, res.stderr, `job.toml:9: action[1]: test "t" runs on role "server" before any boot action of that role: boot it first`)
		assert.NoDirExists(t, res.out)
	}
}

// TestServeImagesRoot: troupe serve --images DIR resolves submitted jobs'
// images under DIR only; refusals are 400s with the same text whether the
// path exists outside or not.
func TestServeImagesRoot(t *testing.T) {
	t.Parallel()
	data, images, outside := t.TempDir(), t.TempDir(), t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(images, "rootfs", "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(images, "out-existing")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "missing"), filepath.Join(images, "out-missing")))
	p := startServe(t, "--data", data, "--images", images)
	refused := func(line, name string) string {
		t.Helper()
		code, body := api(t, "POST", p.url+"/api/v1/jobs", "", deployJob("img", line))
		require.Equal(t, http.StatusBadRequest, code, "%s: %s", line, body)
		return strings.ReplaceAll(string(body), name, "NAME")
	}
	for _, pair := range [][2]string{
		{"/etc/passwd", "/no/such/file"},
		{"out-existing", "out-missing"},
		{"out-existing", "not-there"},
		{"rootfs/../../" + filepath.Base(outside) + "/secret", "rootfs/../../" + filepath.Base(outside) + "/missing"},
	} {
		assert.Equal(t, refused(`image = "`+pair[0]+`"`, pair[0]), refused(`image = "`+pair[1]+`"`, pair[1]))
	}
	id := submitJob(t, p.url, deployJob("img", `image = "rootfs"`))
	j := waitEnded(t, p.url, id, 2*time.Minute)
	assert.Equal(t, "complete", j.Status, "the image in the root was deployed: %+v", j)
	assert.NoDirExists(t, filepath.Join(data, "images"), "--images replaces the default root")
}
