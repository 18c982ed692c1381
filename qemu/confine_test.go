package qemu_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/troupe-lab/troupe/boot"
	"github.com/troupe-lab/troupe/console"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/qemu"
)

// qemuProc is what /proc says of a running QEMU.
type qemuProc struct {
	uid, groups string
	ownNet      bool
	cmdline     string
}

func procOf(t *testing.T, pid int) qemuProc {
	t.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	uid := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindSubmatch(st)
	groups := regexp.MustCompile(`(?m)^Groups:(.*)$`).FindSubmatch(st)
	require.NotNil(t, uid)
	require.NotNil(t, groups)
	mine, err := os.Readlink("/proc/self/ns/net")
	require.NoError(t, err)
	its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	require.NoError(t, err)
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	require.NoError(t, err)
	return qemuProc{uid: string(uid[1]), groups: strings.TrimSpace(string(groups[1])), ownNet: mine != its,
		cmdline: strings.ReplaceAll(string(cmd), "\x00", " ")}
}

// bootWith boots a QEMU board deployed with im (the default images when
// zero) to its shell and returns what /proc says of its QEMU and the
// guest's answer to cmd.
func bootWith(t *testing.T, im jobs.Images, cmd string) (qemuProc, string) {
	t.Helper()
	b, err := qemu.Open(vmBoard("vm-c"), qemu.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if im.Kernel != "" {
		require.NoError(t, b.DeployImages(ctx, im))
	}
	con := console.New(b.Console(), console.Options{})
	t.Cleanup(func() { _ = con.Close() })
	require.NoError(t, boot.Boot(ctx, b, con, boot.DefaultPrompts()))
	p := procOf(t, b.PID())
	require.NoError(t, con.Send(cmd+"; echo do''ne\n"))
	m, err := con.Expect(ctx, regexp.MustCompile(`([\s\S]*?)\r?\ndone`))
	require.NoError(t, err)
	require.NoError(t, b.Off(ctx))
	require.NoError(t, con.Close())
	require.NoError(t, b.Close())
	return p, m[1]
}

// TestQemuConfined: troupe as root runs QEMU as nobody, with no
// supplementary groups, in a network namespace of its own, its images
// given as descriptors (a rootfs too, its snapshot overlay written as
// nobody); an image not readable by everyone leaves QEMU unconfined (it
// could not open it), as troupe's user. Not root, QEMU runs as troupe's
// user.
func TestQemuConfined(t *testing.T) {
	needQemu(t)
	t.Cleanup(func() { goleak.VerifyNone(t) })
	def, err := qemu.DefaultImages(context.Background(), "x86_64", "", nil)
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	disk := filepath.Join(dir, "disk.img")
	require.NoError(t, os.WriteFile(disk, make([]byte, 4<<20), 0o644))
	withDisk := def
	withDisk.Rootfs = disk

	p, out := bootWith(t, withDisk, "cat /sys/block/vda/size")
	if os.Geteuid() != 0 {
		assert.Equal(t, fmt.Sprint(os.Geteuid()), p.uid, "troupe's own user")
		return
	}
	assert.Equal(t, "65534", p.uid, "nobody")
	assert.Empty(t, p.groups, "no supplementary groups")
	assert.True(t, p.ownNet, "a network namespace of its own")
	assert.Contains(t, p.cmdline, "-kernel /proc/self/fd/")
	assert.Contains(t, p.cmdline, "-initrd /proc/self/fd/")
	assert.Contains(t, p.cmdline, "file=/proc/self/fd/")
	assert.NotContains(t, p.cmdline, def.Kernel, "no path of troupe's")
	assert.Contains(t, out, "8192", "the disk, 4 MiB in 512-byte sectors, through its snapshot")

	// A kernel only root can read: QEMU could not open it as nobody.
	private := filepath.Join(dir, "vmlinuz")
	src, err := os.Open(def.Kernel)
	require.NoError(t, err)
	dst, err := os.OpenFile(private, os.O_CREATE|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, src.Close())
	require.NoError(t, dst.Close())
	p, _ = bootWith(t, jobs.Images{Kernel: private, Initrd: def.Initrd}, "true")
	assert.Equal(t, "0", p.uid, "unconfined: troupe's user")
	assert.False(t, p.ownNet)
}
