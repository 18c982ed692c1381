package qemu

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
)

// TestArgvNoOptionInjection: a comma in an image path (say in the images
// root's own path) cannot add QEMU drive options.
func TestArgvNoOptionInjection(t *testing.T) {
	b := &Board{cfg: lab.Qemu{Arch: "x86_64", CPUs: 1, Memory: "256M"}}
	_, args := b.argv(jobs.Images{Kernel: "/img,s/k", Rootfs: "/img,s/disk.img,file.locking=off,if=none"}, false)
	assert.Contains(t, args, "file=/img,,s/disk.img,,file.locking=off,,if=none,format=raw,if=virtio,snapshot=on")
	assert.Contains(t, args, "/img,s/k", "-kernel takes a plain path")
}

// TestArgvMultiNodePort: with a side channel the guest gets a
// virtio-serial port named MultiNodePort on the descriptor after the
// group network's (fd 3 without one); without, no such device.
func TestArgvMultiNodePort(t *testing.T) {
	b := &Board{cfg: lab.Qemu{Arch: "x86_64", CPUs: 1, Memory: "256M"}}
	_, args := b.argv(jobs.Images{Kernel: "/k"}, false)
	assert.NotContains(t, strings.Join(args, " "), "virtserialport")

	_, args = b.argv(jobs.Images{Kernel: "/k"}, true)
	assert.Contains(t, args, "socket,id=mn,fd=3")
	assert.Contains(t, args, "virtserialport,bus=mnbus.0,chardev=mn,name="+MultiNodePort)

	b.port = &port{}
	_, args = b.argv(jobs.Images{Kernel: "/k"}, true)
	assert.Contains(t, args, "dgram,id=net0,local.type=fd,local.str=3")
	assert.Contains(t, args, "socket,id=mn,fd=4")
}
