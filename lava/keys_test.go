package lava_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lava"
)

// TestSecretsAndContext: a job's secrets and its and its roles' context
// are kept (exported to the tests' environment and the boot templates);
// errors never quote a secret.
func TestSecretsAndContext(t *testing.T) {
	src := `job_name: t
secrets: {API_TOKEN: hunter2, PIN: 1234}
context: {arch: amd64, extra_options: [-smp 2, -m 1G]}
protocols:
  lava-multinode:
    roles:
      a: {device_type: sim, context: {console_device: ttyS1}}
actions:
- boot: {role: [a], commands: nfs, failure_retry: 3, auto_login: {login_prompt: 'bbb login:', username: me, password_prompt: 'Password:', password: 4321}}
`
	j, err := lava.Import("job.yaml", []byte(src))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"API_TOKEN": "hunter2", "PIN": "1234"}, j.Secrets)
	assert.Equal(t, map[string]string{"arch": "amd64", "extra_options": "-smp 2 -m 1G"}, j.Context)
	assert.Equal(t, map[string]string{"console_device": "ttyS1"}, j.Roles[0].Context)
	assert.Equal(t, "nfs", j.Actions[0].Commands, "the boot's named command set")
	assert.Equal(t, 2, j.Actions[0].Retries, "failure_retry counts the first run")
	assert.Equal(t, jobs.Login{Prompt: "bbb login:", User: "me", PasswordPrompt: "Password:", Password: "4321"}, j.Actions[0].Login, "auto_login, prompts as text")
	roundTrip(t, j)

	_, err = lava.Import("job.yaml", []byte(strings.Replace(src, "PIN: 1234", "PIN: [hunter2]", 1)))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "hunter2")
}

// TestSubJob: a sub-job of one node, as LAVA's scheduler splits it from a
// MultiNode job, becomes a job of its one role, which is said once.
func TestSubJob(t *testing.T) {
	src := `job_name: client
device_type: qemu
protocols:
  lava-multinode:
    target_group: g-1
    role: client
    group_size: 2
    sub_id: 1
    roles: {kvm01: client, kvm02: server}
actions:
- boot: {role: client, method: qemu}
`
	var warns []string
	opts := lava.DefaultOptions()
	opts.Warn = func(s string) { warns = append(warns, s) }
	j, err := lava.ImportWith("job.yaml", []byte(src), opts)
	require.NoError(t, err)
	require.Len(t, j.Roles, 1)
	assert.Equal(t, jobs.Role{Name: "client", DeviceType: "qemu", Count: 1, Timeout: jobs.DefaultMultinodeTimeout}, j.Roles[0])
	require.Len(t, warns, 1)
	assert.Contains(t, warns[0], "sub-job of role client")

	// A dispatcher's sub-job names its device: the type comes from the boot.
	j, err = lava.ImportWith("job.yaml", []byte("target: kvm01\n"+strings.Replace(src, "device_type: qemu\n", "", 1)), opts)
	require.NoError(t, err)
	assert.Equal(t, "qemu", j.Roles[0].DeviceType)
	assert.Contains(t, warns[len(warns)-2], `device "kvm01"`)
}

