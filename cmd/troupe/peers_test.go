package main

// End-to-end tests against REAL protocol peers: Debian's ser2net (4.x,
// YAML config) bridging a board's serial console to a raw TCP port, and
// Debian's pdudaemon (HTTP listener, localcmdline driver) switching the
// boards' power. The boards are `troupe simboard` processes (see
// hardware_test.go). Needs the packages ser2net and pdudaemon; without them
// the tests skip, except under TROUPE_REQUIRE_TOOLS=1 (make test) where
// they fail.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/internal/testenv"
	"github.com/troupe-lab/troupe/report"
)

// peerStartTimeout bounds how long a peer may take to listen.
const peerStartTimeout = 15 * time.Second

// needPeer returns the path of the peer program name (looked up on PATH,
// then in the sbin directories, where Debian puts daemons). A missing peer
// skips the test, or fails it under TROUPE_REQUIRE_TOOLS=1 (make test): a
// full run must never skip silently.
func needPeer(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found (install the Debian package %s: apt-get install -y %s)", name, pkg, pkg)
	testenv.Missing(t, msg)
	return ""
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// peer is a running peer process, its output in a log file.
type peer struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has ended
}

// Log returns what the peer has written so far.
func (p *peer) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func (p *peer) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startPeer runs argv in its own process group, stdout and stderr to a
// log file. At cleanup it gets SIGTERM, then its whole group SIGKILL if it
// has not ended within 5s; its log is shown if the test failed.
func startPeer(t *testing.T, name string, argv ...string) *peer {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	require.NoError(t, err)
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start(), "start %s", name)
	p := &peer{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Logf("%s did not end on SIGTERM: killing its process group", name)
		}
		// Whatever the peer started (pdudaemon's outlet commands) goes too.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Errorf("%s (pid %d) did not end on SIGKILL", name, cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.Log())
		}
	})
	return p
}

