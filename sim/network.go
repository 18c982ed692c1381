package sim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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
// (root = the sandbox uid) and a network namespace whose loopback is up.
type netns struct {
	key   string
	refs  int
	ready chan struct{} // closed once started (or failed)
	err   error
	cmd   *exec.Cmd
	stop  io.Closer // its stdin: EOF ends it
	done  chan struct{}
}

func (n *netns) pid() int { return n.cmd.Process.Pid }

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
		n = &netns{key: group, ready: make(chan struct{})}
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
	uid, gid := sandboxIDs()
	cmd := &exec.Cmd{Path: exePath, Args: []string{sandboxArg0, "net", strconv.Itoa(os.Getpid())}, Env: []string{}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	if os.Geteuid() == 0 {
		// Drop root's supplementary groups: they would still count on
		// the host's files.
		cmd.SysProcAttr.GidMappingsEnableSetgroups = true
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}}
	}
	if err := cmd.Start(); err != nil {
		return sandboxError(err)
	}
	n.cmd, n.stop, n.done = cmd, stdin, make(chan struct{})
	said := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		if line != "ok\n" {
			rest, _ := io.ReadAll(io.LimitReader(r, 4096))
			line += string(rest)
		}
		said <- line
		_, _ = io.Copy(io.Discard, r)
		_ = cmd.Wait()
		close(n.done)
	}()
	t := time.NewTimer(stageTimeout)
	defer t.Stop()
	select {
	case line := <-said:
		if line == "ok\n" {
			return nil
		}
		n.end()
		return sandboxError(errors.New(strings.TrimSpace(line)))
	case <-t.C:
		n.end()
		return sandboxError(errors.New("network namespace did not start in time"))
	}
}

// end stops the network's process and waits for it.
func (n *netns) end() {
	_ = n.stop.Close()
	t := time.NewTimer(stageTimeout)
	defer t.Stop()
	select {
	case <-n.done:
	case <-t.C:
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// CheckSandbox builds one sandbox (a private network, a shell stage and an
// init that stops once its mounts are made) and reports why it could not,
// naming the kernel setting that refused namespaces when one did. Once a
// check has passed, the process does not build one again (it costs two
// starts of this program and a chain of namespace tools: a quarter of a
// second or more under load, paid by every job run in the process): a
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
	exe, err := ownExe()
	if err != nil {
		return sandboxError(err)
	}
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
	null, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("sandbox check: %w", err)
	}
	defer null.Close()
	sb, err := newSandbox(n, exe, null, nil, dir, "check", nil, true)
	if err != nil {
		return sandboxError(err)
	}
	cmd := sb.cmd
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = stageTimeout
	if err := sb.start(); err != nil {
		return sandboxError(err)
	}
	t := time.AfterFunc(stageTimeout, func() { _ = cmd.Process.Kill() })
	defer t.Stop()
	if fd, err := sb.initPID(); err == nil {
		_ = unix.Close(fd)
	}
	if err := cmd.Wait(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 4096 {
			msg = msg[:4096]
		}
		return sandboxError(fmt.Errorf("%w: %s", err, msg))
	}
	return nil
}
