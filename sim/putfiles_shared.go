package sim

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// sharedFiles is the read-only copy, one inode, of the files PutFiles put
// on the boards of one work directory (the parent of their Dirs) with the
// same contents and mode: the test shell's helpers on every board, a
// test's script and group file on every node of a job. A board's file is
// then a hard link to it, not an inode of its own to make and free.
//
// Only when the board cannot change it: this process is root and the
// board is sandboxed (it runs as the sandbox uid, in a user namespace
// where this process's uid is not mapped), and the file's mode gives
// others what it gives its owner, but no write. Such a file is
// this process's with no write permission for anyone else: the board
// can neither write, truncate, chmod, chown, set the times or extended
// attributes of it, nor (with fs.protected_hardlinks, the default)
// hard-link it; it can remove its own name of it. So nothing one board (or job) does to it reaches
// another. What a board can see of the others is the link count.
//
// A content is shared from its second put on: the first is the board's
// own copy, so what one board alone gets (its environment file, secrets
// in it) is never kept beside the boards. The copies live in
// <work>/shared+files (0700; a board never reaches it); a copy no board
// holds any more (link count 1) is removed when a board's root is
// cleared (clearRoot), and the directory is emptied at its first use in
// a process (what a harness that died left there). A work directory
// without copies is forgotten (its first put is again the board's own).
type sharedFiles struct {
	dir string

	init sync.Once
	ok   bool // dir was made: set once by init

	mu       sync.Mutex
	seen     map[sharedKey]bool
	entries  map[sharedKey]*sharedEntry
	gen      uint64
	disabled bool // links fail across file systems: no more sharing
}

// sharedName is the shared files' directory in the work directory: '+'
// is in no board's name (lab.validName), so it is no board's Dir.
const sharedName = "shared+files"

const (
	maxShared        = 1 << 20 // bytes: larger files are each board's own
	maxSharedEntries = 1024    // copies at once; beyond, files are the boards' own
	maxSeen          = 4096    // contents remembered as put once
)

// sharedKey is a content (its SHA-256) and the mode of its copy.
type sharedKey struct {
	sum  [sha256.Size]byte
	perm uint32
}

// sharedEntry is one copy; ready once its contents are written.
type sharedEntry struct {
	name  string
	ready bool
}

var sharedDirs = struct {
	mu sync.Mutex
	m  map[string]*sharedFiles
}{m: map[string]*sharedFiles{}}

// sharedFor is the shared files of the boards in work.
func sharedFor(work string) *sharedFiles {
	sharedDirs.mu.Lock()
	defer sharedDirs.mu.Unlock()
	s := sharedDirs.m[work]
	if s == nil {
		s = &sharedFiles{dir: filepath.Join(work, sharedName), seen: map[sharedKey]bool{}, entries: map[sharedKey]*sharedEntry{}}
		sharedDirs.m[work] = s
	}
	return s
}

// sharedIn is the shared files of the boards in work, nil if none was put.
func sharedIn(work string) *sharedFiles {
	sharedDirs.mu.Lock()
	defer sharedDirs.mu.Unlock()
	return sharedDirs.m[work]
}

func (s *sharedFiles) ready() bool {
	s.init.Do(func() {
		if err := os.RemoveAll(s.dir); err != nil {
			return
		}
		s.ok = os.Mkdir(s.dir, 0o700) == nil
	})
	return s.ok
}

// sharedPerm is the mode of the copy of a file put with perm, and whether
// it may be shared: others (the board) get what the owner would, and no
// one but this process may write it.
func sharedPerm(perm uint32) (uint32, bool) {
	if perm&^0o777 != 0 || perm&0o005 != perm>>6&0o005 {
		return 0, false
	}
	return perm &^ 0o022, true
}

