package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
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
//	troupe ─▶ nsenter: joins the network's user + network namespaces, as their root
//	            └─ exec: setpriv: death signal (SIGKILL when troupe dies)
//	            └─ exec: unshare: new user, mount, PID, UTS and IPC namespaces
//	                  └─ fork + exec: this program re-executed (see init below),
//	                     stage "init", PID 1 of the board: hostname, mounts,
//	                     /bin/sh on the console, reaper of every orphan
//
// The network's namespaces are held by a stage "net" process (network.go).
// Killing the init ends its PID namespace: no process of the board
// survives; unshare exits once the init is reaped. The chain never runs as
// a privileged uid on the host: the network's user namespace maps its root
// to the sandbox uid (sandboxIDs).

// sandboxArg0 is argv[0] of a re-executed sandbox stage.
const sandboxArg0 = "troupe-sandbox"

// exeFD is the descriptor of this program's executable in every stage: the
// stages run as the sandbox uid, which may not be allowed to walk to the
// executable's path (a 0700 build directory), but may execute it by fd.
// reportFD is where the init tells its pid on the host.
// mnFD is the board's end of its MultiNode side channel in the init
// (see MultiNodeFD for the shell's).
const (
	exeFD    = 3
	reportFD = 4
	mnFD     = 5
)

const exePath = "/proc/self/fd/3"

// sandboxHome is the board's HOME inside its sandbox (Dir/root on the host);
// its /tmp is Dir/root/tmp.
const sandboxHome = "/root"

// systemDirs are the host directories a sandbox sees, read-only.
var systemDirs = []string{"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt"}

// devices are the host device nodes bound into a sandbox's /dev.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// stageEnv is the environment of the stages (not of the shell): a stage
// of a binary built with -race must not linger a second at exit.
var stageEnv = []string{"GORACE=atexit_sleep_ms=0"}

// stageConfig is what the stages are told.
type stageConfig struct {
	Parent   int      // net: the pid its parent must have (its death signal is armed after the fact)
	Hostname string   // init: the board name
	Env      []string // init: the shell's environment
	Probe    bool     // init: stop once the sandbox is built
	MN       bool     // init: it has the MultiNode side channel at mnFD
}

func init() {
	// unshare execs the init with argv[0] = exePath.
	if len(os.Args) != 3 || (os.Args[0] != sandboxArg0 && os.Args[0] != exePath) {
		return
	}
	var err error
	switch os.Args[1] {
	case "net":
		err = netStage(os.Args[2])
	case "init":
		err = initStage(os.Args[2])
	default:
		err = fmt.Errorf("unknown stage %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "troupe sandbox %s: %v\n", os.Args[1], err)
		os.Exit(125)
	}
	os.Exit(0)
}

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

// dieWithParent arms SIGKILL for when the parent dies, and dies now if it
// already has (the parent is not this stage's parent any more).
func dieWithParent(parent int) error {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("parent death signal: %w", err)
	}
	if parent != 0 && os.Getppid() != parent {
		return errors.New("parent gone")
	}
	return nil
}

// sandbox is one sandboxed shell being started or running.
type sandbox struct {
	cmd    *exec.Cmd // nsenter, then unshare: exits once the init is reaped
	report *os.File  // read end: the init's pid on the host
}

// newSandbox makes the command that runs one sandboxed shell of a board
// on the console tty, in network n, with cwd = the board's root (the init
// binds its cwd as HOME: the sandbox uid may not be able to walk to it by
// path). Start it with start.
// mn, if not nil, is the board's end of its MultiNode side channel: the
// shell gets it as MultiNodeFD.
func newSandbox(n *netns, exe, tty, mn *os.File, root, hostname string, env []string, probe bool) (*sandbox, error) {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w (install util-linux)", err)
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w (install util-linux)", err)
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w (install util-linux)", err)
	}
	cfg, err := json.Marshal(stageConfig{Hostname: hostname, Env: env, Probe: probe, MN: mn != nil})
	if err != nil {
		return nil, err
	}
	args := []string{"nsenter", "--target", strconv.Itoa(n.pid()), "--user", "--net"}
	if os.Geteuid() != 0 {
		// Our uid is the namespace's root already; without this nsenter
		// would try setgroups, which the namespace denies.
		args = append(args, "--preserve-credentials")
	}
	// nsenter's change of uid clears the death signal: setpriv arms it again,
	// so the sandbox dies with this process however it dies.
	args = append(args, "--", setpriv, "--pdeathsig", "KILL", "--", unshare, "--user", "--map-root-user", "--mount", "--pid", "--uts", "--ipc",
		"--fork", "--kill-child=SIGKILL", "--", exePath, "init", string(cfg))
	cmd := exec.Command(nsenter)
	cmd.Args = args
	cmd.Dir = root
	cmd.Env = stageEnv
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{exe, w}
	if mn != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, mn)
	}
	// A session of its own, without a controlling tty: the shell takes
	// the console as its own.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	return &sandbox{cmd: cmd, report: r}, nil
}

