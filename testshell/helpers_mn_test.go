package testshell_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHelperMNWire: troupe-mn, run without a terminal (stdin and stdout
// instead), prints the request marker with its arguments joined by spaces,
// takes a reply whose line ends in CR LF (a serial console's), prints the
// received pairs without the CR and appends them to the cache file.
func TestHelperMNWire(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	cmd := exec.Command("sh", filepath.Join("helpers", "troupe-mn"), "WAIT_ALL", "m1", "role")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LAVA_MULTI_NODE_CACHE=" + cache}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no controlling terminal: no /dev/tty
	cmd.Stdin = strings.NewReader("<LAVA_WAIT_ALL_COMPLETE node-1:k=v node-2:k2=v2>\r\n")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "\n<LAVA_MULTI_NODE> <LAVA_WAIT_ALL m1 role>\nk=v\nk2=v2\n", string(out))
	data, err := os.ReadFile(cache)
	require.NoError(t, err)
	assert.Equal(t, "node-1:k=v\nnode-2:k2=v2\n", string(data))
}
