package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type procInfo struct {
	pid, ppid, pgid, sid int
	state                byte
	start                uint64 // start time (clock ticks after boot): a pid reused has another
}

// readStat parses /proc/<pid>/stat.
func readStat(pid int) (procInfo, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return procInfo{}, false
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 4 || len(f[0]) == 0 {
		return procInfo{}, false
	}
	p := procInfo{pid: pid, state: f[0][0]}
	p.ppid, _ = strconv.Atoi(f[1])
	p.pgid, _ = strconv.Atoi(f[2])
	p.sid, _ = strconv.Atoi(f[3])
	if len(f) > 19 {
		p.start, _ = strconv.ParseUint(f[19], 10, 64)
	}
	return p, true
}

func listProcs() []procInfo {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var ps []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readStat(pid); ok {
			ps = append(ps, p)
		}
	}
	return ps
}

func environHas(pid int, needle []byte) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	return bytes.Contains(append([]byte{0}, b...), needle)
}

// procTable is this process's shared look at /proc for the power-offs of
// unsandboxed boards. Each of them scans every process on the host, and
// reads the environment of those it does not know, until its own are
// gone: with a worker's 100 boards powering off at once on a host of 1000
// boards, one scan and one environment read per board per process was
// O(boards × processes) reads, most of the workers' CPU (perf, the 10×100
// benchmark) and 12–25 s per power-off. Power-offs running at once share
// one scan, and a process's token is read once.
type procTable struct {
	scan func() []procInfo
	read func(pid int) ([]byte, error) // a process's environment

	mu      sync.Mutex
	cond    *sync.Cond
	gap     time.Duration // at least this between the end of a scan and the next
	ended   time.Time     // when the last scan ended
	running bool
	waiting int    // callers waiting for a scan
	started uint64 // scans started
	done    uint64 // the scan procs is of
	procs   []procInfo
	tokens  map[procKey]string // a process's TROUPE_SIM_TOKEN ("": none)
}

type procKey struct {
	pid   int
	start uint64
}

func newProcTable(scan func() []procInfo, read func(int) ([]byte, error), gap time.Duration) *procTable {
	t := &procTable{scan: scan, read: read, gap: gap, tokens: map[procKey]string{}}
	t.cond = sync.NewCond(&t.mu)
	return t
}

var procs = newProcTable(listProcs, func(pid int) ([]byte, error) {
	return os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
}, scanGap)

// scanGap is the pause between the shared scans of /proc.
const scanGap = 20 * time.Millisecond

// list returns the processes as a scan that started after the call found
// them (so it sees what the caller did before, such as its kills). A scan
// takes a bounded number of /proc reads; callers at once wait for one.
func (t *procTable) list() []procInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	want := t.started + 1
	for t.done < want {
		if t.running {
			t.waiting++
			t.cond.Wait()
			t.waiting--
			continue
		}
		t.running = true
		t.started++
		n, rest := t.started, t.gap-time.Since(t.ended)
		t.mu.Unlock()
		if rest > 0 {
			// Scans back to back (100 boards waiting for theirs to be
			// gone) would take a core: a pause between them.
			time.Sleep(rest)
		}
		ps := t.scan()
		t.mu.Lock()
		t.running, t.done, t.procs, t.ended = false, n, ps, time.Now()
		t.forget(ps)
		t.cond.Broadcast()
	}
	return t.procs
}

// forget drops the tokens of processes gone (the map stays as big as the
// process table).
func (t *procTable) forget(ps []procInfo) {
	if len(t.tokens) <= 2*len(ps) {
		return
	}
	alive := make(map[procKey]bool, len(ps))
	for _, p := range ps {
		alive[procKey{p.pid, p.start}] = true
	}
	for k := range t.tokens {
		if !alive[k] {
			delete(t.tokens, k)
		}
	}
}

// token is a process's TROUPE_SIM_TOKEN ("" none, or unreadable), read
// once per process (a process's environment is fixed).
func (t *procTable) token(p procInfo) string {
	k := procKey{p.pid, p.start}
	t.mu.Lock()
	tok, ok := t.tokens[k]
	t.mu.Unlock()
	if ok {
		return tok
	}
	b, err := t.read(p.pid)
	if err != nil && !errors.Is(err, fs.ErrPermission) {
		return "" // gone (or going): asked again next time
	}
	prefix := []byte(tokenVar + "=")
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, prefix); ok {
			tok = string(v)
			break
		}
	}
	t.mu.Lock()
	t.tokens[k] = tok
	t.mu.Unlock()
	return tok
}

