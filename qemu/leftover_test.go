package qemu_test

import (
	"context"
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

	"github.com/troupe-lab/troupe/qemu"
)

// TestPowerOffLeftover: a QEMU board a dead harness left on (its process
// named in the board's directory) is killed when the next harness starts;
// a board that was off, or a record whose process is gone (its pid reused),
// is left alone.
func TestPowerOffLeftover(t *testing.T) {
	needQemu(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	require.NoError(t, qemu.PowerOffLeftover(ctx, dir), "never powered on")

	b, err := qemu.Open(vmBoard("vm-0"), qemu.Options{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	require.NoError(t, b.On(ctx))
	pid := b.PID()
	require.NotZero(t, pid)
	assert.FileExists(t, filepath.Join(dir, ".power-on"))

	// As the next harness would, after a kill -9 of this one.
	require.NoError(t, qemu.PowerOffLeftover(ctx, dir))
	require.Eventually(t, func() bool {
		on, err := b.State(ctx)
		return err == nil && !on
	}, 10*time.Second, 10*time.Millisecond, "QEMU was killed")
	assert.NoFileExists(t, filepath.Join(dir, ".power-on"))
	require.NoError(t, b.Close())
}

func TestPowerOffLeftoverStaleRecord(t *testing.T) {
	// A process with the recorded pid but another start time is not the
	// board's QEMU: it is left alone, and the record goes.
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	dir := t.TempDir()
	rec := filepath.Join(dir, ".power-on")
	require.NoError(t, os.WriteFile(rec, []byte(strconv.Itoa(cmd.Process.Pid)+" 1\n"), 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, qemu.PowerOffLeftover(ctx, dir))
	assert.NoError(t, syscall.Kill(cmd.Process.Pid, 0), "the process lives")
	assert.NoFileExists(t, rec)

	// The right start time: killed.
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
	require.NoError(t, err)
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	require.NoError(t, os.WriteFile(rec, []byte(strconv.Itoa(cmd.Process.Pid)+" "+f[19]+"\n"), 0o600))
	require.NoError(t, qemu.PowerOffLeftover(ctx, dir))
	err = cmd.Wait()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	assert.Equal(t, syscall.SIGKILL, exit.Sys().(syscall.WaitStatus).Signal())
	assert.NoFileExists(t, rec)
}
