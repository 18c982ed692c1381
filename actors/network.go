package actors

import (
	"context"
	"errors"
	"io"
	"io/fs"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
)

// Networked is a backend that joins a private network of its group (QEMU
// boards). JoinGroup returns the addresses of the group's nodes on that
// network, by node name; they replace Config.Addresses for those nodes in
// the node's TROUPE_IP and group file.
type Networked interface {
	JoinGroup(g lab.Group) (map[string]string, error)
}

// ImagesDeployer is a backend that boots a kernel of its own and is
// deployed with images = {kernel, initrd, rootfs} (QEMU boards).
type ImagesDeployer interface {
	DeployImages(ctx context.Context, im jobs.Images) error
}

// FilePutter is a backend that can put files on its board without the
// console (sim boards: straight into the sandbox's /tmp), paths relative to
// the board shell's $TMPDIR. The board actor puts the test shell's helpers
// there before the shell's Init, which then types nothing. PutFiles only
// reads files: the same map is given to every board.
type FilePutter interface {
	PutFiles(files map[string][]byte, mode fs.FileMode) error
}

// SideChanneled is a backend whose board can have a MultiNode side
// channel (sim boards: a Unix socket its processes inherit): before each
// boot the board actor opens one for the power-on to come and serves the
// test shell's MultiNode calls on it; boards without one keep the console
// protocol. OpenMultiNodeChannel returns troupe's end; the end of that
// power-on closes it.
type SideChanneled interface {
	OpenMultiNodeChannel() (io.ReadWriteCloser, error)
}

// TmpFileBooter is a backend whose boots can start with files already in
// the board shell's $TMPDIR (QEMU boards: built into their default
// initramfs): before each boot the board actor gives it the test shell's
// helpers, which Init then finds instead of typing them. The files are
// only read: the same map is given to every board.
type TmpFileBooter interface {
	BootWithTmpFiles(files map[string][]byte)
}

// MultiNodePorted is a SideChanneled backend whose guest has the side
// channel as a virtio-serial port of that name (QEMU boards): the test
// shell's Init opens it for the helpers (testshell.MultiNodePort).
type MultiNodePorted interface {
	MultiNodePort() string
}

// errNoImages: a deploy action with images on a board that takes one image.
var errNoImages = errors.New("this board is deployed with image, not images = {kernel, ...}")

// deploy runs a deploy action on b: its images if it has them, else its image.
func deploy(ctx context.Context, b Backend, act jobs.Action) error {
	if act.Images == nil {
		return b.Deploy(ctx, act.Image)
	}
	d, ok := b.(ImagesDeployer)
	if !ok {
		return errNoImages
	}
	return d.DeployImages(ctx, *act.Images)
}