// killSession SIGKILLs every process belonging to one power-on of an
// unsandboxed board: members of the sessions and process groups led by its
// shells, and every process carrying its token in the environment. It
// returns once all of them are gone (a zombie is gone: whoever it was
// reparented to reaps it, or not; this process is no subreaper), or an
// error at deadline.
func killSession(token string, shells map[int]bool, deadline time.Time) error {
	self := os.Getpid()
	// Each shell leads its session and process group: what runs in that
	// group dies at once (a fork in it fails), without a scan. A scan
	// finds the rest (other groups, what carries the token); the ones
	// found are then watched one by one, and only once they are all gone
	// does a scan (started after every kill) look for what forked
	// meanwhile: a power-off scans /proc about twice, not once per pass.
	for pid := range shells {
		if pid > 1 {
			_ = unix.Kill(-pid, unix.SIGKILL)
		}
	}
	tracked := map[int]bool{}
	foreign := map[int]bool{} // checked once: not ours (a process's environment is fixed)
	scan := func() []procInfo {
		var alive []procInfo
		for _, p := range procs.list() {
			if p.pid == self {
				continue
			}
			if foreign[p.pid] {
				continue
			}
			if !tracked[p.pid] && !shells[p.pid] && !shells[p.sid] && !shells[p.pgid] && procs.token(p) != token {
				foreign[p.pid] = true
				continue
			}
			tracked[p.pid] = true
			if gone(p, shells) {
				continue
			}
			_ = unix.Kill(p.pid, unix.SIGKILL)
			alive = append(alive, p)
		}
		return alive
	}
	alive := scan()
	pause := 2 * time.Millisecond
	for len(alive) > 0 {
		if time.Now().After(deadline) {
			pids := make([]int, 0, len(alive))
			for _, p := range alive {
				pids = append(pids, p.pid)
			}
			sort.Ints(pids)
			return fmt.Errorf("processes still alive after SIGKILL: %v", pids)
		}
		// Back off: most processes are gone at the first look.
		t := time.NewTimer(pause)
		<-t.C
		pause = min(2*pause, 50*time.Millisecond)
		var still []procInfo
		for _, p := range alive {
			now, ok := readStat(p.pid)
			if !ok || now.start != p.start || gone(now, shells) {
				continue // gone (a pid reused is another process)
			}
			_ = unix.Kill(p.pid, unix.SIGKILL)
			still = append(still, p)
		}
		if alive = still; len(alive) == 0 {
			alive = scan()
		}
	}
	return nil
}

// gone tells whether a process of a power-off is gone: dead, and for a
// shell also reaped by its exec.Cmd (wait for that).
func gone(p procInfo, shells map[int]bool) bool {
	return (p.state == 'Z' || p.state == 'X') && !shells[p.pid]
}

// stopSandbox SIGSTOPs every process of a sandbox below its PID 1 (the
// shell and all it started); init is that PID 1's pid on the host. It
// repeats until a pass finds no new process.
func stopSandbox(init int) {
	done := map[int]bool{}
	for pass := 0; pass < 20; pass++ {
		ps := listProcs()
		children := map[int][]int{}
		for _, p := range ps {
			children[p.ppid] = append(children[p.ppid], p.pid)
		}
		found := false
		var walk func(pid, depth int)
		walk = func(pid, depth int) {
			if depth >= 1 && !done[pid] {
				done[pid] = true
				found = true
				_ = syscall.Kill(pid, syscall.SIGSTOP)
			}
			for _, c := range children[pid] {
				walk(c, depth+1)
			}
		}
		walk(init, 0)
		if !found && pass > 0 {
			return
		}
	}
}

// ownDirBySandbox gives the directory dir (not what is in it) to the
// sandbox uid, so the board's root can write it; a no-op unless this
// process is root (its sandboxes run as nobody).
func ownDirBySandbox(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid := sandboxIDs()
	if err := os.Lchown(dir, uid, gid); err != nil {
		return fmt.Errorf("hand %s to the sandbox uid: %w", dir, err)
	}
	return nil
}

// ownBySandbox gives name in r to the sandbox uid (when root). Through r:
// a symlink the board made never leads outside its root.
func ownBySandbox(r *os.Root, name string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid := sandboxIDs()
	if err := r.Lchown(name, uid, gid); err != nil {
		return fmt.Errorf("hand %s to the sandbox uid: %w", name, err)
	}
	return nil
}

// ownTreeBySandbox does ownBySandbox for everything in r.
func ownTreeBySandbox(r *os.Root) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return fs.WalkDir(r.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := ownBySandbox(r, p); err != nil {
			return err
		}
		// chown clears the set-id bits: the image keeps its modes.
		if m := info.Mode(); m&(fs.ModeSetuid|fs.ModeSetgid) != 0 && m&fs.ModeSymlink == 0 {
			return r.Chmod(p, modeBits(m))
		}
		return nil
	})
}
