package sim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Networks are the private networks of the sim boards of one lab: the
// boards of one group share a network namespace (its own loopback, nothing
// else: no route to the host's services, another group or the outside); a
// board outside any group gets one of its own. A network is made by the
// first board that needs it and ends with the last one that leaves.
type Networks struct {
	mu   sync.Mutex
	nets map[string]*netns
	seq  int // names the private networks
}

// NewNetworks returns an empty set of networks.
func NewNetworks() *Networks { return &Networks{nets: map[string]*netns{}} }

// netns is one network: a stage "net" process holding a user namespace
// (root = the sandbox uid) and a network namespace whose loopback is up,
// which makes the network's sandboxes (stage.c).
type netns struct {
	owner *Networks
	key   string
	refs  int           // under owner.mu: joins, and the sandboxes alive in it
	ready chan struct{} // closed once started (or failed)
	err   error
	cmd   *exec.Cmd
	ctl   *os.File      // the stage's control socket (ours): EOF ends it
	slots chan struct{} // requests on ctl not answered yet (bounded: sends never block)
	// freed is when a request last left slots (unix nanoseconds);
	// patience, how long a request waits for a slot while none does.
	freed    atomic.Int64
	patience time.Duration
	mu       sync.Mutex
	last     string // what the stage said after "ok", once it has ended
	done     chan struct{}
	// addrs are the addresses JoinGroup gives on this network, made by
	// the group's first board (the same for all: read only).
	addrOnce sync.Once
	addrs    map[string]string
}

// maxSpawning bounds the requests waiting in a network stage's control
// socket: far below what its buffer holds, so that a send never blocks.
const maxSpawning = 64

// join returns the network of group ("" = a private one), making it if
// needed. Every join is paired with a leave.
func (ns *Networks) join(group string) (*netns, error) {
	ns.mu.Lock()
	if group == "" {
		ns.seq++
		group = fmt.Sprintf("\x00private-%d", ns.seq)
	}
	n := ns.nets[group]
	starter := n == nil
	if starter {
		n = &netns{owner: ns, key: group, ready: make(chan struct{}), slots: make(chan struct{}, maxSpawning), patience: stageTimeout}
		n.freed.Store(time.Now().UnixNano())
		ns.nets[group] = n
	}
	n.refs++
	ns.mu.Unlock()
	if starter {
		n.err = n.start()
		close(n.ready)
	}
	<-n.ready
	if n.err != nil {
		ns.leave(n)
		return nil, n.err
	}
	return n, nil
}

// leave drops a reference to n; the last one ends the network.
func (ns *Networks) leave(n *netns) {
	ns.mu.Lock()
	n.refs--
	last := n.refs == 0
	if last && ns.nets[n.key] == n {
		delete(ns.nets, n.key)
	}
	ns.mu.Unlock()
	if last && n.err == nil {
		n.end()
	}
}

// hold adds a reference to n (a sandbox made in it), dropped by leave.
func (ns *Networks) hold(n *netns) {
	ns.mu.Lock()
	n.refs++
	ns.mu.Unlock()
}

// exe is this program's executable, opened once for all stages.
var exe struct {
	once sync.Once
	f    *os.File
	err  error
}

func ownExe() (*os.File, error) {
	exe.once.Do(func() { exe.f, exe.err = openExe() })
	return exe.f, exe.err
}

func (n *netns) start() error {
	f, err := ownExe()
	if err != nil {
		return sandboxError(err)
	}
	cmd := &exec.Cmd{Path: exePath, Args: []string{sandboxArg0, "net", strconv.Itoa(os.Getpid())}, Env: []string{}}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network control socket: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		_ = unix.Close(fds[0])
		_ = unix.Close(fds[1])
		return fmt.Errorf("network control socket: %w", err)
	}
	ctl := os.NewFile(uintptr(fds[0]), "network control")
	theirs := os.NewFile(uintptr(fds[1]), "network control")
	defer theirs.Close()
	cmd.Stdin = theirs
	out, err := cmd.StdoutPipe()
	if err != nil {
		_ = ctl.Close()
		return err
	}
	cmd.Stderr = cmd.Stdout
	cmd.ExtraFiles = []*os.File{f}
	// No namespaces at the start: Go would fork this whole process for
	// them (clone without CLONE_VM, for the id maps it writes from
	// here), its page tables copied and every page write-protected: a
	// harness with a big heap paid ~10 ms per network, and then a page
	// fault for each page it wrote (tens of ms more). The stage unshares
	// them itself, and this process writes its id maps (mapIDs).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = ctl.Close()
		return sandboxError(err)
	}
	n.cmd, n.ctl, n.done = cmd, ctl, make(chan struct{})
	said := make(chan string, 2)
	go func() {
		r := bufio.NewReader(out)
		for _, want := range []string{stageUnshared, stageOK} {
			line, _ := r.ReadString('\n')
			if line != want {
				rest, _ := io.ReadAll(io.LimitReader(r, 4096))
				line += string(rest)
			}
			said <- line
			if line != want {
				break
			}
		}
		// What the stage says later (why it ended, if it did) is kept
		// for the requests it no longer answers, bounded.
		rest, _ := io.ReadAll(io.LimitReader(r, 4096))
		_, _ = io.Copy(io.Discard, r)
		werr := cmd.Wait()
		n.mu.Lock()
		n.last = strings.TrimSpace(string(rest))
		if werr != nil && n.last == "" {
			n.last = werr.Error()
		}
		n.mu.Unlock()
		close(n.done)
	}()
	t := time.NewTimer(stageTimeout)
	defer t.Stop()
	hear := func(want string) error {
		select {
		case line := <-said:
			if line == want {
				return nil
			}
			return errors.New(strings.TrimSpace(line))
		case <-t.C:
			return errors.New("network namespace did not start in time")
		}
	}
	err = hear(stageUnshared)
	if err == nil {
		err = mapIDs(cmd.Process.Pid)
	}
	if err == nil {
		if _, werr := ctl.Write([]byte(stageMapped)); werr != nil {
			err = fmt.Errorf("network control socket: %w", werr)
		}
	}
	if err == nil {
		err = hear(stageOK)
	}
	if err != nil {
		n.end()
		return sandboxError(err)
	}
	return nil
}

