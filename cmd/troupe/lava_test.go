package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5" //nolint:gosec // LAVA's md5sum key
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lava"
	"github.com/troupe-lab/troupe/qemu"
	"github.com/troupe-lab/troupe/report"
)

// gitRepo creates a git repository at dir holding files, committed.
func gitRepo(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for name, body := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		require.NoError(t, os.WriteFile(p, []byte(body), mode))
	}
	for _, args := range [][]string{{"init", "--quiet", "--initial-branch=main"}, {"add", "-A"}, {"commit", "--quiet", "-m", "tests"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "git %v: %s", args, out)
	}
}

// TestLAVAGitMultiNode: a LAVA MultiNode job whose test definitions come
// from git (a repository the test made, reached through --lava-mirror),
// with an action-level protocol request, parse.pattern + fixupdict, the
// documented cache-file idiom on two consecutive waits, a script of the
// repository, parameters, and LAVA's stop at the first failing step.
func TestLAVAGitMultiNode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mirror := filepath.Join(dir, "mirror")
	gitRepo(t, filepath.Join(mirror, "qa", "tests.git"), map[string]string{
		"server/server.yaml": `metadata: {name: server, format: Lava-Test Test Definition 1.0}
run:
  steps:
  - lava-send ipv4 ipaddr=10.1.2.3
  - lava-send port port=5201
  - 'echo "case boot/fs: PASS"'
  - lava-test-set start network
  - 'echo "case net: FAIL"'
  - lava-test-reference upstream --result pass --reference https://git.example.org/qa/tests/-/jobs/7
  - lava-test-set stop
  - printf 'server log\n' > server.log
  - lava-test-case-attach boot_fs server.log text/plain
  - echo "env=$LAVA_DEVICE_TYPE/$LAVA_DEVICE_HOSTNAME/$LAVA_JOB_ID/$TESTRUN_ID"
  - lava-test-case env --shell test "$LAVA_DEVICE_TYPE" = qemu -a -n "$LAVA_JOB_ID" -a -n "$LAVA_DEVICE_HOSTNAME" -a "$TESTRUN_ID" = server
  - lava-sync done
parse:
  pattern: '^case (?P<test_case_id>\S+): (?P<result>PASS|FAIL)$'
  fixupdict: {PASS: pass, FAIL: fail}
`,
		"client.yaml": `metadata: {name: client}
params: {GREETING: hello, OTHER: kept}
install:
  deps: [iperf3]
  steps:
  - echo "installed from $(pwd | sed 's,.*/,,')"
run:
  steps:
  - sleep 2
  - lava-send client-ready
  - lava-wait ipv4
  - ip=$(cut -d = -f 2 /tmp/lava_multi_node_cache.txt)
  - lava-wait port
  - port=$(cut -d = -f 2 /tmp/lava_multi_node_cache.txt)
  - ./lib/check.sh "$ip" "$port"
  - echo "greeting=$GREETING other=$OTHER run=$TESTRUN_ID"
  - lava-sync done
  - "false"
  - lava-test-case after-false --result pass
`,
		"lib/check.sh": `#!/bin/sh
[ "$1" = 10.1.2.3 ] && lava-test-case first-wait --result pass || lava-test-case first-wait --result fail
[ "$2" = 5201 ] && lava-test-case second-wait --result pass || lava-test-case second-wait --result fail
`,
	})
	job := writeFile(t, dir, "job.yaml", `job_name: lava git multinode
timeouts:
  job: {minutes: 3}
  connection: {minutes: 1}
  actions: {lava-test-shell: {minutes: 2}}
protocols:
  lava-multinode:
    roles:
      server: {device_type: qemu, count: 1, context: {arch: amd64}}
      client: {device_type: qemu, count: 1}
    timeout: {seconds: 40}
actions:
- boot:
    role: [server, client]
    method: qemu
    media: tmpfs
    prompts: 'root@debian:~#'
    auto_login: {login_prompt: 'login:', username: root}
    failure_retry: 2
- test:
    role: [server]
    protocols:
      lava-multinode:
      - action: lava-test-shell
        request: lava-wait
        messageID: client-ready
    definitions:
    - repository: https://git.example.org/qa/tests.git
      from: git
      path: server/server.yaml
      name: server
- test:
    role: [client]
    definitions:
    - repository: https://git.example.org/qa/tests.git
      from: git
      branch: main
      path: client.yaml
      name: client
      parameters: {GREETING: hi}
`)
	res := troupe(t, "run", "--out", "OUT", "--lava-mirror", "https://git.example.org/="+mirror, job)
	require.Equal(t, 1, res.code, "a case failed; stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	assert.Contains(t, res.stderr, "install.deps (iperf3) are not installed")
	cases := map[string]string{}
	byKey := map[string]report.Test{}
	for _, c := range readResults(t, res.out).Tests {
		cases[c.Node+"/"+c.Suite+"/"+c.Name] = string(c.Result)
		byKey[c.Node+"/"+c.Suite+"/"+c.Name] = c
	}
	assert.Equal(t, "pass", cases["server-0/server/boot_fs"], "parse.pattern: %v", cases)
	assert.Equal(t, "fail", cases["server-0/server/net"], "fixupdict: %v", cases)
	assert.Equal(t, "pass", cases["server-0/server/env"], "LAVA's environment variables: %v\n%s", cases, readLog(t, res.out, "server-0"))
	assert.Equal(t, "network", byKey["server-0/server/net"].Set, "lava-test-set")
	assert.Equal(t, "", byKey["server-0/server/boot_fs"].Set)
	ref := byKey["server-0/server/upstream"]
	assert.Equal(t, report.Test{Node: "server-0", Role: "server", Suite: "server", Name: "upstream", Result: "pass", Set: "network",
		Reference: "https://git.example.org/qa/tests/-/jobs/7"}, ref, "lava-test-reference")
	att := byKey["server-0/server/boot_fs"].Attachments
	if assert.Len(t, att, 1, "lava-test-case-attach") {
		assert.Equal(t, "server log\n", string(att[0].Data))
		assert.Equal(t, "text/plain", att[0].MimeType)
		saved, err := os.ReadFile(filepath.Join(res.out, filepath.FromSlash(att[0].Path)))
		require.NoError(t, err, "attachments are saved in the results directory")
		assert.Equal(t, "server log\n", string(saved))
		junit, err := os.ReadFile(filepath.Join(res.out, report.JUnitFile))
		require.NoError(t, err)
		assert.Contains(t, string(junit), "[[ATTACHMENT|"+att[0].Path+"]]")
	}
	assert.Equal(t, "pass", cases["client-0/client/first-wait"], "%v", cases)
	assert.Equal(t, "pass", cases["client-0/client/second-wait"], "the cache holds only the second reply: %v", cases)
	assert.NotContains(t, cases, "client-0/client/after-false", "LAVA's run script stops at the first failing step")
	client := readLog(t, res.out, "client-0")
	assert.Contains(t, client, "greeting=hi other=kept run=client")
	assert.Contains(t, client, "installed from repo")
	sent := groupLogTime(t, res.out, "client-0", "<LAVA_SEND client-ready")
	served := groupLogTime(t, res.out, "server-0", "case boot/fs")
	assert.False(t, served.Before(sent), "the server's test waited for client-ready before it started (%s, %s)", sent, served)
}

