package sim

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// PutFiles writes files (paths relative to the board shell's $TMPDIR)
// straight into the board's tmp: how the test shell's helpers, and a
// test's script, environment and group file, reach a sim board without
// being typed through its console.
//
// Confinement: the board's tmp and every directory below it are opened
// one component at a time without following a symlink (a link the
// board's processes made there is refused, never followed), and every
// file is new (O_EXCL after removing what is there: a FIFO put in its
// place cannot block the open, a file hard-linked under other names by an
// earlier put is not changed under them).
//
// Inodes: creating a file is the expensive part on this host's ext4 (its
// allocator skips every inode freed in the last half minute), so what can
// be one inode is: files of equal contents in one directory are hard
// links of one (maxLinked), and, when the board cannot change a file it
// does not own (see sharedFiles), a content put on the boards of one work
// directory before is a link to one read-only copy. Otherwise files and
// the directories made for them are the sandbox user's, as the rest of
// the board's root.
func (b *Board) PutFiles(files map[string][]byte, mode fs.FileMode) error {
	if err := b.putFiles(files, mode); err != nil {
		return fmt.Errorf("put files on %s: %w", b.o.Name, err)
	}
	return nil
}

func (b *Board) putFiles(files map[string][]byte, mode fs.FileMode) error {
	names := slices.Sorted(maps.Keys(files))
	for _, name := range names {
		if !filepath.IsLocal(name) {
			return fmt.Errorf("%q is not a relative path", name)
		}
	}
	tmpFD, err := b.openTmp()
	if err != nil {
		return err
	}
	p := &putter{dirs: map[string]int{".": tmpFD}, written: map[string]map[string]string{}, perm: unixPerm(mode), storeFD: -1}
	if !b.o.Unsandboxed && os.Geteuid() == 0 {
		// The board runs as another uid than this process: it cannot
		// change a file this process owns (see sharedFiles).
		p.own = true
		p.shared = sharedFor(filepath.Dir(filepath.Dir(b.root)))
	}
	defer p.close()
	for _, name := range names {
		if err := p.put(name, files[name]); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// openTmp opens the board's tmp, made first (makeTmp) unless it is a
// directory already.
func (b *Board) openTmp() (int, error) {
	rootFD, err := unix.Open(b.root, dirFlags, 0)
	if err != nil {
		return -1, fmt.Errorf("open the board's root: %w", err)
	}
	defer unix.Close(rootFD)
	fd, err := unix.Openat(rootFD, "tmp", dirFlags, 0)
	if err != nil {
		if err := b.makeTmp(); err != nil {
			return -1, err
		}
		fd, err = unix.Openat(rootFD, "tmp", dirFlags, 0)
	}
	if err != nil {
		return -1, fmt.Errorf("open the board's tmp: %w", err)
	}
	return fd, nil
}

// dirFlags opens a directory to work in, never through a symlink.
const dirFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// maxLinked bounds the files PutFiles compares (and keeps a copy of) to
// link equal ones in one directory: helpers are small, a job's group file
// is not.
const maxLinked = 4096

// putter is one PutFiles call: the directories opened so far (by path
// relative to tmp) and the files written.
type putter struct {
	dirs    map[string]int
	written map[string]map[string]string // directory → contents → the name they were put under
	perm    uint32
	own     bool         // hand what is made to the sandbox uid
	shared  *sharedFiles // nil: every file is the board's own
	storeFD int          // the shared files' directory, once opened
}

func (p *putter) close() {
	for _, fd := range p.dirs {
		_ = unix.Close(fd)
	}
	if p.storeFD >= 0 {
		_ = unix.Close(p.storeFD)
	}
}

func (p *putter) put(name string, data []byte) error {
	dir, base := filepath.Dir(name), filepath.Base(name)
	dirFD, err := p.dir(dir)
	if err != nil {
		return err
	}
	// A small file with the same contents as one put before in the same
	// directory is a hard link to it: the test shell's helper programs
	// are mostly one script under many names.
	small := len(data) <= maxLinked
	if small {
		if first, ok := p.written[dir][string(data)]; ok {
			err := replace(dirFD, base, func() error { return linkFiles(dirFD, first, dirFD, base) })
			if !errors.Is(err, unix.EMLINK) {
				return err
			}
			// As many links as the file system takes: a file of its own,
			// which the names after it link to.
		}
	}
	shared := false
	if p.shared != nil {
		if shared, err = p.shared.link(p, dirFD, base, data); err != nil {
			return err
		}
	}
	if !shared {
		if err := p.write(dirFD, base, data); err != nil {
			return err
		}
	}
	if small {
		if p.written[dir] == nil {
			p.written[dir] = map[string]string{}
		}
		p.written[dir][string(data)] = base
	}
	return nil
}

// dir opens (making it if needed) the directory d relative to tmp.
func (p *putter) dir(d string) (int, error) {
	if fd, ok := p.dirs[d]; ok {
		return fd, nil
	}
	parent, err := p.dir(filepath.Dir(d))
	if err != nil {
		return -1, err
	}
	base := filepath.Base(d)
	if err := unix.Mkdirat(parent, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("make %s: %w", d, err)
	}
	fd, err := unix.Openat(parent, base, dirFlags, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", d, err)
	}
	p.dirs[d] = fd
	if p.own {
		uid, gid := sandboxIDs()
		if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
			return -1, fmt.Errorf("hand %s to the sandbox uid: %w", d, err)
		}
	}
	return fd, nil
}

// write makes name in dirFD a new file of the board's with data.
func (p *putter) write(dirFD int, name string, data []byte) error {
	var fd int
	err := replace(dirFD, name, func() error {
		var err error
		fd, err = unix.Openat(dirFD, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, p.perm)
		return err
	})
	if err != nil {
		return err
	}
	err = writeAll(fd, data)
	if err == nil {
		err = unix.Fchmod(fd, p.perm) // the umask may have taken bits at the create
	}
	if err == nil && p.own {
		uid, gid := sandboxIDs()
		err = unix.Fchown(fd, uid, gid)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}

// linkFiles makes newName in newDir a hard link to oldName in oldDir
// (a variable: tests make it fail as a full file system would).
var linkFiles = func(oldDir int, oldName string, newDir int, newName string) error {
	return unix.Linkat(oldDir, oldName, newDir, newName, 0)
}

// replace runs mk, which makes name in dirFD and fails with EEXIST if
// something is there; then it removes what is there (a file, a link, an
// empty directory) and runs mk again.
func replace(dirFD int, name string, mk func() error) error {
	err := mk()
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	err = unix.Unlinkat(dirFD, name, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(dirFD, name, unix.AT_REMOVEDIR)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove what is in the way: %w", err)
	}
	return mk()
}

func writeAll(fd int, data []byte) error {
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// unixPerm is m's permission and set-id bits as the system takes them.
func unixPerm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		p |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		p |= unix.S_ISVTX
	}
	return p
}
