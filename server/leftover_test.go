package server

import (
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

	"github.com/troupe-lab/troupe/lab"
)

// TestStartPowersOffLeftoverQemu: a QEMU board that a server killed with
// kill -9 left on (its process noted in the board's directory) is powered
// off when the next server starts. A sleep stands in for the QEMU process.
func TestStartPowersOffLeftoverQemu(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	var waitErr error
	exited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
	require.NoError(t, err)
	start := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))[19]

	data := t.TempDir()
	dir := filepath.Join(data, "boards", "vm-0")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".power-on"), []byte(strconv.Itoa(cmd.Process.Pid)+" "+start+"\n"), 0o600))
	l, err := lab.Parse("lab.toml", []byte("[[board]]\nname = \"vm-0\"\ndevice_type = \"qemu-x86_64\"\nbackend = \"qemu\"\n"))
	require.NoError(t, err)

	s, err := New(Config{Lab: l, Data: data})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	select {
	case <-exited:
		var exit *exec.ExitError
		require.ErrorAs(t, waitErr, &exit)
		assert.Equal(t, syscall.SIGKILL, exit.Sys().(syscall.WaitStatus).Signal())
	case <-time.After(10 * time.Second):
		t.Fatal("the leftover QEMU process is still running after the server started")
	}
}