// TestLAVAQemuHTTPImages: a LAVA QEMU job whose kernel and (gzip
// compressed) initrd are http URLs, served on loopback, with checksums:
// downloaded once, checked, unpacked, and booted by a QEMU board.
func TestLAVAQemuHTTPImages(t *testing.T) {
	t.Parallel()
	needQemu(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	im, err := qemu.DefaultImages(ctx, "x86_64", "", nil)
	require.NoError(t, err)
	kernel, err := os.ReadFile(im.Kernel)
	require.NoError(t, err)
	initrd, err := os.ReadFile(im.Initrd)
	require.NoError(t, err)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, err = zw.Write(initrd)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	files := map[string][]byte{"/img/vmlinuz": kernel, "/img/initrd.gz": gz.Bytes()}
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	defer srv.Close()
	ksum := sha256.Sum256(kernel)
	isum := md5.Sum(gz.Bytes()) //nolint:gosec // LAVA's md5sum key
	dir := t.TempDir()
	labFile := writeFile(t, dir, "lab.toml", "[[board]]\nname = \"vm-0\"\ndevice_type = \"qemu\"\nbackend = \"qemu\"\n[board.qemu]\narch = \"x86_64\"\nmemory = \"256M\"\n")
	job := writeFile(t, dir, "job.yaml", fmt.Sprintf(`job_name: lava qemu http images
device_type: qemu
timeouts: {job: {minutes: 4}, connection: {minutes: 2}}
context: {arch: amd64}
actions:
- deploy:
    to: tmpfs
    os: oe
    images:
      kernel:
        url: %[1]s/img/vmlinuz
        image_arg: -kernel {kernel}
        sha256sum: %[2]x
      initrd:
        url: %[1]s/img/initrd.gz
        image_arg: -initrd {initrd}
        compression: gz
        md5sum: %[3]x
- boot:
    method: qemu
    media: tmpfs
    prompts: ['/ # ']
- test:
    definitions:
    - from: inline
      name: kernel
      path: inline/kernel.yaml
      repository:
        metadata: {name: kernel, format: Lava-Test Test Definition 1.0}
        run:
          steps:
          - lava-test-case uname --shell test "$(uname -r)" = %[4]q
`, srv.URL, ksum, isum, hostKernel(t)))
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	assert.Equal(t, "pass", testsByKey(readResults(t, res.out))["node-0/kernel/uname"])
	assert.Equal(t, int32(2), hits.Load(), "each image downloaded once")

	// Validating fetches nothing; a checksum that does not match refuses
	// the run before anything runs, naming the image's key.
	bad := writeFile(t, dir, "bad.yaml", strings.Replace(readFileString(t, job), fmt.Sprintf("%x", ksum), strings.Repeat("0", 64), 1))
	before := hits.Load()
	res = troupe(t, "validate", bad)
	assert.Equal(t, 0, res.code, res.stderr)
	assert.Equal(t, before, hits.Load(), "validate downloads nothing")
	res = troupe(t, "run", "--lab", labFile, "--out", "OUT", bad)
	assert.Equal(t, 3, res.code)
	assert.Contains(t, res.stderr, "actions[0].deploy.images.kernel.url:")
	assert.Contains(t, res.stderr, "checksum mismatch: sha256sum is")
}

func readFileString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

// TestLAVAUBootTFTP: a LAVA job that deploys kernel, ramdisk and dtb to:
// tftp and boots with u-boot's named ramdisk commands runs on a simulated
// u-boot board: the images are served by troupe's TFTP server and the
// board's lab entry gives the commands (the LAVA device dictionary's part).
func TestLAVAUBootTFTP(t *testing.T) {
	t.Parallel()
	addr, sock := simboard(t, "bbb-01", false, "--bootloader", "u-boot")
	dir := t.TempDir()
	writeFile(t, dir, "zImage", "kernel")
	writeFile(t, dir, "am335x-boneblack.dtb", "device tree")
	packed := func() []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write([]byte("ramdisk"))
		require.NoError(t, zw.Close())
		return b.Bytes()
	}()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ramdisk.cpio.gz"), packed, 0o644))
	labFile := ubootLab(t, dir, "bbb-01", "beaglebone-black", addr, sock, "Hit any key to stop autoboot", tftpBootCommands)
	job := writeFile(t, dir, "job.yaml", fmt.Sprintf(`job_name: bbb ramdisk over tftp
device_type: beaglebone-black
timeouts:
  job: {minutes: 3}
  action: {minutes: 1}
  connection: {minutes: 1}
priority: medium
visibility: public
actions:
- deploy:
    timeout: {minutes: 1}
    to: tftp
    kernel: {url: zImage, type: zimage}
    ramdisk: {url: ramdisk.cpio.gz, compression: gz, md5sum: %x}
    dtb: {url: am335x-boneblack.dtb}
    os: oe
- boot:
    method: u-boot
    commands: ramdisk
    type: bootz
    prompts: ['/ #', 'root@bbb:']
    auto_login: {login_prompt: 'login:', username: root}
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
`, md5.Sum(packed)))
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	assert.NotContains(t, res.stderr, "stood in for", "a lab was given")
	_, err := os.Stat(filepath.Join(dir, lava.CacheDir))
	require.NoError(t, err, "the checked, unpacked ramdisk is cached under the images root, the job file's directory")
	log := readLog(t, res.out, "node-0")
	for _, f := range []string{"bbb-01/zImage", "bbb-01/ramdisk.cpio", "bbb-01/am335x-boneblack.dtb"} {
		assert.Contains(t, log, f, "fetched over TFTP")
	}
	assert.Equal(t, "pass", testsByKey(readResults(t, res.out))["node-0/smoke/booted"])
}
