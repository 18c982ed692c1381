package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startSimboardProc starts `troupe simboard` on a TCP console with its
// power control socket at control and waits until it listens there.
func startSimboardProc(t *testing.T, control string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(troupeBin, "simboard", "--name", "stale", "--control", control, "--tcp", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	_, err = bufio.NewReader(stdout).ReadString('\n') // "console on ..."
	require.NoError(t, err)
	return cmd
}

// TestSimboardStaleSocket: a SIGKILLed simboard leaves its control socket;
// the next simboard on the same path removes it and serves power. A socket
// that a running simboard still answers is not taken over.
func TestSimboardStaleSocket(t *testing.T) {
	t.Parallel()
	control := filepath.Join(t.TempDir(), "power.sock")
	first := startSimboardProc(t, control)
	st := troupe(t, "simboard", "power", control, "status")
	require.Equal(t, "off\n", st.stdout, st.stderr)

	// A second simboard on the live socket fails, naming the socket.
	second := troupe(t, "simboard", "--control", control, "--tcp", "127.0.0.1:0")
	assert.Equal(t, exitIncomplete, second.code)
	assert.Contains(t, second.stderr, control+": another simboard is serving it")

	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()
	fi, err := os.Lstat(control)
	require.NoError(t, err, "SIGKILL leaves the socket behind")
	require.Equal(t, os.ModeSocket, fi.Mode().Type())

	startSimboardProc(t, control)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st = troupe(t, "simboard", "power", control, "status")
		if st.code == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	assert.Equal(t, "off\n", st.stdout, st.stderr)
	assert.False(t, strings.Contains(st.stderr, "address already in use"))
}
