package qemu_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/boot"
	"github.com/troupe-lab/troupe/console"
	"github.com/troupe-lab/troupe/internal/testenv"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/qemu"
)

// QEMU boards are backends of the actor tree, with a network and images.
var (
	_ actors.Backend        = (*qemu.Board)(nil)
	_ actors.Networked      = (*qemu.Board)(nil)
	_ actors.ImagesDeployer = (*qemu.Board)(nil)
)

// needQemu skips where QEMU or a kernel is missing, or fails saying what
// to install under TROUPE_REQUIRE_TOOLS=1 (make test).
func needQemu(tb testing.TB) {
	tb.Helper()
	if err := qemu.Missing(); err != nil {
		testenv.Missing(tb, err.Error())
	}
}

func vmBoard(name string) lab.Board {
	return lab.Board{Name: name, DeviceType: "qemu-x86_64", Backend: lab.QemuBackend,
		Qemu: &lab.Qemu{Arch: "x86_64", Memory: lab.DefaultQemuMemory, CPUs: 1}}
}

// group is a two-node group of QEMU boards.
func group(node string) lab.Group {
	nodes := []jobs.Node{{Name: "client-0", Role: "client"}, {Name: "server-0", Role: "server", Index: 0}}
	return lab.Group{ID: "g1", Node: node, Nodes: nodes,
		Boards: map[string]lab.Board{"client-0": vmBoard("vm-0"), "server-0": vmBoard("vm-1")}}
}

// TestBoardBootsAndIsReaped: power on boots the installed kernel to a
// login on the serial console; the guest has its group address; power off
// kills and reaps QEMU; nothing is left behind.
func TestBoardBootsAndIsReaped(t *testing.T) {
	needQemu(t)
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ns := qemu.NewNetworks(nil)
	b, err := qemu.Open(vmBoard("vm-1"), qemu.Options{Networks: ns})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	addrs, err := b.JoinGroup(group("server-0"))
	require.NoError(t, err)
	require.Regexp(t, `^10\.\d+\.0\.2$`, addrs["server-0"])
	require.Regexp(t, `^10\.\d+\.0\.1$`, addrs["client-0"])

	con := console.New(b.Console(), console.Options{})
	t.Cleanup(func() { _ = con.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, boot.Boot(ctx, b, con, boot.DefaultPrompts()))
	pid := b.PID()
	require.NotZero(t, pid)

	require.NoError(t, con.Send("ip -4 addr show eth0; hostname; echo do''ne\n"))
	m, err := con.Expect(ctx, regexp.MustCompile(`inet (\S+)[\s\S]*\n(\S+)\s*\ndone`))
	require.NoError(t, err)
	assert.Equal(t, addrs["server-0"]+"/16", m[1])
	assert.Equal(t, "server-0", m[2])

	require.NoError(t, b.Off(ctx))
	on, err := b.State(ctx)
	require.NoError(t, err)
	assert.False(t, on)
	assert.Zero(t, b.PID())
	assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "QEMU was reaped")
	require.NoError(t, con.Close())
	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "closing twice is fine")
}

func TestDeployErrors(t *testing.T) {
	b, err := qemu.Open(vmBoard("vm-0"), qemu.Options{})
	require.NoError(t, err)
	defer b.Close()
	ctx := context.Background()
	require.NoError(t, b.Deploy(ctx, ""), "no image: the default images")
	err = b.Deploy(ctx, "rootfs.tar")
	assert.ErrorContains(t, err, `qemu vm-0: a QEMU board is deployed with images = {kernel = ..., initrd = ..., rootfs = ...}, not image = "rootfs.tar"`)
	missing := filepath.Join(t.TempDir(), "vmlinuz")
	err = b.DeployImages(ctx, jobs.Images{Kernel: missing})
	assert.ErrorContains(t, err, "qemu vm-0: deploy kernel: ")
	assert.ErrorContains(t, err, missing)
	err = b.DeployImages(ctx, jobs.Images{Kernel: t.TempDir()})
	assert.ErrorContains(t, err, "is not a regular file")
	err = b.DeployImages(ctx, jobs.Images{Kernel: missing, Files: map[string]string{"nfsrootfs": missing}})
	assert.ErrorContains(t, err, "qemu vm-0: deploy: QEMU boards boot a kernel, initrd, dtb and rootfs; nfsrootfs are for boards that fetch their images over TFTP")
	err = b.DeployImages(ctx, jobs.Images{Rootfs: missing})
	assert.ErrorContains(t, err, "qemu vm-0: deploy: no kernel")

	_, err = qemu.Open(lab.Board{Name: "sim-0", Backend: lab.Sim}, qemu.Options{})
	assert.ErrorContains(t, err, "qemu sim-0: not a QEMU board")
}

