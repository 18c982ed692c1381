package sim

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/troupe-lab/troupe/internal/sandboxid"
	"github.com/troupe-lab/troupe/lab"
)

// A sandboxed shell runs as a chain of processes:
//
//	troupe ─▶ the network's stage: this program re-executed as
//	          "troupe-sandbox net" (stage.c: C, before the Go runtime
//	          starts) in a user namespace (root = the sandbox uid) and a
//	          network namespace, dies with troupe (death signal)
//	             └─ clone, per shell asked for on its control socket: the
//	                init, PID 1 of new user, mount, PID, UTS and IPC
//	                namespaces of the board: hostname, mounts, /bin/sh on
//	                the console, reaper of every orphan; dies with the
//	                network's stage
//
// troupe gets the init's pidfd: it watches the sandbox's end on it and
// kills it with it (SIGKILL to the init ends its PID namespace: no process
// of the board survives). No process is executed per shell but the shell:
// in a VM every process start costs milliseconds of CPU (its page tables,
// TLB flushes that are hypervisor calls), the cost of a board's boot. The
// chain never runs as a privileged uid on the host (sandboxIDs).

// sandboxArg0 is argv[0] of the re-executed stage (stage.c).
const sandboxArg0 = "troupe-sandbox"

// exeFD is the descriptor of this program's executable in the stage
// (exec'd as exePath).
const exeFD = 3

const exePath = "/proc/self/fd/3"

// sandboxHome is the board's HOME inside its sandbox (Dir/root on the host);
// its /tmp is Dir/root/tmp.
const sandboxHome = "/root"

// maxShellEnv bounds the shell's environment (stage.c refuses more).
const maxShellEnv = 1 << 20

// maxHostname is the longest hostname a sandbox takes (the kernel's).
const maxHostname = 64

// sandboxIDs is the host uid and gid sandboxes run as: this process's own
// when it is not root, nobody's when it is (never root).
func sandboxIDs() (uid, gid int) { return sandboxid.IDs() }

// openExe opens this program's executable for the stages.
func openExe() (*os.File, error) {
	p, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open own executable: %w", err)
	}
	return f, nil
}

// shellSpec is one sandboxed shell to start.
type shellSpec struct {
	tty      *os.File // its console (stdin, stdout, stderr)
	mn       *os.File // the board's end of its MultiNode side channel, or nil
	root     string   // the board's root directory: HOME
	hostname string
	env      []string
	probe    bool // the init stops once the sandbox is built, saying "ok" on tty
	limits   Limits
}

// Limits bound what one sandboxed board may take of its host (stage.c):
// Processes, its processes at once (RLIMIT_NPROC, counted in the
// board's own user namespace: a fork bomb fails there, not on the host);
// FileSize, the bytes of any one file it writes (RLIMIT_FSIZE: a write
// past it fails, SIGXFSZ). Zero: the default. An unsandboxed board is
// not bound.
type Limits struct {
	Processes int
	FileSize  int64
}

// Defaults of Limits.
const (
	DefaultProcesses = 1024
	DefaultFileSize  = 1 << 30
)

// LabLimits are the limits lab file l sets for its sim boards.
func LabLimits(l *lab.Lab) Limits {
	return Limits{Processes: l.SandboxProcesses, FileSize: l.SandboxFileSize}
}

// withDefaults is l with the defaults for its zero fields.
func (l Limits) withDefaults() Limits {
	if l.Processes <= 0 {
		l.Processes = DefaultProcesses
	}
	if l.FileSize <= 0 {
		l.FileSize = DefaultFileSize
	}
	return l
}

// shellEnvFile is a sealed-size memory file holding env, NUL-separated,
// read from its start by the init.
func shellEnvFile(env []string) (*os.File, error) {
	var b strings.Builder
	for _, kv := range env {
		if strings.IndexByte(kv, 0) >= 0 {
			return nil, fmt.Errorf("sandbox: environment entry with a NUL byte")
		}
		b.WriteString(kv)
		b.WriteByte(0)
	}
	if b.Len() >= maxShellEnv {
		return nil, fmt.Errorf("sandbox: shell environment of %d bytes (at most %d)", b.Len(), maxShellEnv-1)
	}
	fd, err := unix.MemfdCreate("troupe-sandbox-env", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("sandbox: environment: %w", err)
	}
	f := os.NewFile(uintptr(fd), "troupe-sandbox-env")
	if _, err := f.WriteString(b.String()); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("sandbox: environment: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("sandbox: environment: %w", err)
	}
	return f, nil
}

// sandboxError explains why namespaces were refused, naming the kernel
// setting when one says no.
func sandboxError(err error) error {
	cause := refusalCause(procSys)
	msg := "sim boards run in sandboxes (user, mount, PID, UTS, IPC and network namespaces), and the kernel refused them"
	if cause != "" {
		msg += " (" + cause + ")"
	}
	return fmt.Errorf("%s: %w; allow unprivileged user namespaces, or set sandbox = \"none\" in the lab file to run sim boards unsandboxed", msg, err)
}

// procSys is where the kernel's settings are read (a test points it
// elsewhere).
var procSys = "/proc/sys"

// refusalCause names the kernel setting that refuses user namespaces, or "".
func refusalCause(dir string) string {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	switch {
	case read("user/max_user_namespaces") == "0":
		return "user.max_user_namespaces=0"
	case read("kernel/unprivileged_userns_clone") == "0" && os.Geteuid() != 0:
		return "kernel.unprivileged_userns_clone=0"
	case read("kernel/apparmor_restrict_unprivileged_userns") == "1":
		return "kernel.apparmor_restrict_unprivileged_userns=1"
	}
	return ""
}

// stageTimeout bounds how long a network or probe stage may take to start.
const stageTimeout = 10 * time.Second

// box is a sandboxed shell: its init, watched on its pidfd.
type box struct {
	pid     int           // the init's pid on the host
	pidfd   *os.File      // the init (pollable: readable once it has exited)
	exited  chan struct{} // closed once the init has exited: the sandbox is gone
	release func()        // drops what the sandbox held (its network)
}

// newBox watches the init on pidfd until it exits; release runs then.
func newBox(pid int, pidfd *os.File, release func()) *box {
	bx := &box{pid: pid, pidfd: pidfd, exited: make(chan struct{}), release: release}
	go bx.watch()
	return bx
}

// watch waits for the init's exit on the runtime's poller (no OS thread
// held meanwhile).
func (b *box) watch() {
	if rc, err := b.pidfd.SyscallConn(); err == nil {
		_ = rc.Read(func(fd uintptr) bool {
			p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			for {
				n, err := unix.Poll(p, 0)
				if err != unix.EINTR {
					return err != nil || n > 0
				}
			}
		})
	}
	close(b.exited)
	_ = b.pidfd.Close()
	b.release()
}

// kill ends the sandbox: SIGKILL to its init ends its PID namespace.
func (b *box) kill() {
	rc, err := b.pidfd.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.PidfdSendSignal(int(fd), unix.SIGKILL, nil, 0) })
}
