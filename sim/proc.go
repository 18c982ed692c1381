package sim

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

var subreaperOnce sync.Once

// becomeSubreaper makes this process the reaper of orphaned board
// processes, so that killed, reparented descendants can be reaped (many
// container inits never reap zombies, and a zombie still answers signal 0).
func becomeSubreaper() {
	subreaperOnce.Do(func() {
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	})
}

type procInfo struct {
	pid, ppid, pgid, sid int
	state                byte
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

// killSession SIGKILLs every process belonging to one power-on: members of
// the sessions and process groups led by its shells, and every process
// carrying its token in the environment. It reaps reparented zombies and
// returns once all of them are gone, or an error at deadline.
func killSession(token string, shells map[int]bool, deadline time.Time) error {
	self := os.Getpid()
	needle := []byte("\x00" + tokenVar + "=" + token + "\x00")
	tracked := map[int]bool{}
	foreign := map[int]bool{} // checked once: not ours (a process's environment is fixed)
	pause := 2 * time.Millisecond
	for {
		var alive []int
		for _, p := range listProcs() {
			if p.pid == self {
				continue
			}
			if foreign[p.pid] {
				continue
			}
			if !tracked[p.pid] && !shells[p.pid] && !shells[p.sid] && !shells[p.pgid] && !environHas(p.pid, needle) {
				foreign[p.pid] = true
				continue
			}
			tracked[p.pid] = true
			if p.state == 'Z' || p.state == 'X' {
				// Shells are reaped by their exec.Cmd; others once they
				// have been reparented to us.
				if p.ppid == self && !shells[p.pid] {
					var ws unix.WaitStatus
					if n, _ := unix.Wait4(p.pid, &ws, unix.WNOHANG, nil); n == p.pid {
						continue
					}
				}
				alive = append(alive, p.pid)
				continue
			}
			_ = unix.Kill(p.pid, unix.SIGKILL)
			alive = append(alive, p.pid)
		}
		if len(alive) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			sort.Ints(alive)
			return fmt.Errorf("processes still alive after SIGKILL: %v", alive)
		}
		// Back off: most processes are gone at the first look; reading
		// every /proc/N/stat costs CPU other boards need.
		t := time.NewTimer(pause)
		<-t.C
		pause = min(2*pause, 50*time.Millisecond)
	}
}
