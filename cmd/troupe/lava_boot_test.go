package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLAVALoginCommands: auto_login's login_commands are typed at the
// shell after the login on a board of the built-in sim lab: what they
// set is there for the test.
func TestLAVALoginCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	job := writeFile(t, dir, "job.yaml", `job_name: login commands
device_type: qemu
timeouts: {job: {minutes: 2}}
actions:
- boot:
    method: qemu
    media: tmpfs
    prompts: ['root@debian:~#']
    auto_login:
      login_prompt: 'login:'
      username: root
      login_commands:
      - export LOGIN_MARK=typed
      - echo login-ran > "$HOME/login-mark"
- test:
    definitions:
    - from: inline
      name: login
      path: inline/login.yaml
      repository:
        metadata: {name: login, format: Lava-Test Test Definition 1.0}
        run:
          steps:
          - lava-test-case env --shell test "$LOGIN_MARK" = typed
          - lava-test-case file --shell grep -q login-ran "$HOME/login-mark"
`)
	res := troupe(t, "run", "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	cases := testsByKey(readResults(t, res.out))
	assert.Equal(t, "pass", cases["node-0/login/env"], "%v", cases)
	assert.Equal(t, "pass", cases["node-0/login/file"], "%v", cases)
}

// TestLAVAUBootCommandList: a LAVA boot whose commands are a list (not a
// named set) has them typed at the u-boot prompt of a simulated u-boot
// board instead of its lab entry's, LAVA's placeholders filled by the
// deploy ({SERVER_IP}, {KERNEL}, ...) and the lab entry.
func TestLAVAUBootCommandList(t *testing.T) {
	t.Parallel()
	addr, sock := simboard(t, "bbb-02", false, "--bootloader", "u-boot")
	dir := t.TempDir()
	writeFile(t, dir, "zImage", "kernel")
	writeFile(t, dir, "ramdisk.cpio", "ramdisk")
	writeFile(t, dir, "board.dtb", "device tree")
	labFile := ubootLab(t, dir, "bbb-02", "beaglebone-black", addr, sock, "Hit any key to stop autoboot", tftpBootCommands)
	job := writeFile(t, dir, "job.yaml", fmt.Sprintf(`job_name: bbb own commands
device_type: beaglebone-black
timeouts: {job: {minutes: 3}, action: {minutes: 1}}
actions:
- deploy:
    to: tftp
    kernel: {url: zImage, type: zimage}
    ramdisk: {url: ramdisk.cpio}
    dtb: {url: board.dtb}
- boot:
    method: u-boot
    commands:
    - setenv serverip {SERVER_IP}
    - setenv bootargs console=ttyS0 marker=%s
    - tftp 0x82000000 {KERNEL}
    - tftp 0x88080000 {RAMDISK}
    - tftp 0x88000000 {DTB}
    - echo ${bootargs}
    - bootz 0x82000000 0x88080000 0x88000000
    prompts: ['/ #']
- test:
    definitions:
    - from: inline
      name: smoke
      path: inline/smoke.yaml
      repository:
        metadata: {name: smoke, format: Lava-Test Test Definition 1.0}
        run:
          steps:
          - lava-test-case booted --result pass
`, "job-commands"))
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	log := readLog(t, res.out, "node-0")
	assert.Contains(t, log, "setenv bootargs console=ttyS0 marker=job-commands", "the job's commands are typed")
	assert.Contains(t, log, "bbb-02/ramdisk.cpio", "fetched over TFTP with the deploy's placeholders")
	assert.Equal(t, "pass", testsByKey(readResults(t, res.out))["node-0/smoke/booted"])
}

