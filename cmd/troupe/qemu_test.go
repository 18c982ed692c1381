package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/internal/testenv"
	"github.com/troupe-lab/troupe/qemu"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/workers"
)

// needQemu skips a QEMU test where QEMU or a kernel is missing, or fails
// saying what to install under TROUPE_REQUIRE_TOOLS=1 (make test).
func needQemu(t *testing.T) {
	t.Helper()
	if err := qemu.Missing(); err != nil {
		testenv.Missing(t, err.Error())
	}
}

// needArm64 is needQemu for aarch64 boards: qemu-system-aarch64 and the
// arm64 packages their default images are built from (make deps fetches
// them with qemu/images/fetch-arm64.sh).
func needArm64(t *testing.T) {
	t.Helper()
	needQemu(t)
	var missing []string
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		missing = append(missing, "qemu-system-aarch64")
	}
	dir := qemu.Arm64Dir()
	if _, err := os.Stat(filepath.Join(dir, "packages")); err != nil {
		missing = append(missing, "the arm64 kernel and busybox in "+dir)
	}
	if len(missing) == 0 {
		return
	}
	msg := "aarch64 QEMU boards need " + strings.Join(missing, ", ") +
		": make deps (apt-get install -y qemu-system-arm; sh qemu/images/fetch-arm64.sh " + dir + ")"
	testenv.Missing(t, msg)
}

// hostKernel is the release of the newest installed kernel, which QEMU
// boards boot by default.
func hostKernel(t *testing.T) string {
	k, _ := filepath.Glob("/boot/vmlinuz-*")
	require.NotEmpty(t, k)
	return strings.TrimPrefix(k[len(k)-1], "/boot/vmlinuz-")
}

func testsByKey(r *report.Results) map[string]string {
	got := map[string]string{}
	for _, c := range r.Tests {
		got[c.Node+"/"+c.Suite+"/"+c.Name] = c.Result
	}
	return got
}

// TestQemuPair: two QEMU boards boot the installed kernel; the client
// learns the server's address with troupe-wait and fetches a file from its
// httpd over the group's private network; both sync.
func TestQemuPair(t *testing.T) {
	t.Parallel()
	needQemu(t)
	start := time.Now()
	res := troupe(t, "run", "--lab", "../../examples/labs/qemu.toml", "--out", "OUT", "../../examples/qemu-pair.toml")
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	t.Logf("2-node QEMU job: %s", time.Since(start))
	r := readResults(t, res.out)
	assert.Equal(t, report.StatusComplete, r.Job.Status)
	got := testsByKey(r)
	assert.Equal(t, "pass", got["client-0/fetch/fetch"], "%v", got)
	assert.Equal(t, "pass", got["client-0/fetch/content"], "%v", got)
	assert.Equal(t, "pass", got["server-0/troupe/serve"], "%v", got)
	// The server announced its address on the group network, and the
	// client fetched from exactly that address. The call went on the
	// board's side channel (a virtio-serial port), not its console: the
	// merged log has it, the console's log does not.
	m := regexp.MustCompile(`server-0 <LAVA_MULTI_NODE> <LAVA_SEND ready ip=(10\.\d+\.0\.\d+) port=8080>`).FindStringSubmatch(readGroupLog(t, res.out))
	require.NotNil(t, m, "server-0 sent its address")
	assert.NotContains(t, readLog(t, res.out, "server-0"), "<LAVA_MULTI_NODE>", "no MultiNode call on the console")
	assert.Contains(t, readLog(t, res.out, "server-0"), "server-0 runs Linux "+hostKernel(t)+" at "+m[1], "the installed kernel booted")
	for _, n := range []string{"server-0", "client-0"} {
		assert.Contains(t, readLog(t, res.out, n), n+" login:", "the guest's own login prompt")
	}
}

