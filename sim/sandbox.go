package sim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A sandboxed shell runs as a chain of processes:
//
//	troupe ─▶ this program re-executed as "troupe-sandbox board" (stage.c:
//	          C, before the Go runtime starts): joins the network's user +
//	          network namespaces as their root, arms its death signal
//	          (SIGKILL when troupe dies), makes new user, mount, PID, UTS
//	          and IPC namespaces
//	             └─ fork: the init, PID 1 of the board: hostname, mounts,
//	                /bin/sh on the console, reaper of every orphan
//
// The network's namespaces are held by a "troupe-sandbox net" process
// (network.go, stage.c). Killing the init ends its PID namespace: no
// process of the board survives; the first process exits once the init is
// reaped. The chain never runs as a privileged uid on the host: the
// network's user namespace maps its root to the sandbox uid (sandboxIDs).
// The stages are C run by a constructor because starting this program's
// Go runtime and package inits costs some 40 ms of CPU per start: more
// than the rest of a board's boot.

// sandboxArg0 is argv[0] of a re-executed sandbox stage (stage.c).
const sandboxArg0 = "troupe-sandbox"

// exeFD is the descriptor of this program's executable in every stage
// (exec'd as exePath). reportFD is where the init tells its pid on the
// host, envFD where it reads the shell's environment (not on the command
// line, which every user of the host can read), mnFD the board's end of
// its MultiNode side channel (see MultiNodeFD for the shell's).
const (
	exeFD    = 3
	reportFD = 4
	envFD    = 5
	mnFD     = 6
)

const exePath = "/proc/self/fd/3"

// sandboxHome is the board's HOME inside its sandbox (Dir/root on the host);
// its /tmp is Dir/root/tmp.
const sandboxHome = "/root"

// maxShellEnv bounds the shell's environment (stage.c refuses more).
const maxShellEnv = 1 << 20

// sandboxIDs is the host uid and gid sandboxes run as: this process's own
// when it is not root, nobody's when it is (never root).
func sandboxIDs() (uid, gid int) {
	if os.Geteuid() != 0 {
		return os.Geteuid(), os.Getegid()
	}
	return 65534, 65534
}

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

// sandbox is one sandboxed shell being started or running.
type sandbox struct {
	cmd    *exec.Cmd // nsenter, then unshare: exits once the init is reaped
	report *os.File  // read end: the init's pid on the host
}

// newSandbox makes the command that runs one sandboxed shell of a board
// on the console tty, in network n, with cwd = the board's root (the init
// binds its cwd as HOME). Start it with start.
// mn, if not nil, is the board's end of its MultiNode side channel: the
// shell gets it as MultiNodeFD. probe: the init stops once the sandbox is
// built (no shell).
func newSandbox(n *netns, exe, tty, mn *os.File, root, hostname string, env []string, probe bool) (*sandbox, error) {
	envFile, err := shellEnvFile(env)
	if err != nil {
		return nil, err
	}
	flag := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	// Our uid is the namespace's root already unless we are root (then
	// the init becomes the namespace's root: the sandbox uid).
	preserve := os.Geteuid() != 0
	cmd := &exec.Cmd{
		Path: exePath,
		Args: []string{sandboxArg0, "board", strconv.Itoa(os.Getpid()), strconv.Itoa(n.pid()), flag(preserve),
			hostname, strconv.Itoa(ShellNice), flag(probe), flag(mn != nil)},
		Env: []string{},
		Dir: root,
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	r, w, err := os.Pipe()
	if err != nil {
		_ = envFile.Close()
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{exe, w, envFile}
	if mn != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, mn)
	}
	// A session of its own, without a controlling tty: the shell takes
	// the console as its own.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	return &sandbox{cmd: cmd, report: r}, nil
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

// start starts the chain; the init's pid comes later (initPID).
func (sb *sandbox) start() error {
	err := sb.cmd.Start()
	sb.closeOurs()
	if err != nil {
		_ = sb.report.Close()
	}
	return err
}

// closeOurs closes this process's copies of the files the chain gets
// (the report pipe's write end, the environment).
func (sb *sandbox) closeOurs() {
	_ = sb.cmd.ExtraFiles[1].Close()
	_ = sb.cmd.ExtraFiles[2].Close()
}

// discard releases a sandbox that will not be started.
func (sb *sandbox) discard() {
	sb.closeOurs()
	_ = sb.report.Close()
}

// initPID reads the init's pid on the host and opens a pidfd on it: the
// init cannot be reaped before it is killed (it is the sandbox's life), so
// the pidfd names it for sure. Blocks until the init has said it, or its
// chain has ended.
func (sb *sandbox) initPID() (int, error) {
	defer sb.report.Close()
	var buf [32]byte
	n, _ := sb.report.Read(buf[:])
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		return -1, errors.New("the sandbox init did not start")
	}
	return unix.PidfdOpen(pid, 0)
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

// box is a sandboxed shell of a power-on.
type box struct {
	top    *os.Process   // the chain's first process (a child of ours)
	exited chan struct{} // closed once top has been reaped: the sandbox is gone

	mu    sync.Mutex
	pidfd int // the init, once known; -1 before
}

// kill ends the sandbox: SIGKILL to its init ends its PID namespace, and
// the chain exits once every process in it is gone. Before the init is
// known, the chain is killed and the init dies with it (death signal).
func (b *box) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pidfd >= 0 {
		if err := unix.PidfdSendSignal(b.pidfd, unix.SIGKILL, nil, 0); err == nil {
			return
		}
	}
	_ = b.top.Kill()
}

// setInit records the init's pidfd (or closes it when the sandbox is gone).
func (b *box) setInit(fd int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.exited:
		_ = unix.Close(fd)
	default:
		b.pidfd = fd
	}
}

// reaped closes the pidfd once the chain has been reaped.
func (b *box) reaped() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.exited)
	if b.pidfd >= 0 {
		_ = unix.Close(b.pidfd)
		b.pidfd = -1
	}
}
