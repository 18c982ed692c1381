package runner

import (
	"log/slog"

	"golang.org/x/sys/unix"
)

// spreadBoards marks work, the directory of the boards' sandboxes, as the
// top of directory hierarchies (ext4's FS_TOPDIR_FL, chattr +T): the
// file system then places each board's directory, and so the files made
// and removed in it for every job, in a block group of its own choosing
// instead of beside work's parent (/tmp, shared with everything else on
// the host). On ext4 without a journal, making an inode skips every
// inode freed in its group in the last half minute, one by one: where
// the whole host churns files, that scan was a fifth of the harness's
// CPU in a 100-node job. Best effort: other file systems do without.
// topDirFlag is FS_TOPDIR_FL (linux/fs.h), which x/sys/unix does not name.
const topDirFlag = 0x00020000

func spreadBoards(work string, log *slog.Logger) {
	fd, err := unix.Open(work, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		log.Debug("boards' directory: flags", "dir", work, "err", err)
		return
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err == nil && flags&topDirFlag == 0 {
		err = unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|topDirFlag))
	}
	if err != nil {
		log.Debug("boards' directory: not marked as the top of hierarchies", "dir", work, "err", err)
	}
}
