package qemu

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
)

// TestContextQemu: a LAVA job's context picks the guest arch (LAVA's
// names), CPU, machine, memory and -smp of a QEMU board's boots; keys of
// LAVA's qemu template troupe does not honour are refused naming the key;
// other device types' keys are not the board's business.
func TestContextQemu(t *testing.T) {
	b := &Board{cfg: lab.Qemu{Arch: "x86_64", CPUs: 2, Memory: "1G"}}
	j, err := contextQemu(map[string]string{"arch": "arm64", "cpu": "cortex-a53", "machine": "virt", "memory": "512",
		"extra_options": "-smp 2", "netdevice": "tap", "no_kvm": "True", "console_device": "ttyS2"}, b.cfg.CPUs, b.cfg.Memory)
	require.NoError(t, err)
	b.job = j
	bin, args := b.argv(jobs.Images{Kernel: "/k"}, false)
	assert.Equal(t, "qemu-system-aarch64", bin, "context.arch arm64 → qemu-system-aarch64")
	assert.Subset(t, args, []string{"-M", "virt", "-cpu", "cortex-a53", "-smp", "2", "-m", "512M"})
	assert.Contains(t, args[slices.Index(args, "-append")+1], "console=ttyAMA0")

	b.job = jobQemu{}
	bin, args = b.argv(jobs.Images{Kernel: "/k"}, false)
	assert.Equal(t, "qemu-system-x86_64", bin, "without context: the lab entry's")
	assert.Subset(t, args, []string{"-M", "pc", "-cpu", "max", "-smp", "2", "-m", "1G"})

	for _, tc := range []struct {
		ctx  map[string]string
		want string
	}{
		{map[string]string{"arch": "mips"}, `context.arch: "mips": troupe's QEMU boards run x86_64 (amd64) and aarch64 (arm64) guests`},
		{map[string]string{"cpu": "max,pauth=off"}, `context.cpu: "max,pauth=off" is not a QEMU cpu name`},
		{map[string]string{"machine": "virt -drive file=/etc/shadow"}, `context.machine: "virt -drive file=/etc/shadow" is not a QEMU machine name`},
		{map[string]string{"memory": "4096"}, "context.memory: 4096 MiB is more than the board's 1G"},
		{map[string]string{"memory": "1G"}, `context.memory: "1G" is not a size in MiB`},
		{map[string]string{"extra_options": "-smp 1 -global virtio-blk-device.scsi=off"}, `context.extra_options: "-global": not supported: troupe builds the QEMU command line itself`},
		{map[string]string{"extra_options": "-smp 8"}, `context.extra_options: -smp "8": between 1 and the board's 2 CPUs`},
		{map[string]string{"guestfs_interface": "virtio"}, "context.guestfs_interface: not supported: troupe's QEMU boards get the test files through the console"},
	} {
		_, err := contextQemu(tc.ctx, 2, "1G")
		assert.ErrorContains(t, err, tc.want)
	}
}
