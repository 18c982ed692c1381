package lab_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lab"
)

func TestLogLimit(t *testing.T) {
	const board = "[[board]]\nname = \"sim-0\"\ndevice_type = \"sim\"\n"
	l, err := lab.Parse("lab.toml", []byte(board))
	require.NoError(t, err)
	require.Zero(t, l.LogLimit, "unset: the logbook's default")
	l, err = lab.Parse("lab.toml", []byte("log_limit = 65536\n"+board))
	require.NoError(t, err)
	require.Equal(t, int64(65536), l.LogLimit)
	_, err = lab.Parse("lab.toml", []byte("log_limit = 100\n"+board))
	require.EqualError(t, err, "lab.toml:1: log_limit: must be >= 4096 bytes (got 100)")
}

func TestSandboxLimits(t *testing.T) {
	const board = "[[board]]\nname = \"sim-0\"\ndevice_type = \"sim\"\n"
	l, err := lab.Parse("lab.toml", []byte(board))
	require.NoError(t, err)
	require.Zero(t, l.SandboxProcesses, "unset: sim's default")
	require.Zero(t, l.SandboxFileSize)
	l, err = lab.Parse("lab.toml", []byte("sandbox_processes = 256\nsandbox_file_size = 104857600\n"+board))
	require.NoError(t, err)
	require.Equal(t, 256, l.SandboxProcesses)
	require.Equal(t, int64(100<<20), l.SandboxFileSize)
	_, err = lab.Parse("lab.toml", []byte("sandbox_processes = 2\n"+board))
	require.EqualError(t, err, "lab.toml:1: sandbox_processes: must be 16 to 4194304 (got 2)")
	_, err = lab.Parse("lab.toml", []byte("\nsandbox_file_size = 4096\n"+board))
	require.EqualError(t, err, "lab.toml:2: sandbox_file_size: must be >= 1048576 bytes (got 4096)")
	_, err = lab.Parse("lab.toml", []byte("sandbox_processes = \"many\"\n"+board))
	require.ErrorContains(t, err, "lab.toml:1: sandbox_processes")
}
