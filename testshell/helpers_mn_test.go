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

	"github.com/troupe-lab/troupe/coordinator"
	"github.com/troupe-lab/troupe/testshell"
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

// TestHelperMNCacheReplaced: as LAVA's lava-multi-node.lib does, every
// wait, wait-all and sync replaces the cache file, so the documented idiom
// `lava-wait ipv4; ip=$(cut -d = -f 2 /tmp/lava_multi_node_cache.txt)`
// reads the latest message's value on a second wait too; a send leaves it.
func TestHelperMNCacheReplaced(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	call := func(reply string, args ...string) {
		t.Helper()
		cmd := exec.Command("sh", append([]string{filepath.Join("helpers", "troupe-mn")}, args...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "LAVA_MULTI_NODE_CACHE=" + cache}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		cmd.Stdin = strings.NewReader(reply + "\n")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	cut := func() string {
		t.Helper()
		out, err := exec.Command("cut", "-d", "=", "-f", "2", cache).Output()
		require.NoError(t, err)
		return string(out)
	}
	call("<LAVA_WAIT_COMPLETE server-0:ipaddr=10.1.2.3>", "WAIT", "ipv4")
	assert.Equal(t, "10.1.2.3\n", cut())
	call("<LAVA_WAIT_COMPLETE server-0:port=5201>", "WAIT", "port")
	assert.Equal(t, "5201\n", cut(), "the second wait replaced the cache")
	call("<LAVA_SEND_COMPLETE>", "SEND", "hello", "k=v")
	assert.Equal(t, "5201\n", cut(), "a send leaves the cache")
	call("<LAVA_WAIT_ALL_COMPLETE a:x=1 b:x=2>", "WAIT_ALL", "all")
	assert.Equal(t, "1\n2\n", cut())
	call("<LAVA_SYNC_COMPLETE>", "SYNC", "done")
	_, err := os.Stat(cache)
	assert.True(t, os.IsNotExist(err), "a sync's empty reply leaves an empty cache")
}

// TestHelperMNSideChannel: with TROUPE_MN_FD=8 and a socket at fd 8,
// troupe-mn sends its request there (one line, nothing on its output) and
// reads the reply from it: the short reply of the side channel
// (testshell.SideReply), its pairs printed, or its nack's reason on stderr
// and exit status 1.
func TestHelperMNSideChannel(t *testing.T) {
	for _, c := range []struct {
		reply, out string
		ok         bool
	}{
		{testshell.SideReply(coordinator.Reply{OK: true, Data: []coordinator.Message{{Sender: "node-1", Key: "k", Value: "v"}, {Sender: "node-2", Key: "k2", Value: "v2"}}}), "k=v\nk2=v2\n", true},
		{testshell.SideReply(coordinator.Reply{OK: true}), "", true},
		{testshell.SideReply(coordinator.Reply{Err: "node node-2 died\nduring boot"}), "troupe-mn m1: node node-2 died during boot\n", false},
	} {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
		dir := t.TempDir()
		cmd := exec.Command("sh", filepath.Join("helpers", "troupe-mn"), "WAIT", "m1")
		cmd.Env = []string{"PATH=/usr/bin:/bin", "LAVA_MULTI_NODE_CACHE=" + filepath.Join(dir, "cache"), "TROUPE_MN_FD=8"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		cmd.ExtraFiles = []*os.File{nil, nil, nil, nil, nil, theirs}
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		require.NoError(t, theirs.Close())
		req := make([]byte, 100)
		n, err := ours.Read(req)
		require.NoError(t, err)
		assert.Equal(t, "<LAVA_MULTI_NODE> <LAVA_WAIT m1>\n", string(req[:n]))
		_, err = ours.WriteString(c.reply + "\n")
		require.NoError(t, err)
		err = cmd.Wait()
		if c.ok {
			require.NoError(t, err, "%s", out.String())
		} else {
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee)
			assert.Equal(t, 1, ee.ExitCode())
		}
		assert.Equal(t, c.out, out.String(), "reply %q", c.reply)
		require.NoError(t, ours.Close())
	}
}
