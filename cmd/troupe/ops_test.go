package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// opsLab is a lab file with the simboard at addr/sock as "ops-bbb", a sim
// board and a board whose PDU lies on "on".
func opsLab(t *testing.T, addr, sock, extraPower string) string {
	t.Helper()
	return writeFile(t, t.TempDir(), "lab.toml", simboardEntry("ops-bbb", "bbb", addr, sock)+extraPower+`
[[board]]
name = "sim-0"
device_type = "sim"

[[board]]
name = "liar"
device_type = "bbb"
backend = "hardware"
[board.console]
kind = "tcp"
address = "127.0.0.1:1"
[board.power]
kind = "command"
on = ["true"]
off = ["true"]
state = ["echo", "off"]
retries = 0
settle = "200ms"
`)
}

// TestPowerCommand: troupe power switches a board of a lab file by hand,
// with its read-back and cycle delay.
func TestPowerCommand(t *testing.T) {
	t.Parallel()
	addr, sock := simboard(t, "ops-bbb", false)
	labFile := opsLab(t, addr, sock, `cycle_delay = "1500ms"`)

	res := troupe(t, "power", "ops-bbb", "status", "--lab", labFile)
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Equal(t, "ops-bbb: off\n", res.stdout)

	res = troupe(t, "power", "--lab", labFile, "ops-bbb", "on")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Equal(t, "ops-bbb: on\n", res.stdout)
	assert.Equal(t, "on\n", troupe(t, "simboard", "power", sock, "status").stdout)

	start := time.Now()
	res = troupe(t, "power", "ops-bbb", "cycle", "--lab", labFile)
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Equal(t, "ops-bbb: on\n", res.stdout)
	assert.GreaterOrEqual(t, time.Since(start), 1500*time.Millisecond, "off for the cycle delay")

	res = troupe(t, "power", "ops-bbb", "off", "--lab", labFile)
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Equal(t, "ops-bbb: off\n", res.stdout)
	assertBoardOff(t, sock)

	// A PDU that answers OK without switching.
	res = troupe(t, "power", "liar", "on", "--lab", labFile)
	assert.Equal(t, exitIncomplete, res.code)
	assert.Contains(t, res.stderr, "power on liar: the PDU answered OK but the outlet is still off (1 tries)")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"power", "nope", "on", "--lab", labFile}, `no board "nope" in ` + labFile},
		{[]string{"power", "ops-bbb", "toggle", "--lab", labFile}, `troupe power: unknown action "toggle"`},
		{[]string{"power", "sim-0", "on", "--lab", labFile}, "board sim-0: not a hardware board (backend sim)"},
		{[]string{"power", "ops-bbb", "on", "--lab", labFile, "--bogus"}, "flag provided but not defined: -bogus"},
	} {
		res := troupe(t, tc.args...)
		assert.Equal(t, exitInvalid, res.code, "%v", tc.args)
		assert.Contains(t, res.stderr, tc.want, "%v", tc.args)
	}
}

// ptyReader collects what a process writes to its terminal.
type ptyReader struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *ptyReader) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// ptyConsole is a `troupe console` process on a pseudo-terminal.
type ptyConsole struct {
	cmd  *exec.Cmd
	tty  *os.File
	term *ptyReader
	done chan error // the process's end
}

// startPTYConsole starts cmd on a pseudo-terminal, collects what it writes
// there and waits for the console's greeting of board; the process is
// killed at the end of the test if it is still running.
func startPTYConsole(t *testing.T, cmd *exec.Cmd, board string) *ptyConsole {
	t.Helper()
	tty, err := pty.Start(cmd)
	require.NoError(t, err)
	c := &ptyConsole{cmd: cmd, tty: tty, term: &ptyReader{}, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
		}
		_ = tty.Close()
	})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			c.term.mu.Lock()
			c.term.buf.Write(buf[:n])
			c.term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	c.term.waitFor(t, "console of "+board+"; Ctrl-] to leave", 10*time.Second)
	return c
}

// loginAndLeave logs in as root on the board of the console (powered on
// by then), has the shell print word-42, then types Ctrl-] and waits
// for the console to leave with exit code 0.
func (c *ptyConsole) loginAndLeave(t *testing.T, board, word string) {
	t.Helper()
	c.term.waitFor(t, board+" login:", 20*time.Second)
	_, err := io.WriteString(c.tty, "root\n")
	require.NoError(t, err)
	c.term.waitFor(t, "# ", 10*time.Second)
	_, err = io.WriteString(c.tty, "echo "+word+"-$((6*7))\n")
	require.NoError(t, err)
	c.term.waitFor(t, word+"-42", 10*time.Second)
	_, err = c.tty.Write([]byte{consoleEscape})
	require.NoError(t, err)
	select {
	case err := <-c.done:
		require.NoError(t, err, c.term.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("Ctrl-] did not leave; terminal:\n%s", c.term.String())
	}
	assert.Equal(t, 0, c.cmd.ProcessState.ExitCode())
	c.term.waitFor(t, "left the console of "+board, 2*time.Second)
}

func (r *ptyReader) waitFor(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(r.String(), want) {
		require.True(t, time.Now().Before(deadline), "no %q on the terminal; got:\n%s", want, r.String())
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConsoleCommand: troupe console puts a board's console on the
// terminal (a pty here) in raw mode: the operator logs in and types
// commands; Ctrl-] leaves and gives the terminal back as it was.
func TestConsoleCommand(t *testing.T) {
	t.Parallel()
	addr, sock := simboard(t, "ops-bbb", false)
	labFile := opsLab(t, addr, sock, "")
	c := startPTYConsole(t, exec.Command(troupeBin, "console", "ops-bbb", "--lab", labFile), "ops-bbb")
	tio, err := unix.IoctlGetTermios(int(c.tty.Fd()), unix.TCGETS)
	require.NoError(t, err)
	assert.Zero(t, tio.Lflag&(unix.ECHO|unix.ICANON), "raw while attached")

	res := troupe(t, "power", "ops-bbb", "on", "--lab", labFile)
	require.Equal(t, exitOK, res.code, res.stderr)
	c.loginAndLeave(t, "ops-bbb", "typed")
	tio, err = unix.IoctlGetTermios(int(c.tty.Fd()), unix.TCGETS)
	require.NoError(t, err)
	assert.Equal(t, uint32(unix.ECHO|unix.ICANON), tio.Lflag&(unix.ECHO|unix.ICANON), "the terminal is given back as it was")
	_ = troupe(t, "power", "ops-bbb", "off", "--lab", labFile)

	// A console that cannot be reached is an infrastructure error.
	res = troupe(t, "console", "liar", "--lab", labFile)
	assert.Equal(t, exitIncomplete, res.code)
	assert.Contains(t, res.stderr, "console of liar: dial tcp 127.0.0.1:1")
}