// start starts the chain; the init's pid comes later (initPID).
func (sb *sandbox) start() error {
	err := sb.cmd.Start()
	_ = sb.cmd.ExtraFiles[1].Close()
	if err != nil {
		_ = sb.report.Close()
	}
	return err
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

// initStage is PID 1 of a board: it builds the board's file system view,
// starts the shell on the console and reaps every process until the shell
// exits, then exits with its status (ending every other process).
func initStage(arg string) error {
	cfg, err := parseStage(arg)
	if err != nil {
		return err
	}
	// unshare armed SIGKILL at its death for this process.
	_ = os.NewFile(exeFD, "exe").Close()
	report := os.NewFile(reportFD, "report")
	// Our pid on the host, from the host's /proc (still mounted).
	self, err := os.Readlink("/proc/self")
	if err != nil {
		return fmt.Errorf("own pid: %w", err)
	}
	if _, err := report.WriteString(self); err != nil {
		return fmt.Errorf("report pid: %w", err)
	}
	_ = report.Close()
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	if err := buildRoot(); err != nil {
		return fmt.Errorf("mounts: %w", err)
	}
	if cfg.Probe {
		return nil
	}
	// Signals from inside the namespace reach PID 1 only through handlers:
	// catch and drop them, like init (the shell gets default ones).
	signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	// The shell is not PID 1 itself: a board's shell must die of kill -9 $$.
	sh := exec.Command("/bin/sh", "-i")
	sh.Dir = sandboxHome
	sh.Env = cfg.Env
	sh.Stdin, sh.Stdout, sh.Stderr = os.Stdin, os.Stdout, os.Stderr
	sh.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if cfg.MN {
		sh.ExtraFiles = mnFiles(os.NewFile(mnFD, "multinode"))
	}
	if err := sh.Start(); err != nil {
		return fmt.Errorf("start shell: %w", err)
	}
	// Before anything is typed: what the shell starts inherits it.
	// (Refused only when this process runs nicer still: then so does the shell.)
	_ = unix.Setpriority(unix.PRIO_PROCESS, sh.Process.Pid, ShellNice)
	for _, f := range sh.ExtraFiles {
		if f != nil {
			_ = f.Close() // the shell has it
		}
	}
	_ = os.Stdin.Close()
	_ = os.Stdout.Close()
	_ = os.Stderr.Close()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			os.Exit(126)
		}
		if pid == sh.Process.Pid {
			if ws.Exited() {
				os.Exit(ws.ExitStatus())
			}
			os.Exit(128 + int(ws.Signal()))
		}
	}
}

func parseStage(arg string) (stageConfig, error) {
	var cfg stageConfig
	if err := json.Unmarshal([]byte(arg), &cfg); err != nil {
		return cfg, fmt.Errorf("stage config: %w", err)
	}
	return cfg, nil
}

// stageArgs is the argv of a re-executed stage.
func stageArgs(stage string, cfg stageConfig) ([]string, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return []string{sandboxArg0, stage, string(b)}, nil
}

// buildRoot makes the board's file system: a read-only tmpfs root with the
// host's system directories bound read-only, the board's root directory
// (the cwd at entry) as HOME, its tmp as /tmp, a fresh /proc, a minimal
// /dev with a private devpts. Nothing else of the host is reachable.
func buildRoot() error {
	home, err := unix.OpenTree(unix.AT_FDCWD, ".", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("board root: %w", err)
	}
	// The board's own processes may have made tmp a symlink: never follow it.
	tmp, err := unix.OpenTree(unix.AT_FDCWD, "tmp", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		return fmt.Errorf("board tmp: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(tmp, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("board tmp: not a directory")
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	const newRoot = "/tmp"
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		return fmt.Errorf("root tmpfs: %w", err)
	}
	if err := os.Mkdir(newRoot+"/oldroot", 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(newRoot, newRoot+"/oldroot"); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	for _, d := range systemDirs {
		fi, err := os.Lstat("/oldroot/" + d)
		switch {
		case err != nil:
			continue
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink("/oldroot/" + d)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, "/"+d); err != nil {
				return err
			}
		case fi.IsDir():
			if err := bindPath("/oldroot/"+d, "/"+d, true, true); err != nil {
				return err
			}
		}
	}
	if err := attach(home, sandboxHome, true, false); err != nil {
		return fmt.Errorf("HOME: %w", err)
	}
	if err := attach(tmp, "/tmp", true, false); err != nil {
		return fmt.Errorf("/tmp: %w", err)
	}
	if err := buildDev(); err != nil {
		return fmt.Errorf("/dev: %w", err)
	}
	for _, d := range []string{"/run", "/var/tmp"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=16m"); err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
	}
	// proc needs a fully visible proc in the namespace: mount it before the
	// old root goes.
	if err := os.Mkdir("/proc", 0o555); err != nil {
		return err
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("/proc: %w", err)
	}
	if err := unix.Unmount("/oldroot", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := os.Remove("/oldroot"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("read-only root: %w", err)
	}
	return unix.Chdir(sandboxHome)
}

func buildDev() error {
	if err := os.Mkdir("/dev", 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", "/dev", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return err
	}
	for _, d := range devices {
		if err := os.WriteFile("/dev/"+d, nil, 0o666); err != nil {
			return err
		}
		if err := bindPath("/oldroot/dev/"+d, "/dev/"+d, false, false); err != nil {
			return err
		}
	}
	if err := os.Mkdir("/dev/pts", 0o755); err != nil {
		return err
	}
	if err := unix.Mount("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fmt.Errorf("devpts: %w", err)
	}
	if err := os.Mkdir("/dev/shm", 0o1777); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=16m"); err != nil {
		return err
	}
	for link, target := range map[string]string{
		"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, "/dev/"+link); err != nil {
			return err
		}
	}
	return nil
}

// bindPath binds src (a directory when dir) at dst, recursively.
func bindPath(src, dst string, dir, readOnly bool) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	return attach(fd, dst, dir, readOnly)
}

// attach moves the detached tree fd to dst (created as a directory when
// dir), read-only (and nosuid, nodev) all the way down when readOnly.
func attach(fd int, dst string, dir, readOnly bool) error {
	defer unix.Close(fd)
	if dir {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID}
	if readOnly {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NODEV
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("%s: set attributes: %w", dst, err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("%s: %w", dst, err)
	}
	return nil
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