// waitFor polls ready until it says true, failing the test if the peer
// ends first or timeout passes.
func (p *peer) waitFor(t *testing.T, what string, timeout time.Duration, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ready() {
		if p.exited() {
			t.Fatalf("%s ended before %s; log:\n%s", p.name, what, p.Log())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s after %v; log:\n%s", p.name, what, timeout, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startSer2net runs the real ser2net bridging the serial device dev to a
// raw TCP port on 127.0.0.1 and returns that address once it accepts
// connections. ser2net opens the device only while a client is connected.
func startSer2net(t *testing.T, dev string) (addr string, p *peer) {
	t.Helper()
	bin := needPeer(t, "ser2net", "ser2net")
	dir := t.TempDir()
	addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	host, port, _ := net.SplitHostPort(addr)
	// accepter "tcp" is raw (no telnet); "local" ignores the modem lines,
	// which a pty does not have. Quoted: YAML would read ":" oddly.
	cfg := writeFile(t, dir, "ser2net.yaml", fmt.Sprintf(`%%YAML 1.1
---
connection: &board
  accepter: "tcp,%s,%s"
  connector: "serialdev,%s,115200n81,local"
  options:
    kickolduser: true
`, host, port, dev))
	// -n: foreground; -d: and log to stdout; -u: no UUCP lock files in
	// /var/lock; -P: the pid file, away from /run.
	p = startPeer(t, "ser2net", bin, "-n", "-d", "-u", "-c", cfg, "-P", filepath.Join(dir, "ser2net.pid"))
	p.waitFor(t, "listener on "+addr, peerStartTimeout, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return addr, p
}

// startPDUDaemon runs the real pdudaemon with its HTTP listener on
// 127.0.0.1 and one PDU, "lab-pdu", of driver localcmdline whose outlet n
// is the power control socket outlets[n] of a simboard. localcmdline runs
// cmd_on/cmd_off through the shell after Python's `cmd % port` (so exactly
// one %s, and a literal % doubled), ignoring the exit status. A lying PDU's
// on command does nothing, successfully. Returns the URL once the HTTP API
// answers.
// startPDUDaemon starts a real pdudaemon switching the simboards whose
// control sockets outlets names; lies ("on", "off" or "") is the command
// its outlets answer OK to without switching.
func startPDUDaemon(t *testing.T, outlets map[int]string, lies string) (url string, p *peer) {
	t.Helper()
	bin := needPeer(t, "pdudaemon", "pdudaemon")
	dir := t.TempDir()
	// The outlet number picks the socket through a symlink, so that the
	// port substitution is what routes a request to its board.
	for n, sock := range outlets {
		require.NoError(t, os.Symlink(sock, filepath.Join(dir, fmt.Sprintf("outlet-%d.sock", n))))
	}
	shq := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	pct := func(s string) string { return strings.ReplaceAll(s, "%", "%%") }
	outlet := func(op string) string {
		// The port is a number: safe inside the quotes.
		sock := strings.Replace(pct(shq(dir+"/outlet-\x00.sock")), "\x00", "%s", 1)
		return pct(shq(troupeBin)) + " simboard power " + sock + " " + op
	}
	cmdOn, cmdOff := outlet("on"), outlet("off")
	switch lies {
	case "on":
		cmdOn = ": lying PDU: outlet %s stays as it is"
	case "off":
		cmdOff = ": lying PDU: outlet %s stays as it is"
	}
	port := freePort(t)
	cfg, err := json.MarshalIndent(map[string]any{
		"daemon": map[string]any{
			"hostname":      "127.0.0.1",
			"port":          port,
			"listener":      "http",
			"logging_level": "DEBUG",
		},
		"pdus": map[string]any{
			"lab-pdu": map[string]any{
				"driver":  "localcmdline",
				"cmd_on":  cmdOn,
				"cmd_off": cmdOff,
				"retries": 1,
			},
		},
	}, "", "  ")
	require.NoError(t, err)
	conf := writeFile(t, dir, "pdudaemon.conf", string(cfg))
	p = startPeer(t, "pdudaemon", bin, "--conf", conf, "--logfile", "-", "--loglevel", "DEBUG")
	url = fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: 2 * time.Second}
	p.waitFor(t, "HTTP API on "+url, peerStartTimeout, func() bool {
		// Any answer will do (it is a 404): nothing is switched.
		resp, err := client.Get(url + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return url, p
}

// pdudaemonPower is a [board.power] table for outlet n of lab-pdu, read
// back from the simboard's control socket.
func pdudaemonPower(url string, n int, sock string) string {
	return fmt.Sprintf(`[board.power]
kind = "pdudaemon"
url = %q
hostname = "lab-pdu"
port = %d
state = [%q, "simboard", "power", %q, "status"]
`, url, n, troupeBin, sock)
}

func assertBoardOff(t *testing.T, sock string) {
	t.Helper()
	st := troupe(t, "simboard", "power", sock, "status")
	assert.Equal(t, "off\n", st.stdout, "board at %s: %s", sock, st.stderr)
}

// TestRealPeers runs a MultiNode job on three simulated boards reached
// through real peers and the real-board code: the rpi4 on a serial console
// (a pty, go.bug.st/serial), one bbb's console through ser2net, the other
// bbb's on a plain TCP port; all powered through pdudaemon; the bbbs boot
// through emulated u-boot, fetching the deployed image over TFTP.
func TestRealPeers(t *testing.T) {
	t.Parallel()
	needPeer(t, "ser2net", "ser2net")
	needPeer(t, "pdudaemon", "pdudaemon")
	ttyA, powerA := simboard(t, "peer-rpi", true)
	ttyB, powerB := simboard(t, "peer-bbb", true, "--bootloader", "u-boot")
	conC, powerC := simboard(t, "peer-bbb2", false, "--bootloader", "u-boot")
	conB, _ := startSer2net(t, ttyB)
	url, pdud := startPDUDaemon(t, map[int]string{1: powerA, 2: powerB, 3: powerC}, "")

	dir := t.TempDir()
	writeFile(t, dir, "Image", "a kernel image, fetched by u-boot over TFTP")
	uboot := `[board.boot]
method = "u-boot"
interrupt = "Hit any key to stop autoboot"
commands = ["setenv serverip {server_ip}", "tftpboot {kernel_addr} {kernel}", "booti {kernel_addr}"]
vars = { kernel_addr = "0x80000" }
[board.deploy]
method = "tftp"
`
	labFile := writeFile(t, dir, "lab.toml", fmt.Sprintf(`retries = 0
[tftp]
address = "127.0.0.1:0"

[[board]]
name = "peer-rpi"
device_type = "rpi4"
backend = "hardware"
[board.console]
kind = "serial"
device = %q
%s
[[board]]
name = "peer-bbb"
device_type = "bbb"
backend = "hardware"
[board.console]
kind = "tcp"
address = %q
%s%s
[[board]]
name = "peer-bbb2"
device_type = "bbb"
backend = "hardware"
[board.console]
kind = "tcp"
address = %q
%s%s`, ttyA, pdudaemonPower(url, 1, powerA), conB, pdudaemonPower(url, 2, powerB), uboot, conC, pdudaemonPower(url, 3, powerC), uboot))
	job := writeFile(t, dir, "job.toml", `name = "real-peers"
timeout = "2m"
[multinode]
timeout = "30s"
[roles.server]
device_type = "rpi4"
[roles.client]
device_type = "bbb"
count = 2
[[action]]
type = "deploy"
roles = ["client"]
image = "Image"
[[action]]
type = "boot"
timeout = "30s"
[[action]]
type = "test"
name = "talk"
run = '''
echo "$TROUPE_NODE on $TROUPE_BOARD"
if [ "$TROUPE_ROLE" = server ]; then troupe-send hello from=$TROUPE_BOARD; fi
if [ "$TROUPE_ROLE" = client ]; then troupe-test-case got-hello --shell troupe-wait hello; fi
troupe-test-case synced --shell troupe-sync done
'''`)
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	r := readResults(t, res.out)
	assert.Equal(t, report.StatusComplete, r.Job.Status)
	server, client := nodeByName(t, r, "server-0"), nodeByName(t, r, "client-0")
	assert.Equal(t, "peer-rpi", server.Board)
	assert.Equal(t, "peer-bbb", client.Board)
	assert.Equal(t, "peer-bbb2", nodeByName(t, r, "client-1").Board)
	for _, n := range r.Nodes {
		assert.Equal(t, report.StatusComplete, n.Status, n.Name)
	}
	got := map[string]string{}
	for _, c := range r.Tests {
		got[c.Node+"/"+c.Name] = c.Result
	}
	assert.Equal(t, "pass", got["client-0/got-hello"], "%v", got)
	assert.Equal(t, "pass", got["server-0/synced"], "%v", got)
	assert.Equal(t, "pass", got["client-0/synced"], "%v", got)
	assert.Equal(t, "pass", got["client-1/got-hello"], "%v", got)
	for _, n := range []string{"client-0", "client-1"} {
		l := readLog(t, res.out, n)
		assert.Regexp(t, `Bytes transferred = \d+`, l, "u-boot fetched the image over TFTP")
		assert.Contains(t, l, "tftpboot 0x80000 peer-bbb")
	}
	assert.Contains(t, readLog(t, res.out, "server-0"), "peer-rpi login:")
	clientLog := readLog(t, res.out, "client-0")
	assert.Contains(t, clientLog, "peer-bbb login:") // through ser2net
	assert.Contains(t, clientLog, "\nfrom=peer-rpi\n")

	// pdudaemon switched both outlets on, then off, through localcmdline.
	log := pdud.Log()
	for _, n := range []int{1, 2, 3} {
		on := fmt.Sprintf("Processing job for PDU lab-pdu: (on %d)", n)
		off := fmt.Sprintf("Processing job for PDU lab-pdu: (off %d)", n)
		assert.Contains(t, log, fmt.Sprintf("Handling HTTP request from 127.0.0.1: /power/control/on?hostname=lab-pdu&port=%d", n))
		assert.Contains(t, log, on)
		assert.Contains(t, log, off)
		assert.Contains(t, log, fmt.Sprintf("outlet-%d.sock' on", n))
		assert.Less(t, strings.LastIndex(log, on), strings.LastIndex(log, off), "outlet %d: the last request was not off:\n%s", n, log)
	}
	assert.NotContains(t, log, "Failed to execute job")
	for _, sock := range []string{powerA, powerB, powerC} {
		assertBoardOff(t, sock)
	}
}

// bootOnSerialBoard runs a job that boots the rpi4 called name, its
// console on the serial device tty, switched by the [board.power] table
// power, in a lab with retries.
func bootOnSerialBoard(t *testing.T, retries int, name, tty, power string) runResult {
	t.Helper()
	dir := t.TempDir()
	labFile := writeFile(t, dir, "lab.toml", fmt.Sprintf(`retries = %d

[[board]]
name = %q
device_type = "rpi4"
backend = "hardware"
[board.console]
kind = "serial"
device = %q
%s`, retries, name, tty, power))
	job := writeFile(t, dir, "job.toml", "name = \"boot-"+name+"\"\ntimeout = \"1m\"\n[roles.a]\ndevice_type = \"rpi4\"\n[[action]]\ntype = \"boot\"\ntimeout = \"30s\"\n")
	return troupe(t, "run", "--lab", labFile, "--out", "OUT", job)
}

// TestRealPDULies: pdudaemon answers 200 to "on" but its outlet command
// does not switch anything. The read-back catches it: the job ends
// incomplete with an infrastructure error, after a few tries.
func TestRealPDULies(t *testing.T) {
	t.Parallel()
	needPeer(t, "pdudaemon", "pdudaemon")
	tty, sock := simboard(t, "peer-liar", true)
	url, pdud := startPDUDaemon(t, map[int]string{1: sock}, "on")
	res := bootOnSerialBoard(t, 0, "peer-liar", tty, pdudaemonPower(url, 1, sock))
	assert.Equal(t, 2, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	r := readResults(t, res.out)
	assert.Equal(t, report.StatusIncomplete, r.Job.Status)
	assert.Equal(t, report.Infrastructure, r.Job.Class)
	assert.Contains(t, r.Job.Error, "power on peer-liar: the PDU answered OK but the outlet is still off")
	// The requests did reach pdudaemon, and its outlet command did run.
	log := pdud.Log()
	assert.Contains(t, log, "Processing job for PDU lab-pdu: (on 1)")
	assert.Contains(t, log, "running : lying PDU: outlet 1 stays as it is")
	assertBoardOff(t, sock)
}

// TestPDUDown: nothing listens at the board's pdudaemon URL. The job ends
// incomplete with an infrastructure error naming the board and the PDU.
func TestPDUDown(t *testing.T) {
	t.Parallel()
	tty, sock := simboard(t, "peer-nopdu", true)
	url := "http://127.0.0.1:" + strconv.Itoa(freePort(t)) // closed
	res := bootOnSerialBoard(t, 0, "peer-nopdu", tty, pdudaemonPower(url, 1, sock))
	assert.Equal(t, 2, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	r := readResults(t, res.out)
	assert.Equal(t, report.StatusIncomplete, r.Job.Status)
	assert.Equal(t, report.Infrastructure, r.Job.Class)
	assert.Regexp(t, `power (on|off) peer-nopdu: pdudaemon `+url+`: .*connection refused`, r.Job.Error)
	assertBoardOff(t, sock)
}

// TestRealPDULiesOnOff: a real pdudaemon whose outlet answers OK to "off"
// and stays on. The job, whose boot passed, ends incomplete with an
// infrastructure error naming the board and "still on"; the board is taken
// out of service at once, so it is never handed to another job.
func TestRealPDULiesOnOff(t *testing.T) {
	t.Parallel()
	tty, sock := simboard(t, "peer-left-on", true)
	url, pdud := startPDUDaemon(t, map[int]string{1: sock}, "off")
	res := bootOnSerialBoard(t, 1, "peer-left-on", tty, pdudaemonPower(url, 1, sock))
	assert.Equal(t, 2, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	r := readResults(t, res.out)
	assert.Equal(t, report.StatusIncomplete, r.Job.Status)
	assert.Equal(t, report.Infrastructure, r.Job.Class)
	assert.Contains(t, r.Job.Error, "peer-left-on still on")
	assert.Empty(t, r.Job.Attempts, "not retried: the only board went bad at once")
	assert.Contains(t, res.stderr, "board taken out of service")
	assert.Contains(t, pdud.Log(), "running : lying PDU: outlet 1 stays as it is")
	assert.Equal(t, "on\n", troupe(t, "simboard", "power", sock, "status").stdout, "the outlet really lied")
}