// TestQemuArmPair: an aarch64 board (Debian's arm64 kernel under TCG) and
// an x86_64 one in one group: the x86_64 client learns the aarch64
// server's address with troupe-wait and fetches a file from it over the
// group's private network; both sync.
func TestQemuArmPair(t *testing.T) {
	t.Parallel()
	needArm64(t)
	start := time.Now()
	res := troupe(t, "run", "--lab", "../../examples/labs/qemu.toml", "--out", "OUT", "../../examples/qemu-arm-pair.toml")
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	t.Logf("aarch64 + x86_64 QEMU job: %s", time.Since(start))
	r := readResults(t, res.out)
	assert.Equal(t, report.StatusComplete, r.Job.Status)
	got := testsByKey(r)
	assert.Equal(t, "pass", got["server-0/serve/arch"], "%v", got)
	assert.Equal(t, "pass", got["client-0/fetch/fetch"], "%v", got)
	assert.Equal(t, "pass", got["client-0/fetch/content"], "%v", got)
	assert.Equal(t, "pass", got["server-0/troupe/serve"], "%v", got)
	assert.Equal(t, "arm-0", nodeByName(t, r, "server-0").Board)
	server := readLog(t, res.out, "server-0")
	m := regexp.MustCompile(`server-0 <LAVA_MULTI_NODE> <LAVA_SEND ready ip=(10\.\d+\.0\.\d+) port=8080>`).FindStringSubmatch(readGroupLog(t, res.out))
	require.NotNil(t, m, "server-0 sent its address")
	assert.NotContains(t, server, "<LAVA_MULTI_NODE>", "the aarch64 guest's calls went on its side channel")
	assert.Regexp(t, `server-0 runs Linux \S+-arm64 aarch64 at `+regexp.QuoteMeta(m[1]), server, "Debian's arm64 kernel booted")
	assert.Contains(t, readLog(t, res.out, "client-0"), "client-0 runs Linux "+hostKernel(t)+" x86_64 at ")
	assert.Contains(t, server, "server-0 login:", "the guest's own login prompt")
}

