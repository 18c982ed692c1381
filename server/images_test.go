package server

import (
	"crypto/md5" //nolint:gosec // LAVA's md5sum key
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lava"
)

// deployJob is testJob with a deploy action of image line first.
func deployJob(line string) string {
	return strings.Replace(testJob("img", "true"), "[[action]]\ntype = \"boot\"", "[[action]]\ntype = \"deploy\"\n"+line+"\n[[action]]\ntype = \"boot\"", 1)
}

// TestSubmitImagesConfined: a submitted job's images resolve only under
// the images root (default DATA/images); whatever is refused gets a 400
// whose text does not tell whether the path exists outside.
func TestSubmitImagesConfined(t *testing.T) {
	data := t.TempDir()
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600))
	x := start(t, data, simLab(t, 2, 0), nil)
	images := filepath.Join(data, "images")
	require.DirExists(t, images, "the default images root is made")
	require.NoError(t, os.MkdirAll(filepath.Join(images, "rootfs", "etc"), 0o755))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(images, "out-existing")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "missing"), filepath.Join(images, "out-missing")))

	refused := func(query, line, name string) string {
		t.Helper()
		code, body := call(t, "POST", x.url+"/api/v1/jobs"+query, "", "", deployJob(line))
		require.Equal(t, http.StatusBadRequest, code, "%s: %s", line, body)
		var e struct{ Error string }
		require.NoError(t, json.Unmarshal([]byte(body), &e))
		return strings.ReplaceAll(e.Error, name, "NAME")
	}
	for _, pair := range [][2]string{
		{"/etc/passwd", "/no/such/file"},
		{"../../../../etc/passwd", "../../../../no/such/file"},
		{"out-existing", "out-missing"},
		{"out-existing", "not-there"},
		{"rootfs/../out-existing", "rootfs/../not-there"},
	} {
		for _, key := range []string{"image = %q", "images = {kernel = %q}"} {
			a := refused("", strings.Replace(key, "%q", `"`+pair[0]+`"`, 1), pair[0])
			b := refused("", strings.Replace(key, "%q", `"`+pair[1]+`"`, 1), pair[1])
			assert.Equal(t, a, b, "%s vs %s", pair[0], pair[1])
			assert.NotContains(t, a, "no such file")
		}
	}
	// QEMU option injection.
	assert.Contains(t, refused("", `images = {kernel = "k", rootfs = "d,file.locking=off"}`, "d,"), "must not contain ','")
	// The file parameter names the file in errors; it does not move the root.
	assert.Contains(t, refused("?file=/etc/job.toml", `image = "passwd"`, "passwd"), `"NAME" is not a file or directory in the images root`)

	code, body := call(t, "POST", x.url+"/api/v1/jobs", "", "", deployJob(`image = "rootfs"`))
	assert.Equal(t, http.StatusCreated, code, body)
	code, body = call(t, "GET", x.url+"/api/v1/jobs", "", "", "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, 1, strings.Count(body, `"id"`), "only the job whose image is in the root was queued: %s", body)
}

// TestImagesFlagRoot: Config.Images replaces the default root.
func TestImagesFlagRoot(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "rootfs"), 0o755))
	s, err := New(Config{Lab: simLab(t, 1, 0), Data: t.TempDir(), Images: root})
	require.NoError(t, err)
	defer s.Close()
	_, err = checkJob(s.labDef, s.cfg.Images, "job.toml", "toml", []byte(deployJob(`image = "rootfs"`)))
	assert.NoError(t, err)
	_, err = checkJob(s.labDef, filepath.Join(s.cfg.Data, "images"), "job.toml", "toml", []byte(deployJob(`image = "rootfs"`)))
	assert.Error(t, err)
}

// TestSubmitLAVAConfined: a submitted LAVA job names only what is under
// the server's images root: a local image read for its checksum is cached
// under the root (lava.CacheDir) and queued; file:// images and local test
// definition repositories outside the root are refused with a 400, so a
// submitter cannot make the server read or clone whatever host path it
// names.
func TestSubmitLAVAConfined(t *testing.T) {
	data := t.TempDir()
	x := start(t, data, simLab(t, 1, 0), nil)
	images := filepath.Join(data, "images")
	kernel := []byte("kernel\n")
	require.NoError(t, os.WriteFile(filepath.Join(images, "vmlinuz"), kernel, 0o644))
	// A git repository outside the images root.
	repo := t.TempDir()
	for _, args := range [][]string{{"init", "--quiet"}, {"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "x"}} {
		if args[0] == "add" {
			require.NoError(t, os.WriteFile(filepath.Join(repo, "smoke.yaml"), []byte("run: {steps: [true]}\n"), 0o644))
		}
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	job := func(deploy, test string) string {
		return "job_name: l\ndevice_type: sim\nactions:\n- deploy:\n    to: tmpfs\n" + deploy +
			"- boot: {method: qemu}\n- test:\n    definitions:\n" + test
	}
	inline := "    - {from: inline, name: t, repository: {run: {steps: [lava-test-case a --result pass]}}}\n"
	submit := func(src string) (int, string) {
		return call(t, "POST", x.url+"/api/v1/jobs", "", "application/yaml", src)
	}
	code, body := submit(job("    kernel: {url: vmlinuz, md5sum: "+fmt.Sprintf("%x", md5.Sum(kernel))+"}\n", inline)) //nolint:gosec
	require.Equal(t, http.StatusCreated, code, body)
	matches, err := filepath.Glob(filepath.Join(images, lava.CacheDir, "images", "*", "vmlinuz"))
	require.NoError(t, err)
	assert.Len(t, matches, 1, "checked once, cached under the images root")

	for _, tc := range []struct{ deploy, test, want string }{
		{"    kernel: {url: 'file://" + filepath.Join(images, "vmlinuz") + "'}\n", inline, "file:// URLs are not accepted"},
		{"    kernel: {url: '" + filepath.Join(images, "vmlinuz") + "'}\n", inline, "must be a path inside the images root"},
		{"    kernel: {url: vmlinuz}\n", "    - {from: git, name: g, repository: '" + repo + "', path: smoke.yaml}\n", "must be under the images root"},
		{"    kernel: {url: vmlinuz}\n", "    - {from: git, name: g, repository: 'file://" + repo + "', path: smoke.yaml}\n", "must be under the images root"},
	} {
		code, body := submit(job(tc.deploy, tc.test))
		assert.Equal(t, http.StatusBadRequest, code, body)
		assert.Contains(t, body, tc.want)
	}
}
