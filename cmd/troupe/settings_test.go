package main

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/internal/lockedbuf"
)

// pdudaemonTimes returns the times of pdudaemon's log lines that contain
// text, in order ("2026-11-30 06:52:01,123 - ..." lines).
func pdudaemonTimes(t *testing.T, log, text string) []time.Time {
	t.Helper()
	var out []time.Time
	for line := range strings.Lines(log) {
		if !strings.Contains(line, text) || len(line) < 23 {
			continue
		}
		ts, err := time.Parse("2006-01-02 15:04:05,000", line[:23])
		require.NoError(t, err, "pdudaemon log line %q", line)
		out = append(out, ts)
	}
	return out
}

// TestPowerCycleDelayPDUDaemon: the board's cycle_delay keeps it off that
// long between the off and the on of its power cycle, as pdudaemon's own
// log shows.
func TestPowerCycleDelayPDUDaemon(t *testing.T) {
	needPeer(t, "pdudaemon", "pdudaemon")
	tty, sock := simboard(t, "peer-delay", true)
	url, pdud := startPDUDaemon(t, map[int]string{1: sock}, "")
	const delay = 3 * time.Second
	res := bootOnSerialBoard(t, 0, "peer-delay", tty, fmt.Sprintf("%scycle_delay = %q\n", pdudaemonPower(url, 1, sock), delay))
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	log := pdud.Log()
	offs := pdudaemonTimes(t, log, "/power/control/off?hostname=lab-pdu&port=1")
	ons := pdudaemonTimes(t, log, "/power/control/on?hostname=lab-pdu&port=1")
	require.NotEmpty(t, offs, log)
	require.NotEmpty(t, ons, log)
	gap := ons[0].Sub(offs[0])
	t.Logf("off→on at pdudaemon: %v", gap)
	assert.GreaterOrEqual(t, gap, delay, "the board stayed off for cycle_delay")
	assert.Less(t, gap, delay+5*time.Second)
	assertBoardOff(t, sock)
}

// startSer2netRFC2217 runs the real ser2net with a telnet(rfc2217)
// accepter in front of the serial device dev (opened at 115200 8N1).
func startSer2netRFC2217(t *testing.T, dev string) string {
	t.Helper()
	bin := needPeer(t, "ser2net", "ser2net")
	dir := t.TempDir()
	port := freePort(t)
	cfg := writeFile(t, dir, "ser2net.yaml", fmt.Sprintf(`%%YAML 1.1
---
connection: &board
  accepter: "telnet(rfc2217),tcp,127.0.0.1,%d"
  connector: "serialdev,%s,115200n81,local"
  options:
    kickolduser: true
`, port, dev))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := startPeer(t, "ser2net", bin, "-n", "-d", "-u", "-c", cfg, "-P", filepath.Join(dir, "ser2net.pid"))
	p.waitFor(t, "listener on "+addr, peerStartTimeout, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return addr
}

// TestRFC2217Console: a board whose console is an RFC 2217 port of the
// real ser2net runs a job; the baud rate of its lab entry is set on the
// serial device over the network, the job completes through the telnet
// protocol.
func TestRFC2217Console(t *testing.T) {
	t.Parallel()
	stty, err := exec.LookPath("stty")
	require.NoError(t, err)
	tty, sock := simboard(t, "peer-2217", true)
	addr := startSer2netRFC2217(t, tty)
	dir := t.TempDir()
	labFile := writeFile(t, dir, "lab.toml", fmt.Sprintf(`retries = 0
[[board]]
name = "peer-2217"
device_type = "bbb"
backend = "hardware"
[board.console]
kind = "tcp"
address = %q
mode = "rfc2217"
baud = 9600
stop_bits = 2
[board.power]
kind = "sim"
socket = %q
`, addr, sock))
	job := writeFile(t, dir, "job.toml", `name = "rfc2217"
timeout = "1m"
[roles.a]
device_type = "bbb"
[[action]]
type = "boot"
timeout = "30s"
[[action]]
type = "test"
name = "hello"
run = "sleep 3; echo hello-$TROUPE_BOARD"
`)
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command(troupeBin, "run", "--lab", labFile, "--out", out, "-v", job)
	var so, se lockedbuf.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	})
	// ser2net puts the device back as it found it when the console
	// closes: look while the job runs.
	var line string
	ended := false
	for !ended && !(strings.Contains(line, "speed 9600 baud") && regexp.MustCompile(`(^|\s)cstopb(\s|$)`).MatchString(line)) {
		b, err := exec.Command(stty, "-a", "-F", tty).CombinedOutput()
		require.NoError(t, err, string(b))
		line = string(b)
		select {
		case <-done:
			ended = true
		case <-time.After(100 * time.Millisecond):
		}
	}
	assert.Regexp(t, `(?m)^speed 9600 baud`, line, "the device behind ser2net runs at the lab's baud rate")
	assert.Regexp(t, `(^|\s)cstopb(\s|$)`, line, "2 stop bits")
	if !ended {
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatal("troupe did not end")
		}
	}
	require.Equal(t, 0, cmd.ProcessState.ExitCode(), "stdout:\n%s\nstderr:\n%s", so.String(), se.String())
	assert.Contains(t, readLog(t, out, "a-0"), "\nhello-peer-2217\n")
	assert.Regexp(t, regexp.MustCompile(`rfc2217: line set.* line="9600 8N2"`), se.String())
}