// link makes name in dirFD a hard link to the copy of data if data was put
// before; false: the caller writes the board's own file.
func (s *sharedFiles) link(p *putter, dirFD int, name string, data []byte) (bool, error) {
	perm, ok := sharedPerm(p.perm)
	if !ok || len(data) > maxShared || !s.ready() {
		return false, nil
	}
	key := sharedKey{sha256.Sum256(data), perm}
	e, create := s.lookup(key)
	if e == nil {
		return false, nil
	}
	if p.storeFD < 0 {
		fd, err := unix.Open(s.dir, dirFlags, 0)
		if err != nil {
			s.drop(key, e, -1)
			return false, nil
		}
		p.storeFD = fd
	}
	if create {
		if err := writeShared(p.storeFD, e.name, data, perm); err != nil {
			s.drop(key, e, -1)
			return false, nil
		}
		s.mu.Lock()
		e.ready = true
		s.mu.Unlock()
	}
	err := replace(dirFD, name, func() error { return linkFiles(p.storeFD, e.name, dirFD, name) })
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT): // removed meanwhile: no board held it
		return false, nil
	case errors.Is(err, unix.EMLINK): // as many links as the file system takes: a new copy next time
		s.drop(key, e, p.storeFD)
		return false, nil
	case errors.Is(err, unix.EXDEV):
		s.mu.Lock()
		s.disabled = true
		s.mu.Unlock()
		s.drop(key, e, p.storeFD)
		return false, nil
	}
	return false, err
}

// lookup finds key's copy: e nil means none to link (first put of this
// content, being written, or too many copies); create means the caller
// writes it.
func (s *sharedFiles) lookup(key sharedKey) (e *sharedEntry, create bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disabled {
		return nil, false
	}
	if e := s.entries[key]; e != nil {
		if e.ready {
			return e, false
		}
		return nil, false
	}
	if !s.seen[key] {
		if len(s.seen) >= maxSeen {
			clear(s.seen)
		}
		s.seen[key] = true
		return nil, false
	}
	if len(s.entries) >= maxSharedEntries {
		return nil, false
	}
	s.gen++
	e = &sharedEntry{name: fmt.Sprintf("%x-%o-%d", key.sum, key.perm, s.gen)}
	s.entries[key] = e
	return e, true
}

// drop forgets key's copy e (not a newer one) and, with storeFD >= 0,
// removes it: boards' links to it keep it as long as they are there.
func (s *sharedFiles) drop(key sharedKey, e *sharedEntry, storeFD int) {
	s.mu.Lock()
	if s.entries[key] == e {
		delete(s.entries, key)
	}
	s.mu.Unlock()
	if storeFD >= 0 {
		_ = unix.Unlinkat(storeFD, e.name, 0)
	}
}

// sweep removes the copies no board holds any more.
func (s *sharedFiles) sweep() {
	type held struct {
		key sharedKey
		e   *sharedEntry
	}
	s.mu.Lock()
	var all []held
	for k, e := range s.entries {
		if e.ready {
			all = append(all, held{k, e})
		}
	}
	s.mu.Unlock()
	if len(all) > 0 {
		fd, err := unix.Open(s.dir, dirFlags, 0)
		if err != nil {
			return
		}
		for _, h := range all {
			var st unix.Stat_t
			err := unix.Fstatat(fd, h.e.name, &st, unix.AT_SYMLINK_NOFOLLOW)
			if err == nil && st.Nlink > 1 {
				continue
			}
			s.drop(h.key, h.e, fd)
		}
		_ = unix.Close(fd)
	}
	s.forgetIfEmpty()
}

// forgetIfEmpty takes s out of sharedDirs once it has no copies, so that
// a process that runs one work directory after another (runner.Run)
// keeps nothing of the ones gone; the next put there starts anew.
func (s *sharedFiles) forgetIfEmpty() {
	work := filepath.Dir(s.dir)
	sharedDirs.mu.Lock()
	defer sharedDirs.mu.Unlock()
	s.mu.Lock()
	empty := len(s.entries) == 0
	s.mu.Unlock()
	if empty && sharedDirs.m[work] == s {
		delete(sharedDirs.m, work)
	}
}

// writeShared writes the copy name in storeFD.
func writeShared(storeFD int, name string, data []byte, perm uint32) error {
	fd, err := unix.Openat(storeFD, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return err
	}
	err = writeAll(fd, data)
	if err == nil {
		err = unix.Fchmod(fd, perm) // the umask may have taken bits at the create
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		_ = unix.Unlinkat(storeFD, name, 0)
	}
	return err
}