// What a network's stage and troupe say while it starts (stage.c, net):
// the stage has unshared its user and network namespaces; troupe has
// written its id maps; the stage is ready for requests.
const (
	stageUnshared = "unshared\n"
	stageMapped   = "mapped"
	stageOK       = "ok\n"
)

// mapIDs writes the id maps of pid, a stage in a user namespace of its
// own: its root is the sandbox's ids on the host (sandboxIDs). Not root,
// this process may map only its own ids, and only with setgroups denied;
// root keeps setgroups, for the stage to drop root's supplementary groups
// (they would still count on the host's files).
func mapIDs(pid int) error {
	uid, gid := sandboxIDs()
	dir := "/proc/" + strconv.Itoa(pid) + "/"
	write := func(name, text string) error {
		if err := os.WriteFile(dir+name, []byte(text), 0); err != nil {
			return fmt.Errorf("sandbox id maps: %w", err)
		}
		return nil
	}
	if os.Geteuid() != 0 {
		if err := write("setgroups", "deny"); err != nil {
			return err
		}
	}
	if err := write("uid_map", fmt.Sprintf("0 %d 1\n", uid)); err != nil {
		return err
	}
	return write("gid_map", fmt.Sprintf("0 %d 1\n", gid))
}

// awaitSlot takes a place among the requests on the control socket. It
// waits as long as the stage answers: a thousand boards powered on at
// once queue for it, the last ones for seconds (at ~10 ms a sandbox on a
// busy host, more than stageTimeout: boards failed to boot with a stage
// that was working). Only a stage that answered nothing for patience is
// busy.
func (n *netns) awaitSlot() error {
	t := time.NewTimer(n.patience)
	defer t.Stop()
	for {
		select {
		case n.slots <- struct{}{}:
			return nil
		case <-t.C:
			idle := time.Since(time.Unix(0, n.freed.Load()))
			if idle >= n.patience {
				return fmt.Errorf("sandbox: the network's stage is busy: no request answered for %s", idle.Round(time.Millisecond))
			}
			t.Reset(n.patience - idle)
		}
	}
}

// freeSlot gives back a place awaitSlot took, once the request has its
// answer (or none will come).
func (n *netns) freeSlot() {
	n.freed.Store(time.Now().UnixNano())
	<-n.slots
}