// TestLAVAQemuContext: a LAVA QEMU job's context.arch picks the QEMU
// binary of the board's boots (amd64 → qemu-system-x86_64 on a board
// whose lab entry says aarch64); a context key of LAVA's qemu template
// troupe does not honour fails the boot with a line naming it.
func TestLAVAQemuContext(t *testing.T) {
	t.Parallel()
	needQemu(t)
	dir := t.TempDir()
	labFile := writeFile(t, dir, "lab.toml", "[[board]]\nname = \"vm-0\"\ndevice_type = \"qemu\"\nbackend = \"qemu\"\n[board.qemu]\narch = \"aarch64\"\nmemory = \"256M\"\n")
	src := `job_name: lava qemu context
device_type: qemu
timeouts: {job: {minutes: 4}}
context: {arch: amd64, netdevice: user, memory: 256, extra_options: [-smp, 1]}
actions:
- boot:
    method: qemu
    media: tmpfs
    prompts: ['/ # ']
- test:
    definitions:
    - from: inline
      name: arch
      path: inline/arch.yaml
      repository:
        metadata: {name: arch, format: Lava-Test Test Definition 1.0}
        run:
          steps:
          - lava-test-case arch --shell test "$(uname -m)" = x86_64
`
	job := writeFile(t, dir, "job.yaml", src)
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	assert.Equal(t, "pass", testsByKey(readResults(t, res.out))["node-0/arch/arch"])

	bad := writeFile(t, dir, "bad.yaml", strings.Replace(src, "[-smp, 1]", "[-smp, 1, -global, virtio-blk-device.scsi=off]", 1))
	res = troupe(t, "run", "--lab", labFile, "--out", "OUT", bad)
	assert.Equal(t, 2, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	assert.Contains(t, res.stdout+res.stderr, `context.extra_options: "-global": not supported`)
}

// TestLAVALabMirrors: a lab file's [lava_mirrors] serves the from: git
// test definitions of LAVA jobs to troupe run and to troupe serve, as
// --lava-mirror does; without it the same job is refused (nothing is
// fetched from the network).
func TestLAVALabMirrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gitRepo(t, filepath.Join(dir, "mirror", "qa", "defs.git"), map[string]string{
		"smoke.yaml": "metadata: {name: smoke}\nrun:\n  steps:\n  - lava-test-case mirrored --result pass\n",
	})
	labBody := "[[board]]\nname = \"sim-0\"\ndevice_type = \"qemu\"\n"
	bare := writeFile(t, dir, "bare.toml", labBody)
	labFile := writeFile(t, dir, "lab.toml", labBody+"[lava_mirrors]\n\"https://git.example.org/\" = \"mirror\"\n")
	job := writeFile(t, dir, "job.yaml", `job_name: lab mirror
device_type: qemu
timeouts: {job: {minutes: 2}}
actions:
- boot: {method: qemu, media: tmpfs, prompts: ['# ']}
- test:
    definitions:
    - {from: git, repository: 'https://git.example.org/qa/defs.git', path: smoke.yaml, name: smoke}
`)
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	assert.Equal(t, "pass", testsByKey(readResults(t, res.out))["node-0/smoke/mirrored"])
	res = troupe(t, "run", "--lab", bare, "--out", "OUT", job)
	assert.Equal(t, 3, res.code, "without the lab's mirror: refused\n%s", res.stderr)

	srv := startServe(t, "--lab", labFile, "--data", filepath.Join(dir, "data"))
	r := troupeIn(t, dir, "submit", job, "--server", srv.url)
	assert.Equal(t, 0, r.code, "the server takes the job through the lab's mirror: %s%s", r.stdout, r.stderr)
	srv2 := startServe(t, "--lab", bare, "--data", filepath.Join(dir, "data2"))
	r = troupeIn(t, dir, "submit", job, "--server", srv2.url)
	assert.Equal(t, 3, r.code, "without the lab's mirror the server refuses it: %s%s", r.stdout, r.stderr)
}

// TestLAVANFSModules: a LAVA deploy's modules are unpacked over its
// nfsrootfs as LAVA's extract-modules does: the simulated u-boot board
// that mounts the nfsrootfs sees them.
func TestLAVANFSModules(t *testing.T) {
	t.Parallel()
	addr, sock := simboard(t, "bbb-01", false, "--bootloader", "u-boot")
	dir := t.TempDir()
	writeFile(t, dir, "zImage", "kernel")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rootfs.tar.gz"), rootfsTarGz(t, map[string]string{"etc/nfs-marker": "from-the-nfsrootfs\n"}), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.tar.gz"), rootfsTarGz(t, map[string]string{"lib/modules/6.1.0-lava/kernel/m.ko": "module\n"}), 0o644))
	job := writeFile(t, dir, "job.yaml", strings.NewReplacer(
		"nfsrootfs: {url: rootfs.tar.gz, sha256sum: %x}", "nfsrootfs: {url: rootfs.tar.gz}\n    modules: {url: modules.tar.gz, compression: gz}",
		`"$HOME/etc/nfs-marker"`, `"$HOME/etc/nfs-marker"`+"\n          - lava-test-case modules --shell grep -q module \"$HOME/lib/modules/6.1.0-lava/kernel/m.ko\"",
	).Replace(nfsJob))
	res := troupe(t, "run", "--lab", nfsLab(t, dir, addr, sock, true), "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	cases := testsByKey(readResults(t, res.out))
	assert.Equal(t, "pass", cases["node-0/nfs/rootfs"], "%v", cases)
	assert.Equal(t, "pass", cases["node-0/nfs/modules"], "the modules are in the nfsrootfs: %v", cases)
}

// TestImportLAVAFetchesNothing: import-lava prints the job with the cache
// paths of its images, fetching none, and says which are not fetched yet.
func TestImportLAVAFetchesNothing(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte("kernel"))
	}))
	defer srv.Close()
	dir := t.TempDir()
	job := writeFile(t, dir, "job.yaml", fmt.Sprintf(`job_name: import
device_type: qemu
actions:
- deploy:
    to: tmpfs
    images:
      kernel: {url: %s/img/vmlinuz, sha256sum: %s}
- boot: {method: qemu, prompts: ['# ']}
`, srv.URL, strings.Repeat("ab", 32)))
	res := troupe(t, "import-lava", job)
	require.Equal(t, 0, res.code, res.stderr)
	assert.Equal(t, int32(0), hits.Load(), "nothing downloaded")
	assert.Contains(t, res.stdout, ".lava-cache/")
	assert.Regexp(t, `troupe: \S+/\.lava-cache/\S+/vmlinuz is not fetched yet: `+"`troupe run "+`\S+job\.yaml`+"`"+` fetches it`, res.stderr)
}
