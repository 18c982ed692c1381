package sim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// A board's root (Dir/root: its HOME, with its /tmp in it) belongs to one
// job: it is emptied when a board is opened for a job (New, before any
// deploy), when it is closed at the job's end, and when a board a dead
// harness left on is powered off (PowerOffLeftover). What troupe keeps for
// itself (the power-on token) lives in Dir, beside the root, never in it.

// rootName is the board's root in its Dir.
const rootName = "root"

// clearRoot removes dir's root and everything in it. It works through dir
// (which troupe owns, the board never reaches): nothing the board's
// processes made, a symlink included, leads it out of dir. Directories the
// board made unreadable or unwritable are opened up first. Then the
// shared copies of files no board holds any more go (sharedFiles).
func clearRoot(dir string) error {
	err := removeRoot(dir)
	if s := sharedIn(filepath.Dir(dir)); s != nil {
		s.sweep()
	}
	return err
}

func removeRoot(dir string) error {
	d, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("empty the board's root: %w", err)
	}
	defer d.Close()
	if err := d.RemoveAll(rootName); err == nil {
		return nil
	}
	if err := openUp(d, rootName); err != nil {
		return fmt.Errorf("empty the board's root: %w", err)
	}
	if err := d.RemoveAll(rootName); err != nil {
		return fmt.Errorf("empty the board's root: %w", err)
	}
	return nil
}

// openUp gives the owner read, write and search permission on name and
// every directory below it (never through a symlink: WalkDir does not
// follow them, and d keeps every path inside it), so that what is in them
// can be listed and removed.
func openUp(d *os.Root, name string) error {
	fi, err := d.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !fi.IsDir()) {
		return nil
	}
	if err != nil {
		return err
	}
	return fs.WalkDir(d.FS(), name, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			// A directory not read yet was already opened up on the
			// first visit; what still fails is left to RemoveAll to report.
			if e != nil && e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if e.IsDir() {
			if info, ierr := e.Info(); ierr == nil && info.Mode().Perm()&0o700 == 0o700 {
				return nil
			}
			return d.Chmod(p, 0o700)
		}
		return nil
	})
}

// resetRoot makes dir's root an empty directory of the board's (see
// clearRoot; the shared copies are swept when boards close).
func resetRoot(dir string, unsandboxed bool) error {
	if err := removeRoot(dir); err != nil {
		return err
	}
	d, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("make the board's root: %w", err)
	}
	defer d.Close()
	if err := d.Mkdir(rootName, 0o755); err != nil {
		return fmt.Errorf("make the board's root: %w", err)
	}
	if unsandboxed {
		return nil
	}
	return ownBySandbox(d, rootName)
}

// SpreadBoards marks work, the directory of the boards' Dirs, as the top
// of directory hierarchies (ext4's FS_TOPDIR_FL, chattr +T): the file
// system then places each board's Dir, and so the files made and removed
// in it for every job, in a block group of its own choosing instead of
// beside work's parent (/tmp, shared with everything else on the host).
// On ext4 without a journal, making an inode skips every inode freed in
// its group in the last half minute, one by one: where the whole host
// churns files, that scan was a fifth of the harness's CPU in a 100-node
// job. Other file systems have no such flag (an error the caller may
// ignore: boards work the same without it).
func SpreadBoards(work string) error {
	fd, err := unix.Open(work, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("spread boards in %s: %w", work, err)
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err == nil && flags&topDirFlag == 0 {
		err = unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|topDirFlag))
	}
	if err != nil {
		return fmt.Errorf("spread boards in %s: %w", work, err)
	}
	return nil
}

// topDirFlag is FS_TOPDIR_FL (linux/fs.h), which x/sys/unix does not name.
const topDirFlag = 0x00020000