// TestQemuKernelPanic: a guest kernel panic ends its node at once, naming
// the panic, and releases the peer waiting for it at a barrier: the job
// ends incomplete within seconds, not at a timeout.
func TestQemuKernelPanic(t *testing.T) {
	needQemu(t)
	job := writeJob(t, `
name = "qemu-panic"
timeout = "2m"
[multinode]
timeout = "90s"
[roles.server]
device_type = "qemu-x86_64"
[roles.client]
device_type = "qemu-x86_64"
[[action]]
type = "boot"
timeout = "60s"
[[action]]
type = "test"
roles = ["server"]
name = "crash"
timeout = "90s"
run = '''
troupe-wait waiting
echo c > /proc/sysrq-trigger
sleep 60
'''
[[action]]
type = "test"
roles = ["client"]
name = "wait"
timeout = "90s"
run = '''
troupe-send waiting
troupe-test-case synced --shell troupe-sync done
'''
`)
	res := troupe(t, "run", "--lab", "../../examples/labs/qemu.toml", "--out", "OUT", job)
	require.Equal(t, 2, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	r := readResults(t, res.out)
	assert.Equal(t, report.StatusIncomplete, r.Job.Status)
	assert.Contains(t, r.Job.Error, "server-0")
	assert.Contains(t, r.Job.Error, "Kernel panic - not syncing: sysrq triggered") // the whole line (console.KernelPanic)
	server := nodeByName(t, r, "server-0")
	assert.Equal(t, report.StatusIncomplete, server.Status)
	assert.Equal(t, "fail", testsByKey(r)["client-0/wait/synced"], "the barrier failed")
	assert.Contains(t, readLog(t, res.out, "client-0"), "server-0", "the client is told who died")
	panicked := groupLogTime(t, res.out, "server-0", "Kernel panic - not syncing")
	ended := groupLogTime(t, res.out, "client-0", "synced RESULT=fail")
	assert.Less(t, ended.Sub(panicked), 5*time.Second, "the peer is released fast")
	assert.Less(t, r.Job.DurationS, 60.0, "no timeout was waited for")
}

// TestQemuMixedGroup: a QEMU role deployed with images built by the repo's
// script and a sim role in one job: MultiNode calls go across both kinds.
func TestQemuMixedGroup(t *testing.T) {
	t.Parallel()
	needQemu(t)
	images := t.TempDir()
	out, err := exec.Command("sh", "../../qemu/images/mkinitramfs.sh", images).CombinedOutput()
	require.NoError(t, err, "%s", out)
	// Images resolve under the job file's directory.
	job := writeFile(t, images, "job.toml", `
name = "qemu-mixed"
timeout = "2m"
[multinode]
timeout = "60s"
[roles.vm]
device_type = "qemu-x86_64"
[roles.host]
device_type = "sim"
[[action]]
type = "deploy"
roles = ["vm"]
images = {kernel = "vmlinuz", initrd = "initrd"}
[[action]]
type = "boot"
timeout = "60s"
[[action]]
type = "test"
roles = ["vm"]
name = "guest"
timeout = "60s"
run = '''
troupe-send hello ip="$TROUPE_IP" kernel="$(uname -r)"
eval "$(troupe-wait reply)"
troupe-test-case reply --shell test "$from" = host-0
troupe-sync done
'''
[[action]]
type = "test"
roles = ["host"]
name = "host"
timeout = "60s"
run = '''
eval "$(troupe-wait hello)"
echo "vm at $ip runs $kernel"
troupe-test-case vm-address --shell expr "$ip" : '10\.'
troupe-send reply from="$TROUPE_NODE"
troupe-sync done
'''
`)
	res := troupe(t, "run", "--lab", "../../examples/labs/qemu.toml", "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	got := testsByKey(readResults(t, res.out))
	assert.Equal(t, "pass", got["vm-0/guest/reply"], "%v", got)
	assert.Equal(t, "pass", got["host-0/host/vm-address"], "%v", got)
	assert.Regexp(t, `vm at 10\.\d+\.0\.\d+ runs \d+\.\d+`, readLog(t, res.out, "host-0"))
	assert.Regexp(t, `(?m)^vm-0\s+vm\s+vm-\d\s+complete`, res.stdout)
	assert.Regexp(t, `(?m)^host-0\s+host\s+sim-\d\s+complete`, res.stdout)
}

// TestQemuDiesWithTroupe: QEMU processes never outlive troupe, even when
// it is killed with SIGKILL and cannot power anything off.
func TestQemuDiesWithTroupe(t *testing.T) {
	t.Parallel()
	needQemu(t)
	role := fmt.Sprintf("orphan%d", time.Now().UnixNano())
	job := writeJob(t, `
name = "qemu-orphan"
timeout = "2m"
[roles.`+role+`]
device_type = "qemu-x86_64"
[[action]]
type = "boot"
timeout = "60s"
[[action]]
type = "test"
name = "hang"
run = "sleep 1000"
`)
	cmd := exec.Command(troupeBin, "run", "--lab", "../../examples/labs/qemu.toml", "--out", filepath.Join(t.TempDir(), "out"), job)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	timeout := time.After(time.Minute)
	for started := false; !started; {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "troupe ended before the test started")
			started = strings.Contains(l, "test 'hang'")
		case <-timeout:
			t.Fatal("the QEMU board did not get to its test within a minute")
		}
	}
	pid := qemuOf(t, role+"-0")
	require.NotZero(t, pid, "the QEMU process of %s-0", role)
	require.NoError(t, cmd.Process.Kill())
	for range lines {
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for qemuAlive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	assert.False(t, qemuAlive(pid), "QEMU (pid %d) outlived troupe", pid)
}

// qemuOf finds the QEMU process booting node (its kernel command line has
// troupe.name=node); 0: none.
func qemuOf(t *testing.T, node string) int {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	require.NoError(t, err)
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil || !bytes.Contains(b, []byte("troupe.name="+node+"\x00")) && !bytes.Contains(b, []byte("troupe.name="+node+" ")) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(d))); err == nil {
			return pid
		}
	}
	return 0
}

