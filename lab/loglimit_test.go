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
