package runner

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestSpreadBoards: the boards' directory is marked as the top of
// directory hierarchies where the file system has the flag (ext4), and
// keeps its other flags; where it has none, nothing fails.
func TestSpreadBoards(t *testing.T) {
	dir := t.TempDir()
	flags := func() (uint32, error) {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		require.NoError(t, err)
		defer unix.Close(fd)
		return unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	}
	before, err := flags()
	spreadBoards(dir, slog.New(slog.DiscardHandler))
	after, aerr := flags()
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) {
		assert.Equal(t, err, aerr, "a file system without flags")
		return
	}
	require.NoError(t, err)
	require.NoError(t, aerr)
	assert.NotZero(t, after&topDirFlag, "marked as the top of hierarchies")
	assert.Equal(t, before, after&^topDirFlag, "other flags kept")
	spreadBoards(dir, slog.New(slog.DiscardHandler))
	again, err := flags()
	require.NoError(t, err)
	assert.Equal(t, after, again)
}