// end stops the network's process and waits for it.
func (n *netns) end() {
	_ = n.ctl.Close()
	t := time.NewTimer(stageTimeout)
	defer t.Stop()
	select {
	case <-n.done:
	case <-t.C:
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// spawn asks the network's stage for a sandboxed shell (stage.c: a
// board's init cloned into its namespaces) and returns its box, which
// holds the network until the sandbox is gone.
func (n *netns) spawn(sp shellSpec) (*box, error) {
	if len(sp.hostname) == 0 || len(sp.hostname) > maxHostname || strings.ContainsAny(sp.hostname, " \t\n\x00") {
		return nil, fmt.Errorf("sandbox: hostname %q: want 1 to %d characters, no blanks", sp.hostname, maxHostname)
	}
	envFile, err := shellEnvFile(sp.env)
	if err != nil {
		return nil, err
	}
	defer envFile.Close()
	root, err := unix.Open(sp.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: board root: %w", err)
	}
	defer unix.Close(root)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: reply socket: %w", err)
	}
	reply := os.NewFile(uintptr(fds[0]), "sandbox reply")
	defer reply.Close()
	theirs := fds[1]
	defer func() {
		if theirs >= 0 {
			_ = unix.Close(theirs)
		}
	}()

	if err := n.awaitSlot(); err != nil {
		return nil, err
	}
	defer n.freeSlot()
	// Fd puts the descriptors in blocking mode, as the shell wants them
	// (the mode is shared with its copies).
	rights := []int{theirs, int(sp.tty.Fd()), root, int(envFile.Fd())}
	mn := 0
	if sp.mn != nil {
		rights, mn = append(rights, int(sp.mn.Fd())), 1
	}
	probe := 0
	if sp.probe {
		probe = 1
	}
	lim := sp.limits.withDefaults()
	req := fmt.Sprintf("%s %d %d %d %d %d", sp.hostname, ShellNice, probe, mn, lim.Processes, lim.FileSize)
	rc, err := n.ctl.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.Sendmsg(int(fd), []byte(req), unix.UnixRights(rights...), nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
	}); err != nil {
		serr = err
	}
	runtime.KeepAlive(sp.tty)
	runtime.KeepAlive(sp.mn)
	runtime.KeepAlive(envFile)
	if serr != nil {
		select {
		case <-n.done:
			return nil, fmt.Errorf("sandbox: %s", n.ended())
		default:
		}
		return nil, fmt.Errorf("sandbox: ask the network's stage: %w", serr)
	}
	_ = unix.Close(theirs)
	theirs = -1

	buf := make([]byte, 512)
	oob := make([]byte, unix.CmsgSpace(4))
	var nr, noob int
	if err := reply.SetReadDeadline(time.Now().Add(stageTimeout)); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	rr, err := reply.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	var rerr error
	if err := rr.Read(func(fd uintptr) bool {
		nr, noob, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN
	}); err != nil {
		return nil, fmt.Errorf("sandbox: no answer from the network's stage: %w", err)
	}
	if rerr != nil {
		return nil, fmt.Errorf("sandbox: no answer from the network's stage: %w", rerr)
	}
	pidfd := -1
	if msgs, err := unix.ParseSocketControlMessage(oob[:noob]); err == nil {
		for _, m := range msgs {
			if got, err := unix.ParseUnixRights(&m); err == nil {
				for _, fd := range got {
					if pidfd < 0 {
						pidfd = fd
					} else {
						_ = unix.Close(fd)
					}
				}
			}
		}
	}
	text := string(buf[:nr])
	pid, perr := strconv.Atoi(strings.TrimPrefix(text, "ok "))
	if !strings.HasPrefix(text, "ok ") || perr != nil || pidfd < 0 {
		if pidfd >= 0 {
			_ = unix.Close(pidfd)
		}
		if nr == 0 {
			text = n.ended()
		}
		return nil, fmt.Errorf("sandbox: %s", strings.TrimPrefix(text, "error "))
	}
	if err := unix.SetNonblock(pidfd, true); err != nil {
		_ = unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		_ = unix.Close(pidfd)
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	weighSession(pid)
	n.owner.hold(n)
	return newBox(pid, os.NewFile(uintptr(pidfd), "sandbox init"), func() { n.owner.leave(n) }), nil
}

// ended says that the network's stage has ended, and what it said then.
func (n *netns) ended() string {
	msg := "the network's stage has ended"
	select {
	case <-n.done:
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.last != "" {
			msg += ": " + n.last
		}
	default:
	}
	return msg
}

// CheckSandbox builds one sandbox (a private network and an init that
// stops once its mounts are made) and reports why it could not, naming the
// kernel setting that refused namespaces when one did. Once a check has
// passed, the process does not build one again (a start of this program
// and two sets of namespaces, paid by every job run in the process): a
// later change of the kernel's settings shows as the boards' sandbox
// errors, never as a board without a sandbox. A failed check is redone.
func CheckSandbox() error {
	if sandboxChecked.Load() {
		return nil
	}
	if err := checkSandbox(); err != nil {
		return err
	}
	sandboxChecked.Store(true)
	return nil
}

// sandboxChecked: a sandbox check passed in this process.
var sandboxChecked atomic.Bool

// sandboxChecks counts the sandboxes built by checks (for tests).
var sandboxChecks atomic.Int64

func checkSandbox() error {
	sandboxChecks.Add(1)
	ns := NewNetworks()
	n, err := ns.join("")
	if err != nil {
		return err
	}
	defer ns.leave(n)
	dir, err := os.MkdirTemp("", "troupe-sandbox-check-")
	if err != nil {
		return fmt.Errorf("sandbox check: %w", err)
	}
	defer os.RemoveAll(dir)
	for _, d := range []string{dir, filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("sandbox check: %w", err)
		}
		if err := ownDirBySandbox(d); err != nil {
			return fmt.Errorf("sandbox check: %w", err)
		}
	}
	// The probe's console is a pipe: "ok" once its mounts are made, or
	// why not.
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox check: %w", err)
	}
	defer r.Close()
	bx, err := n.spawn(shellSpec{tty: w, root: dir, hostname: "check", probe: true})
	_ = w.Close()
	if err != nil {
		return sandboxError(err)
	}
	defer func() {
		bx.kill()
		<-bx.exited // SIGKILLed: it goes at once
	}()
	_ = r.SetReadDeadline(time.Now().Add(stageTimeout))
	out, err := io.ReadAll(io.LimitReader(r, 4096))
	if msg := strings.TrimSpace(string(out)); msg != "ok" {
		if msg == "" && err != nil {
			msg = err.Error()
		}
		return sandboxError(errors.New(msg))
	}
	return nil
}
