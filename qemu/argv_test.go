package qemu

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
)

// TestArgvNoOptionInjection: a comma in an image path (say in the images
// root's own path) cannot add QEMU drive options.
func TestArgvNoOptionInjection(t *testing.T) {
	b := &Board{cfg: lab.Qemu{Arch: "x86_64", CPUs: 1, Memory: "256M"}}
	_, args := b.argv(jobs.Images{Kernel: "/img,s/k", Rootfs: "/img,s/disk.img,file.locking=off,if=none"})
	assert.Contains(t, args, "file=/img,,s/disk.img,,file.locking=off,,if=none,format=raw,if=virtio,snapshot=on")
	assert.Contains(t, args, "/img,s/k", "-kernel takes a plain path")
}
