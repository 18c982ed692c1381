package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rootfsTarGz is a gzip-compressed tar holding the files given.
func rootfsTarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}))
	for name, body := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}))
		_, err := tw.Write([]byte(body))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	return b.Bytes()
}

// nfsLab is a lab of one simulated u-boot board whose lab entry has the
// named boot command sets ramdisk and nfs (the LAVA device dictionary's
// part); nfs's kernel takes its root from {nfsrootfs}.
func nfsLab(t *testing.T, dir, addr, sock string, withNFS bool) string {
	sets := `ramdisk = ["setenv serverip {server_ip}", "tftp 0x82000000 {kernel}", "tftp 0x88080000 {ramdisk}", "bootz 0x82000000 0x88080000"]`
	if withNFS {
		sets += "\n" + `nfs = ["setenv serverip {server_ip}", "tftp 0x82000000 {kernel}", "setenv bootargs 'console={console_device} root=/dev/nfs rw nfsroot={server_ip}:{nfsrootfs},tcp,hard'", "bootz 0x82000000"]`
	}
	return writeFile(t, dir, "lab.toml", fmt.Sprintf(`retries = 0
[tftp]
address = "127.0.0.1:0"
[[board]]
name = "bbb-01"
device_type = "beaglebone-black"
backend = "hardware"
[board.console]
kind = "tcp"
address = %q
[board.power]
kind = "sim"
socket = %q
[board.boot]
method = "u-boot"
interrupt = "Hit any key to stop autoboot"
commands = ["setenv serverip {server_ip}", "echo no command set was picked", "booti 0x1"]
[board.boot.command_sets]
%s
[board.deploy]
method = "tftp"
`, addr, sock, sets))
}

const nfsJob = `job_name: bbb nfs over tftp
device_type: beaglebone-black
context: {console_device: ttyO0}
timeouts:
  job: {minutes: 3}
  connection: {minutes: 1}
actions:
- deploy:
    timeout: {minutes: 1}
    to: tftp
    kernel: {url: zImage, type: zimage}
    nfsrootfs: {url: rootfs.tar.gz, sha256sum: %x}
    os: debian
- boot:
    method: u-boot
    commands: nfs
    prompts: ['root@bbb:']
    auto_login: {login_prompt: 'bbb-01 login:', username: lava-user}
- test:
    definitions:
    - from: inline
      name: nfs
      path: inline/nfs.yaml
      repository:
        metadata: {name: nfs, format: Lava-Test Test Definition 1.0}
        run:
          steps:
          - lava-test-case rootfs --shell grep -q from-the-nfsrootfs "$HOME/etc/nfs-marker"
`

// TestLAVAUBootNFS: a LAVA job that deploys kernel and nfsrootfs to: tftp
// and boots with commands: nfs runs on a simulated u-boot board: the
// board's lab entry's nfs command set (its placeholders filled from the
// job's context) boots the kernel with the staged rootfs as nfsroot=,
// which the board unpacks as its root filesystem.
// A board without an nfs setup refuses the boot at run time, in one
// line, while the job still validates.
func TestLAVAUBootNFS(t *testing.T) {
	addr, sock := simboard(t, "bbb-01", false, "--bootloader", "u-boot")
	dir := t.TempDir()
	writeFile(t, dir, "zImage", "kernel")
	rootfs := rootfsTarGz(t, map[string]string{"etc/nfs-marker": "from-the-nfsrootfs\n"})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rootfs.tar.gz"), rootfs, 0o644))
	job := writeFile(t, dir, "job.yaml", fmt.Sprintf(nfsJob, sha256.Sum256(rootfs)))

	res := troupe(t, "run", "--lab", nfsLab(t, dir, addr, sock, true), "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	log := readLog(t, res.out, "node-0")
	assert.Contains(t, log, "console=ttyO0 root=/dev/nfs", "the nfs command set was sent, the job's context filling its {console_device}")
	assert.NotContains(t, log, "no command set was picked")
	assert.Contains(t, log, "VFS: Mounted root (nfs filesystem)")
	assert.Contains(t, log, "login: lava-user", "auto_login's username was typed")
	assert.Equal(t, "pass", testsByKey(readResults(t, res.out))["node-0/nfs/rootfs"])

	noNFS := t.TempDir()
	res = troupe(t, "validate", "--lab", nfsLab(t, noNFS, addr, sock, false))
	require.Equal(t, 0, res.code, res.stderr)
	res = troupe(t, "validate", job)
	require.Equal(t, 0, res.code, res.stderr)
	res = troupe(t, "run", "--lab", nfsLab(t, noNFS, addr, sock, false), "--out", "OUT", job)
	assert.NotEqual(t, 0, res.code)
	assert.Contains(t, res.stdout+res.stderr+readLogOrEmpty(t, res.out, "node-0"), `the job boots with the command set "nfs"; the board's lab entry has ramdisk`)
}

func readLogOrEmpty(t *testing.T, out, node string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "logs", node+".log"))
	if err != nil {
		return ""
	}
	return string(b)
}

// TestLAVASecrets: a LAVA job's secrets are in every test's environment,
// and their values are masked in the logs (raw console and merged log)
// and kept out of the results; the device type the built-in sim lab
// stands in for is said once.
func TestLAVASecrets(t *testing.T) {
	dir := t.TempDir()
	job := writeFile(t, dir, "job.yaml", `job_name: secrets on sim
device_type: docker
timeouts: {job: {minutes: 2}}
secrets:
  API_TOKEN: tok-8d1e5c0a77
actions:
- deploy:
    to: docker
    image: {name: alpine:latest}
- boot:
    method: docker
    command: bash
    prompts: ['#']
- test:
    definitions:
    - from: inline
      name: secret
      path: inline/secret.yaml
      repository:
        metadata: {name: secret, format: Lava-Test Test Definition 1.0}
        run:
          steps:
          - lava-test-case has-token --shell test "$API_TOKEN" = tok-8d1e5c0a77
          - echo "the token is $API_TOKEN"
`)
	res := troupe(t, "run", "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	assert.Equal(t, "pass", testsByKey(readResults(t, res.out))["node-0/secret/has-token"])
	assert.Equal(t, 1, strings.Count(res.stderr, "stood in for"), res.stderr)
	assert.Contains(t, res.stderr, "the docker image alpine:latest is not pulled")
	found := false
	require.NoError(t, filepath.WalkDir(res.out, func(p string, d os.DirEntry, err error) error {
		require.NoError(t, err)
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.NotContains(t, string(b), "tok-8d1e5c0a77", p)
		found = found || strings.Contains(string(b), "the token is [secret]")
		return nil
	}))
	assert.True(t, found, "the masked line is in the logs")
	assert.NotContains(t, res.stdout+res.stderr, "tok-8d1e5c0a77")
}
