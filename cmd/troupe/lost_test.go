package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/internal/lockedbuf"
	"github.com/troupe-lab/troupe/report"
)

// simboardOnPty starts `troupe simboard` with its console on a pty and
// returns the process, the pty path and the power control socket.
func simboardOnPty(t *testing.T, name string) (cmd *exec.Cmd, tty, control string) {
	t.Helper()
	dir := t.TempDir()
	control, tty = filepath.Join(dir, "power.sock"), filepath.Join(dir, "ttyS0")
	cmd = exec.Command(troupeBin, "simboard", "--name", name, "--control", control, "--dir", filepath.Join(dir, "root"), "--pty", tty)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, e1 := os.Stat(control)
		_, e2 := os.Stat(tty)
		if e1 == nil && e2 == nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "simboard %s did not start", name)
		time.Sleep(20 * time.Millisecond)
	}
	return cmd, tty, control
}

// TestSer2netBoardVanishes: the board behind a real ser2net disappears in
// the middle of a test (its simboard is SIGKILLed: the serial device is
// gone, as when a USB serial adapter is unplugged). ser2net keeps
// accepting connections and answers "Device open failure"; the node ends
// incomplete with an infrastructure error naming the board and its
// console, quickly, and the peer waiting for it at a barrier is released
// at once.
func TestSer2netBoardVanishes(t *testing.T) {
	needPeer(t, "ser2net", "ser2net")
	victim, ttyV, powerV := simboardOnPty(t, "lost-bbb")
	_, ttyP, powerP := simboardOnPty(t, "peer-rpi")
	conV, s2n := startSer2net(t, ttyV)

	dir := t.TempDir()
	labFile := writeFile(t, dir, "lab.toml", fmt.Sprintf(`retries = 0
[[board]]
name = "lost-bbb"
device_type = "bbb"
backend = "hardware"
[board.console]
kind = "tcp"
address = %[1]q
reconnect = "60s"
[board.power]
kind = "sim"
socket = %[4]q

[[board]]
name = "peer-rpi"
device_type = "rpi4"
backend = "hardware"
[board.console]
kind = "serial"
device = %[2]q
[board.power]
kind = "sim"
socket = %[3]q
`, conV, ttyP, powerP, powerV))
	job := writeFile(t, dir, "job.toml", `name = "vanish"
timeout = "2m"
[multinode]
timeout = "90s"
[roles.victim]
device_type = "bbb"
[roles.peer]
device_type = "rpi4"
[[action]]
type = "boot"
timeout = "30s"
[[action]]
type = "test"
name = "work"
timeout = "90s"
run = '''
troupe-sync started
if [ "$TROUPE_ROLE" = victim ]; then echo READY-TO-VANISH; sleep 80; fi
if [ "$TROUPE_ROLE" = peer ]; then troupe-test-case finished --shell troupe-sync finished; fi
'''`)
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command(troupeBin, "run", "--lab", labFile, "--out", out, job)
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
	// Wait until the victim's test runs, past the barrier.
	logV := filepath.Join(out, "logs", "victim-0.log")
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(logV)
		if strings.Contains(string(b), "\nREADY-TO-VANISH") {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("troupe ended early (%v)\nstdout:\n%s\nstderr:\n%s", err, so.String(), se.String())
		default:
		}
		require.True(t, time.Now().Before(deadline), "the victim never got to its test\nstdout:\n%s\nstderr:\n%s", so.String(), se.String())
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, victim.Process.Signal(syscall.SIGKILL))
	killed := time.Now()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("troupe did not end within 60s of the board vanishing\nstdout:\n%s\nstderr:\n%s", so.String(), se.String())
	}
	took := time.Since(killed)
	t.Logf("ended %v after the board vanished", took)
	assert.Less(t, took, 15*time.Second)
	assert.Equal(t, exitIncomplete, cmd.ProcessState.ExitCode(), "stdout:\n%s\nstderr:\n%s", so.String(), se.String())
	r := readResults(t, out)
	v := nodeByName(t, r, "victim-0")
	assert.Equal(t, report.StatusIncomplete, v.Status)
	assert.Equal(t, report.Infrastructure, v.Class)
	assert.Contains(t, v.Error, "console of lost-bbb: tcp "+conV+": console lost: the peer refused 3 connections in a row")
	assert.Contains(t, v.Error, "Device open failure")
	assert.NotContains(t, v.Error, "expect", "no internal regexp in the message")
	// The peer was released from its barrier at once: its sync failed.
	got := map[string]string{}
	for _, c := range r.Tests {
		got[c.Node+"/"+c.Name] = c.Result
	}
	assert.Equal(t, "fail", got["peer-0/finished"], "%v", got)
	assert.Contains(t, s2n.Log(), "dev read error", "ser2net saw the device go")
}
