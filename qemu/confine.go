package qemu

import (
	"fmt"
	"os"
	"syscall"

	"github.com/troupe-lab/troupe/internal/sandboxid"
	"github.com/troupe-lab/troupe/jobs"
)

// Confinement. QEMU runs a job's kernel and disk: an escape from the
// emulation must not find root on the host. When troupe runs as root,
// QEMU runs as the sandbox user (nobody, no supplementary groups: see
// sandboxid) in network, IPC and UTS namespaces of its own (it needs no
// network: a group network is a socket it inherits). It opens nothing of
// troupe's by path: its images are descriptors troupe opened
// (/proc/self/fd/N), and a rootfs's snapshot overlay goes to /var/tmp.
// A descriptor still needs its file readable by everyone (the kernel
// checks the file's mode when QEMU opens /proc/self/fd/N): with an image
// that is not, QEMU runs unconfined, as troupe's user, and troupe's log
// says why. Not root, troupe runs QEMU as its own (unprivileged) user.

// confined tells whether QEMU runs confined (troupe is root).
func confined() bool { return os.Geteuid() == 0 }

// confineImages opens im's files for QEMU, to be its descriptors from
// first on, and returns im naming them there; or why they cannot be
// (a file not readable by everyone).
func confineImages(im jobs.Images, first int) (jobs.Images, []*os.File, error) {
	var files []*os.File
	fail := func(err error) (jobs.Images, []*os.File, error) {
		for _, f := range files {
			_ = f.Close()
		}
		return im, nil, err
	}
	for _, p := range []*string{&im.Kernel, &im.Initrd, &im.DTB, &im.Rootfs} {
		if *p == "" {
			continue
		}
		f, err := os.Open(*p)
		if err != nil {
			return fail(err)
		}
		fi, err := f.Stat()
		if err == nil && fi.Mode().Perm()&0o004 == 0 {
			err = fmt.Errorf("%s is not readable by everyone (mode %v)", *p, fi.Mode().Perm())
		}
		if err != nil {
			_ = f.Close()
			return fail(err)
		}
		*p = fmt.Sprintf("/proc/self/fd/%d", first+len(files))
		files = append(files, f)
	}
	return im, files, nil
}

// setConfined makes attr start QEMU as the sandbox user in namespaces of
// its own.
func setConfined(attr *syscall.SysProcAttr) {
	attr.Credential = &syscall.Credential{Uid: sandboxid.Nobody, Gid: sandboxid.Nobody, Groups: []uint32{}}
	attr.Cloneflags |= syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS
}
