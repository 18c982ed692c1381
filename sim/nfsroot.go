package sim

// The kernel's NFS root, emulated: a u-boot board whose kernel command
// line says root=/dev/nfs nfsroot=SERVER:PATH fetches PATH (a tar or
// tar.gz rootfs, staged by troupe's TFTP server) over TFTP from SERVER
// and unpacks it into its root, which its shell then sees.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/troupe-lab/troupe/hardware/tftp"
)

// nfsRoot reads nfsroot=[SERVER:]PATH[,OPTIONS] from a kernel command
// line. SERVER may hold a port (host:port); PATH is after the last ':'.
func nfsRoot(cmdline string) (server, path string, ok bool) {
	for _, f := range strings.Fields(cmdline) {
		v, found := strings.CutPrefix(f, "nfsroot=")
		if !found {
			continue
		}
		v, _, _ = strings.Cut(v, ",")
		if i := strings.LastIndex(v, ":"); i >= 0 {
			server, path = v[:i], v[i+1:]
		} else {
			path = v
		}
		return server, path, path != ""
	}
	return "", "", false
}

// errNoNFSServer: nfsroot= without a server.
var errNoNFSServer = errors.New("nfsroot= names no server")

// mountNFSRoot fetches the rootfs path from server over TFTP (bounded by
// the board's DRAM, as u-boot's loads are) and unpacks it into the
// board's root.
func (b *Board) mountNFSRoot(ctx context.Context, server, path string) error {
	if server == "" {
		return errNoNFSServer
	}
	f, err := os.CreateTemp("", "troupe-nfsroot-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	ctx, cancel := context.WithTimeout(ctx, tftpTimeout)
	defer cancel()
	w := &limitFile{f: f, limit: ubootDRAM}
	if _, err := tftp.Get(ctx, tftpServer(server), path, w, ubootBlkSize); err != nil {
		return fmt.Errorf("fetch %s from %s: %w", path, server, err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return err
	}
	root, err := os.OpenRoot(b.root)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := untar(ctx, root, f); err != nil {
		return fmt.Errorf("unpack %s: %w", path, err)
	}
	if !b.o.Unsandboxed {
		return b.ownTree()
	}
	return nil
}

// limitFile writes to f, refusing more than limit bytes.
type limitFile struct {
	f        *os.File
	n, limit int64
}

func (w *limitFile) Write(p []byte) (int, error) {
	if w.n+int64(len(p)) > w.limit {
		return 0, errors.New("rootfs too large for DRAM")
	}
	w.n += int64(len(p))
	return w.f.Write(p)
}

// nfsRootLines replace the kernel log's block device root lines.
func nfsRootLines(server, path string, err error) []string {
	if err != nil {
		return []string{
			fmt.Sprintf("[    0.781234] VFS: Unable to mount root fs via NFS (%s:%s): %v", server, path, err),
			"[    0.791234] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,255)",
		}
	}
	return []string{fmt.Sprintf("[    0.789012] VFS: Mounted root (nfs filesystem) on device 0:15 (%s:%s).", server, path)}
}