// needArm64 skips where qemu-system-aarch64 or the arm64 packages the
// default aarch64 images are built from are missing, or fails saying what
// to run under TROUPE_REQUIRE_TOOLS=1 (make test).
func needArm64(tb testing.TB) {
	tb.Helper()
	var missing []string
	for _, tool := range []string{"qemu-system-aarch64", "cpio"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	dir := qemu.Arm64Dir()
	if _, err := os.Stat(filepath.Join(dir, "packages")); err != nil {
		missing = append(missing, "the arm64 kernel and busybox in "+dir)
	}
	if len(missing) == 0 {
		return
	}
	msg := "aarch64 QEMU boards need " + strings.Join(missing, ", ") +
		": make deps (apt-get install -y qemu-system-arm cpio; sh qemu/images/fetch-arm64.sh " + dir + ")"
	testenv.Missing(tb, msg)
}

func armBoard(name string) lab.Board {
	return lab.Board{Name: name, DeviceType: "qemu-aarch64", Backend: lab.QemuBackend,
		Qemu: &lab.Qemu{Arch: "aarch64", Memory: lab.DefaultQemuMemory, CPUs: 1}}
}

// TestAarch64BoardBoots: an aarch64 board boots Debian's arm64 kernel
// (-M virt) to a login on its PL011 serial console, with its group address
// on eth0 (virtio-net-pci, module loaded by the initramfs), and is reaped.
func TestAarch64BoardBoots(t *testing.T) {
	needArm64(t)
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ns := qemu.NewNetworks(nil)
	b, err := qemu.Open(armBoard("arm-0"), qemu.Options{Networks: ns})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	g := group("server-0")
	g.Boards["server-0"] = armBoard("arm-0")
	addrs, err := b.JoinGroup(g)
	require.NoError(t, err)

	con := console.New(b.Console(), console.Options{})
	t.Cleanup(func() { _ = con.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, boot.Boot(ctx, b, con, boot.DefaultPrompts()))
	t.Logf("aarch64 boot to a shell: %s", time.Since(start).Round(time.Millisecond))
	pid := b.PID()
	require.NotZero(t, pid)

	require.NoError(t, con.Send("echo arch=$(uname -m); ip -4 addr show eth0; hostname; echo do''ne\n"))
	m, err := con.Expect(ctx, regexp.MustCompile(`arch=([a-z0-9_]+)\s*\n[\s\S]*inet (\S+)[\s\S]*\n(\S+)\s*\ndone`))
	require.NoError(t, err)
	assert.Equal(t, "aarch64", m[1])
	assert.Equal(t, addrs["server-0"]+"/16", m[2])
	assert.Equal(t, "server-0", m[3])

	require.NoError(t, b.Off(ctx))
	assert.Zero(t, b.PID())
	assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "QEMU was reaped")
	require.NoError(t, con.Close())
	require.NoError(t, b.Close())
}

// TestAarch64ImagesMissing: without the fetched arm64 packages an aarch64
// board does not power on, and the error says what to run.
func TestAarch64ImagesMissing(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TROUPE_ARM64_DIR", dir)
	b, err := qemu.Open(armBoard("arm-0"), qemu.Options{CacheDir: t.TempDir()})
	require.NoError(t, err)
	defer b.Close()
	err = b.On(context.Background())
	assert.ErrorContains(t, err, "qemu arm-0: default aarch64 images: no arm64 kernel and busybox in "+dir+": run make deps (or sh qemu/images/fetch-arm64.sh "+dir+")")
	on, _ := b.State(context.Background())
	assert.False(t, on)
}
