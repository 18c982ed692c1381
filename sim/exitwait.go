package sim

import (
	"os"

	"golang.org/x/sys/unix"
)

// awaitExit returns once p has exited, without reaping it (Wait does, at
// once then), and without holding an OS thread meanwhile: it waits on a
// pidfd in the runtime's poller. A goroutine blocked in wait(2) holds a
// thread: one per running shell made a 1000-board lab a 1000-thread
// process. If the pidfd cannot be polled it returns at once (Wait then
// blocks as it would have).
func awaitExit(p *os.Process) {
	fd, err := unix.PidfdOpen(p.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		return err != nil || info.Signo != 0
	})
}