// TestStagedImages: nfsrootfs, modules, dtbo (one or a list) and the
// images of flashing methods are staged by name (jobs.Images.Files); a
// file:// URL is read through a lab's mirror only.
func TestStagedImages(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"zImage", "rootfs.tar.gz", "modules.tgz", "a.dtbo", "b.dtbo", "worker/fw.bin"} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rootfs.tar.gz"), tarFile(t, true, "etc/os-release", "lib/modules/old/x.ko"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.tgz"), tarFile(t, true, "lib/modules/6.1.0/kernel/m.ko"), 0o644))
	src := `job_name: t
device_type: bbb
actions:
- deploy:
    to: tftp
    kernel: {url: zImage}
    nfsrootfs: {url: rootfs.tar.gz}
    modules: {url: modules.tgz}
    dtbo: [{url: a.dtbo}, {url: b.dtbo}]
- deploy:
    images:
      cpu-1: {url: 'file:///home/lava/bin/fw.bin'}
- boot: {method: u-boot, commands: nfs}
`
	file := filepath.Join(dir, "job.yaml")
	_, err := lava.Import(file, []byte(src))
	require.Error(t, err, "file:// without a mirror")
	assert.Contains(t, err.Error(), "file:// URLs are not accepted")

	opts := lava.DefaultOptions()
	opts.Downloads.Mirrors = []lava.Mirror{{Prefix: "file:///home/lava/bin/", Dir: filepath.Join(dir, "worker")}}
	j, err := lava.ImportWith(file, []byte(src), opts)
	require.NoError(t, err)
	im := j.Actions[0].Images
	require.NotNil(t, im)
	assert.Equal(t, filepath.Join(dir, "zImage"), im.Kernel)
	nfs := im.Files["nfsrootfs"]
	assert.Contains(t, nfs, lava.CacheDir, "the nfsrootfs with the modules unpacked over it, in the cache")
	assert.Equal(t, []string{"etc/os-release", "lib/modules/old/x.ko", "lib/modules/6.1.0/kernel/m.ko"}, tarNames(t, nfs), "LAVA's extract-modules: the modules over the rootfs")
	assert.Equal(t, map[string]string{"nfsrootfs": nfs, "modules": filepath.Join(dir, "modules.tgz"),
		"dtbo": filepath.Join(dir, "a.dtbo"), "dtbo_2": filepath.Join(dir, "b.dtbo")}, im.Files)
	fw := j.Actions[1].Images.Files["cpu_1"]
	require.NotEmpty(t, fw)
	assert.Contains(t, fw, lava.CacheDir, "copied into the cache from the mirror")
	b, err := os.ReadFile(fw)
	require.NoError(t, err)
	assert.Equal(t, "worker/fw.bin", string(b))
	roundTrip(t, j)

	// install_modules: false keeps the nfsrootfs as it is.
	j, err = lava.ImportWith(file, []byte(strings.Replace(src, "{url: rootfs.tar.gz}", "{url: rootfs.tar.gz, install_modules: false}", 1)), opts)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "rootfs.tar.gz"), j.Actions[0].Images.Files["nfsrootfs"])

	// Modules that are no tar: an error naming the key; validating
	// (Defer) reads nothing.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.tgz"), []byte("not a tar"), 0o644))
	bad := strings.Replace(src, "modules.tgz", "bad.tgz", 1)
	_, err = lava.ImportWith(file, []byte(bad), opts)
	assert.ErrorContains(t, err, "job.yaml:8: actions[0].deploy.modules: modules: bad.tgz: not a tar archive")
	deferred := opts
	deferred.Downloads = &lava.Downloads{Mirrors: opts.Downloads.Mirrors, Defer: true}
	_, err = lava.ImportWith(file, []byte(bad), deferred)
	require.NoError(t, err)
}

// tarFile is a tar (gzip-compressed if zipped) of the named files.
func tarFile(t *testing.T, zipped bool, names ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.Writer = &b
	var zw *gzip.Writer
	if zipped {
		zw = gzip.NewWriter(&b)
		w = zw
	}
	tw := tar.NewWriter(w)
	for _, n := range names {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(n))}))
		_, err := tw.Write([]byte(n))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	if zw != nil {
		require.NoError(t, zw.Close())
	}
	return b.Bytes()
}

// tarNames lists the entries of the plain tar at p.
func tarNames(t *testing.T, p string) []string {
	t.Helper()
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		require.NoError(t, err)
		names = append(names, h.Name)
	}
}

// TestWithModulesBounded: the rootfs-with-modules copy is bounded by the
// download size limit.
func TestWithModulesBounded(t *testing.T) {
	dir := t.TempDir()
	rootfs, modules := filepath.Join(dir, "rootfs.tar"), filepath.Join(dir, "modules.tar.gz")
	require.NoError(t, os.WriteFile(rootfs, tarFile(t, false, strings.Repeat("r", 90)), 0o644))
	require.NoError(t, os.WriteFile(modules, tarFile(t, true, "lib/modules/m.ko"), 0o644))
	d := &lava.Downloads{Dir: filepath.Join(dir, "cache"), MaxBytes: 2048}
	_, err := d.WithModules(context.Background(), rootfs, modules)
	assert.ErrorContains(t, err, "larger than the download size limit")
	d.MaxBytes = 0
	p, err := d.WithModules(context.Background(), rootfs, modules)
	require.NoError(t, err)
	assert.Equal(t, "rootfs.tar", filepath.Base(p))
	assert.Equal(t, []string{strings.Repeat("r", 90), "lib/modules/m.ko"}, tarNames(t, p))
}

// TestDeferredImages: validating (Downloads.Defer) fetches nothing and
// checks the digests' form; the path is the one a run's fetch gives.
func TestDeferredImages(t *testing.T) {
	d := &lava.Downloads{Dir: t.TempDir(), Defer: true}
	a := lava.Artifact{URL: "http://127.0.0.1:1/img.gz", Compression: "gz", Checksums: map[string]string{"sha256sum": strings.Repeat("ab", 32)}}
	p, err := d.Path(a)
	require.NoError(t, err)
	assert.Equal(t, "img", filepath.Base(p))
	_, err = os.Stat(p)
	assert.True(t, os.IsNotExist(err), "nothing fetched")
	_, err = d.Get(context.Background(), a)
	require.Error(t, err, "a run fetches: nothing listens there")

	a.Checksums["sha256sum"] = "abc"
	_, err = d.Path(a)
	assert.ErrorContains(t, err, "sha256sum must be 64 hex digits")
}
