package sim

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPowerOffLeftoverKillsTheLastPowerOn(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, PowerOffLeftover(dir), "a board that was off is left alone")

	// A process of a power-on whose harness was killed: it carries the token.
	cmd := exec.Command("sleep", "60")
	cmd.Env = append(os.Environ(), tokenVar+"=feedc0de")
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	require.NoError(t, os.WriteFile(filepath.Join(dir, tokenFile), []byte("feedc0de"), 0o600))

	require.NoError(t, PowerOffLeftover(dir))
	select {
	case err := <-done:
		require.Error(t, err, "killed, not exited")
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the leftover process survived")
	}
	require.NoFileExists(t, filepath.Join(dir, tokenFile))
}

// TestPowerOnKeepsTheTokenUntilOff: an unsandboxed board's power-on
// leaves its token for PowerOffLeftover while on; a sandboxed one's
// processes die with the harness (TestSandboxDiesWithItsHarness), so it
// writes none.
func TestPowerOnKeepsTheTokenUntilOff(t *testing.T) {
	for _, unsandboxed := range []bool{true, false} {
		dir := t.TempDir()
		b, err := New(Options{Name: "sim-t", Dir: dir, Unsandboxed: unsandboxed})
		require.NoError(t, err)
		ctx := t.Context()
		require.NoError(t, b.On(ctx))
		if unsandboxed {
			require.FileExists(t, filepath.Join(dir, tokenFile))
		} else {
			require.NoFileExists(t, filepath.Join(dir, tokenFile))
		}
		require.NoError(t, b.Off(ctx))
		require.NoFileExists(t, filepath.Join(dir, tokenFile))
		require.NoError(t, b.Close())
	}
}