// qemuAlive: the process exists and is not a zombie.
func qemuAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	return err == nil && !regexp.MustCompile(`(?m)^State:\s+Z`).Match(b)
}

// workersQemuJob: two QEMU nodes of a worker on their group's network
// there: the client fetches a file from the server's httpd at the address
// it sent.
const workersQemuJob = `name = "worker-qemu"
timeout = "3m"

[roles.server]
device_type = "qemu-x86_64"

[roles.client]
device_type = "qemu-x86_64"

[[action]]
type = "boot"
timeout = "90s"

[[action]]
type = "test"
name = "talk"
timeout = "60s"
run = '''
if [ "$TROUPE_ROLE" = server ]; then
	mkdir -p /tmp/www
	echo "hello from $TROUPE_NODE" > /tmp/www/greeting.txt
	httpd -p 8080 -h /tmp/www
	troupe-send ready ip="$TROUPE_IP" port=8080
else
	eval "$(troupe-wait ready)"
	troupe-test-case ready --shell test "$port" = 8080
	troupe-test-case fetch --shell wget -q -O /tmp/got "http://$ip:$port/greeting.txt"
	troupe-test-case content --shell grep -q "hello from server-0" /tmp/got
fi
troupe-test-case synced --shell troupe-sync done
'''
`

// TestWorkersQemuPair: two QEMU boards of a worker (its board actors run
// there, over its own QEMU backends): the job passes, the client reaching
// the server over their group network on the worker; the guests'
// MultiNode calls went on their side channels (in the merged log, not on
// the consoles) and their helpers were not typed (Init's first command
// found them).
func TestWorkersQemuPair(t *testing.T) {
	t.Parallel()
	needQemu(t)
	ca := labCA(t, "w1")
	lab := filepath.Join(t.TempDir(), "lab.toml")
	require.NoError(t, os.WriteFile(lab, []byte(`[[board]]
name = "wvm-0"
device_type = "qemu-x86_64"
backend = "qemu"
[board.qemu]
arch = "x86_64"

[[board]]
name = "wvm-1"
device_type = "qemu-x86_64"
backend = "qemu"
[board.qemu]
arch = "x86_64"
`), 0o644))
	addr, data := freeAddr(t), t.TempDir()
	srv := startServe(t, "--data", data, "--workers", addr, "--tls", ca)
	startWorkerProc(t, "--server", addr, "--lab", lab, "--name", "w1", "--tls", ca, "--data", t.TempDir())
	waitWorkers(t, srv.url, "the worker joined", func(ws map[string]workers.WorkerStatus) bool {
		return ws["w1"].Connected
	}, 60*time.Second)
	id := submitJob(t, srv.url, workersQemuJob)
	j := waitEnded(t, srv.url, id, 3*time.Minute)
	require.Equal(t, report.StatusComplete, j.Status, "%+v\n%s", j, srv.out.String())
	require.Len(t, j.Tests, 7, "synced and talk on each node, ready, fetch and content on the client")
	for _, tc := range j.Tests {
		assert.Equal(t, report.Pass, tc.Result, "%s %s/%s", tc.Node, tc.Suite, tc.Name)
	}
	logs := filepath.Join(data, "jobs", id, "logs")
	group, err := os.ReadFile(filepath.Join(logs, "group.log"))
	require.NoError(t, err)
	assert.Regexp(t, `server-0 <LAVA_MULTI_NODE> <LAVA_SEND ready ip=10\.\d+\.0\.\d+ port=8080>`, string(group), "the server's address on its group network")
	for _, n := range []string{"server-0", "client-0"} {
		raw, err := os.ReadFile(filepath.Join(logs, n+".log"))
		require.NoError(t, err)
		assert.NotContains(t, string(raw), "<LAVA_MULTI_NODE>", "%s: no MultiNode call on the console", n)
		assert.Regexp(t, `<TROUPE_END \S+-1 0>`, string(raw), "%s: the helpers were in the guest's /tmp at boot", n)
	}
}
