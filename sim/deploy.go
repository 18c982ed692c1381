package sim

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/troupe-lab/troupe/jobs"
)

// Deploy installs image into Root(): a directory is copied recursively, a
// tar file (plain or gzip-compressed, detected by content) is unpacked.
// "" does nothing. Entries that would land outside the root (".." or
// absolute names, or writes through symlinks leaving the root) are refused.
// The DeployFail fault makes it fail, even for "".
func (b *Board) Deploy(ctx context.Context, image string) error {
	if b.getFaults().DeployFail {
		return injected(fmt.Sprintf("deploy to %s: flash write failed (injected)", b.o.Name))
	}
	if image == "" {
		return nil
	}
	if err := b.deploy(ctx, image); err != nil {
		if errors.Is(err, errNotArchive) && b.o.StandIn {
			b.log.Warn("stand-in: the image is not booted; the board boots its own shell", "image", image)
			return nil
		}
		return fmt.Errorf("deploy %s to %s: %w", image, b.o.Name, err)
	}
	if !b.o.Unsandboxed {
		if err := b.ownTree(); err != nil {
			return fmt.Errorf("deploy %s to %s: %w", image, b.o.Name, err)
		}
	}
	b.log.Info("deployed", "image", image)
	return nil
}

func (b *Board) deploy(ctx context.Context, image string) error {
	fi, err := os.Stat(image)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(b.root)
	if err != nil {
		return err
	}
	defer root.Close()
	if fi.IsDir() {
		return copyDir(ctx, root, image)
	}
	f, err := os.Open(image)
	if err != nil {
		return err
	}
	defer f.Close()
	return untar(ctx, root, f)
}

// localName validates an archive entry name and returns it cleaned.
func localName(name string) (string, error) {
	clean := filepath.Clean(filepath.FromSlash(name))
	if filepath.IsAbs(name) || !filepath.IsLocal(clean) {
		return "", errors.New("path escapes the board root")
	}
	return clean, nil
}

func copyDir(ctx context.Context, root *os.Root, src string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var werr error
		switch mode := info.Mode(); {
		case mode.IsDir():
			werr = mkdir(root, rel, mode)
		case mode.IsRegular():
			werr = copyFileTo(root, rel, mode, path)
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			werr = symlink(root, rel, target)
		default:
			return nil // devices, fifos, sockets: skipped
		}
		if werr != nil {
			return fmt.Errorf("entry %q: %w", rel, werr)
		}
		return nil
	})
}

func copyFileTo(root *os.Root, name string, mode fs.FileMode, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeFile(root, name, mode, in)
}

func mkdir(root *os.Root, name string, mode fs.FileMode) error {
	if name == "." {
		return nil
	}
	if err := root.MkdirAll(name, 0o755); err != nil {
		return err
	}
	return root.Chmod(name, modeBits(mode))
}

func writeFile(root *os.Root, name string, mode fs.FileMode, r io.Reader) error {
	if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	removeNonDir(root, name)
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return root.Chmod(name, modeBits(mode))
}

func symlink(root *os.Root, name, target string) error {
	if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	removeNonDir(root, name)
	return root.Symlink(target, name)
}

// removeNonDir removes an existing file or symlink at name, so that a
// redeploy never writes through an old symlink.
func removeNonDir(root *os.Root, name string) {
	if fi, err := root.Lstat(name); err == nil && !fi.IsDir() {
		_ = root.Remove(name)
	}
}

func modeBits(m fs.FileMode) fs.FileMode {
	return m & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// errNotArchive: an image that is neither a directory nor a tar.
var errNotArchive = errors.New("not a directory, tar or tar.gz image")

// DeployImages takes a kernel's images on a stand-in board (Options.
// StandIn): the rootfs is deployed as Deploy does, the kernel, initrd,
// dtb and the others are not booted. Other sim boards take one image.
func (b *Board) DeployImages(ctx context.Context, im jobs.Images) error {
	if !b.o.StandIn {
		return errors.New("this board is deployed with image, not images = {kernel, ...}")
	}
	if err := b.Deploy(ctx, im.Rootfs); err != nil {
		return err
	}
	b.log.Warn("stand-in: the kernel images are not booted; the board boots its own shell", "kernel", im.Kernel)
	return nil
}

func untar(ctx context.Context, root *os.Root, f io.Reader) error {
	br := bufio.NewReader(f)
	magic, _ := br.Peek(2)
	var r io.Reader = br
	if bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gunzip: %w", err)
		}
		defer zr.Close()
		r = zr
	}
	tbr := bufio.NewReader(r)
	if hdr, err := tbr.Peek(512); err != nil || !isTarHeader(hdr) {
		return errNotArchive
	}
	tr := tar.NewReader(tbr)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := extract(root, tr, h); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	}
}

func isTarHeader(b []byte) bool {
	return len(b) >= 262 && (string(b[257:262]) == "ustar" || bytes.Equal(b, make([]byte, len(b))))
}

func extract(root *os.Root, tr *tar.Reader, h *tar.Header) error {
	name, err := localName(h.Name)
	if err != nil {
		return err
	}
	mode := h.FileInfo().Mode()
	switch h.Typeflag {
	case tar.TypeDir:
		return mkdir(root, name, mode)
	case tar.TypeReg: // the reader reports old TypeRegA entries as TypeReg
		return writeFile(root, name, mode, tr)
	case tar.TypeSymlink:
		return symlink(root, name, h.Linkname)
	case tar.TypeLink:
		target, err := localName(h.Linkname)
		if err != nil {
			return fmt.Errorf("hard link target: %w", err)
		}
		if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		removeNonDir(root, name)
		return root.Link(target, name)
	default:
		return nil // devices, fifos...: skipped
	}
}

// ownTree gives the board's root to the sandbox uid (see ownTreeBySandbox).
func (b *Board) ownTree() error {
	r, err := os.OpenRoot(b.root)
	if err != nil {
		return err
	}
	defer r.Close()
	return ownTreeBySandbox(r)
}
