// Package sim simulates an embedded board: a pseudo-terminal console that
// shows a bootloader and kernel log, a login prompt and then a real
// /bin/sh running in a per-board sandbox (sandbox.go: its own user, mount,
// PID, UTS and IPC namespaces, a network shared with its group only, as
// an unprivileged uid). Faults (faults.go) make it misbehave like a board
// of a real lab, for tests of the harness.
package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
	"time"

	"github.com/troupe-lab/troupe/lab"
)

const (
	tokenVar       = "TROUPE_SIM_TOKEN"
	offTimeout     = 10 * time.Second
	shellReapLimit = 5 * time.Second
)

// ErrClosed is returned by operations on a closed Board.
var ErrClosed = errors.New("board closed")

// Options configures a simulated board.
type Options struct {
	Name   string       // board name, e.g. "sim-0" (default "sim")
	Dir    string       // sandbox directory (created if missing); the root is Dir/root
	Logger *slog.Logger // nil = discard
	// BootDelay is the time spent printing the boot log, spread over its
	// lines; zero (the default): the log is written at once, without
	// pauses (a paced log only made every job of a lab slower).
	BootDelay time.Duration
	Faults    Faults // initial fault settings (see SetFaults); zero = healthy
	// Bootloader selects the bootloader emulation: BootloaderNone ("", the
	// default: u-boot's banner, then straight to the kernel) or
	// BootloaderUBoot ("u-boot": an interactive u-boot console, see uboot.go).
	Bootloader string
	// Networks are the lab's group networks (JoinGroup); nil: the board
	// only ever has a private network.
	Networks *Networks
	// Unsandboxed runs the shell as this process's user in its namespaces
	// (the lab's sandbox = "none"): a test script can then reach
	// everything this process can.
	Unsandboxed bool
	// StandIn: the board stands in for another device type (the built-in
	// lab's boards): images it cannot boot (kernel images, disk images)
	// are taken and left unused, said in its log; tar images are still
	// unpacked into its root.
	StandIn bool
	// Limits bound a sandboxed board's processes and file sizes (zero:
	// the defaults).
	Limits Limits
	// KeepEcho: the console's shell echoes what is typed, as a real
	// board's does (troupe simboard, which stands in for one). Without
	// it, echo is off from the login on (see EchoOff).
	KeepEcho bool
}

// Board is a simulated board. Its methods are safe for concurrent use.
type Board struct {
	o    Options
	log  *slog.Logger
	root string
	ptm  *os.File   // harness side
	con  *faultConn // wraps ptm; what Console returns
	pts  *os.File   // kept open for the board's life, so ptm never sees EIO

	fmu    sync.Mutex
	faults Faults

	nmu   sync.Mutex
	group string // the network joined (JoinGroup); "": a private one
	net   *netns // nil until the first sandboxed shell or JoinGroup

	mu     sync.Mutex
	sess   *session // nil when off
	lieOn  bool     // PowerLie: State reports on, but there is no session
	closed bool
	nextMN *mnChannel // the side channel of the next power-on, if asked for
	// sessions counts the sessions opened (OpenSession): each one's
	// $TMPDIR is tmp/session-N.
	sessions int
	// released is closed once Close has powered the board off and left
	// its network: its sandbox directory is free then.
	released chan struct{}
}

// session is one power-on.
type session struct {
	token     string
	cancel    context.CancelFunc // power off
	runCtx    context.Context    // the boot/login/shell sequence; ends at power off or kernel panic
	runCancel context.CancelFunc
	done      chan struct{}
	hung      chan struct{} // closed once a mid-run kernel panic has been printed

	mu        sync.Mutex
	stopped   bool
	panicked  bool
	shellHung bool
	shells    map[int]bool // pids of the shells started during this power-on
	// sandboxes: the sandboxed shells started during this power-on.
	sandboxes map[*box]bool
	mn        *mnChannel // the MultiNode side channel of this power-on
}

func (s *session) shellsLocked() map[int]bool {
	m := make(map[int]bool, len(s.shells))
	for pid := range s.shells {
		m[pid] = true
	}
	return m
}

// New creates a powered-off board.
func New(o Options) (*Board, error) {
	if o.Name == "" {
		o.Name = "sim"
	}
	if o.Dir == "" {
		return nil, fmt.Errorf("new sim board %s: empty Dir", o.Name)
	}
	if o.BootDelay < 0 {
		o.BootDelay = 0
	}
	switch o.Bootloader {
	case BootloaderNone, BootloaderUBoot:
	default:
		return nil, fmt.Errorf("new sim board %s: unknown bootloader %q (want %q or %q)", o.Name, o.Bootloader, BootloaderNone, BootloaderUBoot)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("new sim board %s: %w", o.Name, err)
	}
	root := filepath.Join(dir, rootName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("new sim board %s: %w", o.Name, err)
	}
	// A job's board starts with an empty HOME and /tmp, whatever the
	// last job (or a harness killed during it) left there.
	if err := resetRoot(dir, o.Unsandboxed); err != nil {
		return nil, fmt.Errorf("new sim board %s: %w", o.Name, err)
	}
	ptm, pts, err := openPTY()
	if err != nil {
		return nil, fmt.Errorf("new sim board %s: %w", o.Name, err)
	}
	if err := setMode(pts, modeOff); err != nil {
		_ = ptm.Close()
		_ = pts.Close()
		return nil, fmt.Errorf("new sim board %s: %w", o.Name, err)
	}
	if o.Networks == nil {
		o.Networks = NewNetworks()
	}
	b := &Board{o: o, log: log.With("board", o.Name), root: root, ptm: ptm, con: newFaultConn(ptm), pts: pts, faults: o.Faults,
		released: make(chan struct{})}
	b.con.setFaults(o.Faults)
	return b, nil
}

// Released is closed once Close has powered the board off and ended its
// sandbox.
func (b *Board) Released() <-chan struct{} { return b.released }

// Console returns the harness side of the board's serial console. The same
// object is returned for the board's whole life and stays open across
// power cycles; closing it ends the console for good.
func (b *Board) Console() io.ReadWriteCloser { return b.con }

// tokenFile, in a board's Dir, holds the token of the power-on while on.
const tokenFile = ".power-on"

// PowerOffLeftover powers off a board whose harness died with it on: every
// process of its last power-on (found by the token in dir: unsandboxed
// boards leave one; a sandboxed board's processes died with its harness)
// is killed. Then
// the files of its last job (its root: HOME and /tmp) are removed, on or
// off.
func PowerOffLeftover(dir string) error {
	if err := powerOffLeftover(dir); err != nil {
		return err
	}
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := clearRoot(dir); err != nil {
		return fmt.Errorf("leftover board in %s: %w", dir, err)
	}
	return nil
}

func powerOffLeftover(dir string) error {
	tok, err := os.ReadFile(filepath.Join(dir, tokenFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("power off leftover board in %s: %w", dir, err)
	}
	if len(tok) == 0 {
		return os.Remove(filepath.Join(dir, tokenFile))
	}
	if err := killSession(string(tok), nil, time.Now().Add(offTimeout)); err != nil {
		return fmt.Errorf("power off leftover board in %s: %w", dir, err)
	}
	return os.Remove(filepath.Join(dir, tokenFile))
}

// Root returns the board's root directory.
func (b *Board) Root() string { return b.root }

// On powers the board on; the boot runs in the background. No-op if on.
func (b *Board) On(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("power on %s: %w", b.o.Name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("power on %s: %w", b.o.Name, ErrClosed)
	}
	f := b.getFaults()
	if f.PowerFail {
		return injected(fmt.Sprintf("power on %s: PDU did not answer (injected)", b.o.Name))
	}
	if b.sess != nil || b.lieOn {
		return nil
	}
	if f.PowerLie {
		b.lieOn = true
		b.log.Info("fault: power on lie")
		return nil
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok) // never fails
	if err := b.makeTmp(); err != nil {
		return fmt.Errorf("power on %s: %w", b.o.Name, err)
	}
	if err := b.pts.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("power on %s: %w", b.o.Name, err)
	}
	if err := flushInput(b.pts); err != nil {
		return fmt.Errorf("power on %s: %w", b.o.Name, err)
	}
	mn := b.nextMN
	b.nextMN = nil
	sctx, cancel := context.WithCancel(context.Background())
	rctx, rcancel := context.WithCancel(sctx)
	s := &session{
		token: hex.EncodeToString(tok), cancel: cancel, runCtx: rctx, runCancel: rcancel,
		done: make(chan struct{}), hung: make(chan struct{}), shells: map[int]bool{},
		sandboxes: map[*box]bool{}, mn: mn,
	}
	b.sess = s
	// Kept while on, so that a harness killed with the board on can power
	// it off when it starts again (PowerOffLeftover). A sandboxed board
	// needs none: its processes die with this one (its network's stage
	// dies with it, its inits with the stage), and a file made and removed
	// per power-on is a fraction of a millisecond of CPU on ext4, per board.
	if b.o.Unsandboxed {
		if err := os.WriteFile(filepath.Join(filepath.Dir(b.root), tokenFile), []byte(s.token), 0o600); err != nil {
			b.log.Warn("power token file", "err", err)
		}
	}
	b.log.Info("power on")
	go b.run(sctx, s)
	return nil
}

// Off powers the board off, killing the shell and everything it started.
// No-op if off.
func (b *Board) Off(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	if b.getFaults().PowerFail {
		return injected(fmt.Sprintf("power off %s: PDU did not answer (injected)", b.o.Name))
	}
	return b.offLocked(ctx)
}

// offLocked powers off; it also clears the mid-run faults.
func (b *Board) offLocked(ctx context.Context) error {
	b.lieOn = false
	b.con.reconnect()
	s := b.sess
	if s == nil {
		return nil
	}
	b.sess = nil
	if b.o.Unsandboxed {
		_ = os.Remove(filepath.Join(filepath.Dir(b.root), tokenFile))
	}
	deadline := time.Now().Add(offTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	s.mu.Lock()
	s.stopped = true // no new shell can start from now on
	s.mu.Unlock()
	s.cancel()

	var errs []error
	if err := b.killShells(s, deadline); err != nil {
		errs = append(errs, err)
	}
	if s.mn != nil {
		s.mn.close()
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		errs = append(errs, errors.New("boot goroutine did not stop"))
	}
	// EIO: the harness has closed its end of the console already, so there
	// is no line discipline left to set up for the next power-on.
	if err := setMode(b.pts, modeOff); err != nil && !errors.Is(err, syscall.EIO) {
		errs = append(errs, err)
	}
	b.log.Info("power off")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("power off %s: %w", b.o.Name, err)
	}
	return nil
}

// State reports whether the board is powered on.
func (b *Board) State(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("state %s: %w", b.o.Name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false, fmt.Errorf("state %s: %w", b.o.Name, ErrClosed)
	}
	return b.sess != nil || b.lieOn, nil
}

// Close powers the board off, removes its root (the job's files) and
// closes the console. Idempotent.
func (b *Board) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	defer close(b.released)
	if b.nextMN != nil {
		b.nextMN.close()
		b.nextMN = nil
	}
	err := b.offLocked(context.Background())
	b.leaveNetwork()
	// The job's files go with it (New empties the root again anyway).
	if cerr := clearRoot(filepath.Dir(b.root)); cerr != nil {
		err = errors.Join(err, cerr)
	}
	for _, c := range []io.Closer{b.con, b.pts} {
		if cerr := c.Close(); cerr != nil && !errors.Is(cerr, os.ErrClosed) {
			err = errors.Join(err, cerr)
		}
	}
	if err != nil {
		return fmt.Errorf("close %s: %w", b.o.Name, err)
	}
	return nil
}

// run is one power-on: boot log, then a getty-like login/shell loop. A
// mid-run kernel panic ends that loop; the board then hangs until power off.
func (b *Board) run(sctx context.Context, s *session) {
	defer close(s.done)
	stage, err := b.sequence(s)
	s.mu.Lock()
	panicked := s.panicked
	s.mu.Unlock()
	if panicked && sctx.Err() == nil {
		b.panicHang(sctx, s)
		return
	}
	if err != nil {
		b.logStop(stage, sctx, err)
		if sctx.Err() == nil && stage == "shell" {
			// What a board says when it cannot start a shell: on its
			// console, where the job's log keeps it.
			_ = setMode(b.pts, modeBoot)
			_, _ = b.pts.WriteString("troupe sim: no shell: " + err.Error() + "\r\n")
		}
	}
}

func (b *Board) sequence(s *session) (stage string, err error) {
	ctx := s.runCtx
	err = b.interruptible(ctx, func() error {
		if err := b.boot(ctx); err != nil {
			stage = "boot"
			return err
		}
		for ctx.Err() == nil {
			if err := b.login(ctx); err != nil {
				stage = "login"
				return err
			}
			if err := b.shell(ctx, s); err != nil {
				stage = "shell"
				return err
			}
		}
		return nil
	})
	return stage, err
}

// interruptible runs fn, interrupting its reads and writes on the slave
// once ctx is done.
func (b *Board) interruptible(ctx context.Context, fn func() error) error {
	if err := b.pts.SetDeadline(time.Time{}); err != nil {
		return err
	}
	// Wait for the callback if it started, so it cannot clobber the
	// deadline reset done by the next stage or power-on.
	cbDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = b.pts.SetDeadline(time.Unix(1, 0))
		close(cbDone)
	})
	defer func() {
		if !stop() {
			<-cbDone
		}
	}()
	return fn()
}

// panicHang prints a kernel panic and hangs until power off.
func (b *Board) panicHang(sctx context.Context, s *session) {
	err := b.interruptible(sctx, func() error {
		defer close(s.hung)
		if err := setMode(b.pts, modeBoot); err != nil { // no echo: the kernel is dead
			return err
		}
		if _, err := b.pts.WriteString(panicText); err != nil {
			return fmt.Errorf("write kernel panic: %w", err)
		}
		return nil
	})
	if err != nil {
		b.logStop("kernel panic", sctx, err)
	}
	<-sctx.Done()
}

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (b *Board) logStop(stage string, ctx context.Context, err error) {
	if ctx.Err() != nil {
		b.log.Debug("power-on sequence stopped", "stage", stage)
		return
	}
	b.log.Error("power-on sequence failed", "stage", stage, "err", err)
}

// defaultCmdline is the kernel command line when u-boot's bootargs is unset.
const defaultCmdline = "console=ttyS0,115200 root=/dev/mmcblk0p2 rw"

// bootLines is the whole boot log without a bootloader emulation.
func (b *Board) bootLines() []string {
	lines := append(b.ubootBanner(), "Hit any key to stop autoboot: 0")
	return append(lines, b.kernelLines(defaultCmdline)...)
}

// ubootBanner is what u-boot prints before its autoboot countdown.
func (b *Board) ubootBanner() []string {
	return []string{
		"",
		"U-Boot 2024.01-troupe-sim (Jan 08 2024 - 12:00:00 +0000)",
		"",
		"Model: troupe simulated board " + b.o.Name,
		"DRAM: 1 GiB",
		"MMC:   sim-mmc@0: 0",
		"Net:   eth0: sim-eth@0",
	}
}

// kernelLines is the boot log from the kernel's start to init.
func (b *Board) kernelLines(cmdline string) []string {
	return []string{
		"Starting kernel ...",
		"",
		"[    0.000000] Booting Linux on physical CPU 0x0",
		"[    0.000000] Linux version 6.1.0-troupe-sim (troupe@sim) (gcc 12.2.0) #1 SMP PREEMPT",
		"[    0.000000] Machine model: troupe simulated board " + b.o.Name,
		"[    0.000000] Kernel command line: " + cmdline,
		"[    0.123456] Serial: 8250/16550 driver, 4 ports, IRQ sharing disabled",
		"[    0.456789] mmc0: new high speed SDHC card at address 0001",
		"[    0.789012] EXT4-fs (mmcblk0p2): mounted filesystem with ordered data mode",
		"[    0.912345] Run /sbin/init as init process",
	}
}

// Lines of the boot log at which the boot faults cut in.
const (
	kernelStartLine = "Starting kernel ..."
	mmcLine         = "[    0.456789] mmc0: new high speed SDHC card at address 0001"
)

func panicAtBootLines() []string {
	return []string{
		`[    0.781234] VFS: Cannot open root device "mmcblk0p2" or unknown-block(179,2): error -6`,
		`[    0.782345] Please append a correct "root=" boot option; here are the available partitions:`,
		"[    0.791234] Kernel panic - not syncing: VFS: Unable to mount root fs",
	}
}

// cutAfter returns lines up to and including the first one equal to l.
func cutAfter(lines []string, l string) []string {
	for i, x := range lines {
		if x == l {
			return lines[:i+1]
		}
	}
	return lines
}

// boot prints the boot log; it returns when the login prompt is due, or
// hangs until power off when a boot fault says so.
func (b *Board) boot(ctx context.Context) error {
	if err := setMode(b.pts, modeBoot); err != nil {
		return err
	}
	f := b.getFaults()
	lines := b.bootLines()
	step := b.o.BootDelay / time.Duration(len(lines))
	nfsFailed := false
	if b.o.Bootloader == BootloaderUBoot {
		// u-boot's console until one of its boot commands succeeds; the
		// kernel log follows.
		cmdline, err := b.ubootRun(ctx, step)
		if err != nil {
			return err
		}
		if err := setMode(b.pts, modeBoot); err != nil {
			return err
		}
		lines = b.kernelLines(cmdline)
		if server, path, ok := nfsRoot(cmdline); ok {
			err := b.mountNFSRoot(ctx, server, path)
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			if err != nil {
				b.log.Info("nfs root failed", "server", server, "path", path, "err", err)
			}
			beforeRoot := cutAfter(lines, mmcLine)
			lines = append(slices.Clone(beforeRoot[:len(beforeRoot)-1]), nfsRootLines(server, path, err)...)
			if err == nil {
				lines = append(lines, "[    0.912345] Run /sbin/init as init process")
			}
			nfsFailed = err != nil // the kernel panics without its root
		}
	}
	hang := true
	switch {
	case nfsFailed:
	case f.BootHang:
		lines = cutAfter(lines, kernelStartLine)
	case f.PanicAtBoot:
		lines = append(cutAfter(lines, mmcLine), panicAtBootLines()...)
	case f.NoLoginPrompt:
	default:
		hang = false
	}
	if step == 0 {
		if _, err := b.pts.WriteString(strings.Join(lines, "\r\n") + "\r\n"); err != nil {
			return fmt.Errorf("write boot log: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	} else if err := b.paceLines(ctx, lines, step); err != nil {
		return err
	}
	if hang {
		b.log.Info("fault: boot hangs")
		<-ctx.Done()
		return ctx.Err()
	}
	if f.SlowBoot > 0 {
		return sleepCtx(ctx, f.SlowBoot)
	}
	return nil
}

// paceLines writes lines to the console, one every step.
func (b *Board) paceLines(ctx context.Context, lines []string, step time.Duration) error {
	t := time.NewTimer(step)
	defer t.Stop()
	for _, l := range lines {
		if _, err := b.pts.WriteString(l + "\r\n"); err != nil {
			return fmt.Errorf("write boot log: %w", err)
		}
		t.Reset(step)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// login prints the login prompt and reads one line (any user is accepted).
func (b *Board) login(ctx context.Context) error {
	if err := setMode(b.pts, modeShell); err != nil {
		return err
	}
	// ONLCR turns "\n" into "\r\n".
	if _, err := b.pts.WriteString("\n" + b.o.Name + " login: "); err != nil {
		return fmt.Errorf("write login prompt: %w", err)
	}
	buf := make([]byte, 256)
	for {
		n, err := b.pts.Read(buf) // canonical mode: at most one line per read
		if err != nil {
			return fmt.Errorf("read login name: %w", err)
		}
		if n > 0 && buf[n-1] == '\n' {
			b.log.Debug("login", "user", string(buf[:n-1]))
			if !b.o.KeepEcho {
				if err := setMode(b.pts, modeShellQuiet); err != nil {
					return err
				}
			}
			return ctx.Err()
		}
	}
}

// EchoOff reports that the console's shell comes up with echo off (unless
// Options.KeepEcho): troupe owns the terminal and turns echo off after the
// login, as a getty or an agent could, so what the harness types is never
// echoed back and its test shell needs no "stty -echo" (a program start
// per boot). The login name is echoed; sessions (OpenSession) echo, as an
// ssh login's terminal does.
func (b *Board) EchoOff() bool { return !b.o.KeepEcho }

func (b *Board) shellEnv(token string, mn bool) []string {
	env := []string{
		"HOME=" + b.root,
		"TMPDIR=" + filepath.Join(b.root, "tmp"),
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"PS1=root@" + b.o.Name + ":~# ",
		"TERM=dumb",
		"USER=root",
		"SHELL=/bin/sh",
		"LANG=C.UTF-8",
		"LAVA_MULTI_NODE_CACHE=" + filepath.Join(b.root, "tmp", "lava_multi_node_cache.txt"),
		tokenVar + "=" + token,
	}
	if mn {
		env = append(env, mnEnv)
	}
	return env
}

// shell runs one interactive shell on the console until it exits (nil) or
// the board is powered off (error).
func (b *Board) shell(ctx context.Context, s *session) error {
	if err := b.makeTmp(); err != nil {
		return fmt.Errorf("create TMPDIR: %w", err)
	}
	tty, err := os.OpenFile(b.pts.Name(), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open console tty: %w", err)
	}
	sh, err := b.startShell(s, tty, s.mn.boardEnd(), func(sandboxed bool) []string {
		if sandboxed {
			return b.sandboxEnv(s.token, s.mn != nil)
		}
		return b.shellEnv(s.token, s.mn != nil)
	})
	_ = tty.Close()
	if errors.Is(err, errShellHung) { // no shell answers any more
		<-ctx.Done()
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	b.log.Debug("shell started", "pid", sh.pid, "sandboxed", sh.bx != nil)
	select {
	case <-sh.done:
		b.log.Debug("shell exited", "err", sh.err)
		return nil
	case <-ctx.Done():
	}
	// Powered off: Off kills everything; make sure the shell is reaped.
	sh.kill()
	t := time.NewTimer(shellReapLimit)
	defer t.Stop()
	select {
	case <-sh.done:
	case <-t.C:
		sh.kill()
		b.log.Warn("shell not reaped", "pid", sh.pid)
	}
	return ctx.Err()
}

// ShellNice is the nice value of a board's shells and all they start: a
// lab of busy simulated boards yields the CPU to the harness (its clocks,
// heartbeats and console readers) rather than starving it.
const ShellNice = 10

// SessionNice is the nice value of a board's session as a scheduling
// group. Where the kernel makes every session a group of its own
// (autogroups, CONFIG_SCHED_AUTOGROUP, on by default in most
// distributions), a process's nice counts only inside its session, and
// every board's session weighed as much as troupe's whole process: with
// a hundred boards running, troupe got a hundredth of the CPU (a
// barrier's release to its last members took seconds in a 1000-node job).
// At 10 a board's session weighs 110 against troupe's 1024 (at 19, 15:
// boards crawled behind everything else in troupe's session, the other
// test binaries of a `make test` included).
const SessionNice = 10

// weighSession sets the nice value of the scheduling group (autogroup) of
// the session led by pid to SessionNice. Best effort: without autogroups
// there is nothing to set, and without CAP_SYS_ADMIN the kernel takes one
// such change per 100 ms on the whole host (the others fail, EAGAIN).
func weighSession(pid int) {
	f, err := os.OpenFile("/proc/"+strconv.Itoa(pid)+"/autogroup", os.O_WRONLY, 0)
	if err != nil {
		return
	}
	_, _ = f.WriteString(strconv.Itoa(SessionNice))
	_ = f.Close()
}

// errShellHung: the board's shells hang (a fault): none starts.
var errShellHung = errors.New("shell hung")

// shellProc is a started shell: in its sandbox (bx), or a child of ours
// (cmd) on an unsandboxed board.
type shellProc struct {
	pid  int // the sandbox's init, or the shell
	cmd  *exec.Cmd
	bx   *box
	done chan struct{} // closed once the shell (or its sandbox) has ended
	err  error         // the unsandboxed shell's exit, once done
}

func newShellProc(pid int, cmd *exec.Cmd, bx *box) *shellProc {
	p := &shellProc{pid: pid, cmd: cmd, bx: bx}
	if bx != nil {
		p.done = bx.exited // the box watches its init already
		return p
	}
	p.done = make(chan struct{})
	go func() {
		awaitExit(cmd.Process)
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

// kill ends the shell: a sandbox with its PID namespace.
func (p *shellProc) kill() {
	if p.bx != nil {
		p.bx.kill()
		return
	}
	_ = p.cmd.Process.Kill()
}

// startShell starts one interactive shell of power-on s on tty (the
// console's, or a session's), in the board's sandbox unless it has none,
// with the environment env gives for it and mn (if not nil) as its
// MultiNode side channel. Power off kills it. The caller closes tty.
func (b *Board) startShell(s *session, tty, mn *os.File, env func(sandboxed bool) []string) (*shellProc, error) {
	refused := func() error {
		if s.stopped {
			return context.Canceled
		}
		if s.shellHung {
			return errShellHung
		}
		return nil
	}
	if b.o.Unsandboxed {
		cmd := exec.Command("/bin/sh", "-i")
		cmd.Dir = b.root
		cmd.Env = env(false)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		if mn != nil {
			cmd.ExtraFiles = mnFiles(mn)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		s.mu.Lock()
		defer s.mu.Unlock()
		if err := refused(); err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start shell: %w", err)
		}
		// Before anything is typed: what the shell starts inherits it.
		// (Refused only when this process runs nicer still: then so
		// does the shell.)
		_ = unix.Setpriority(unix.PRIO_PROCESS, cmd.Process.Pid, ShellNice)
		weighSession(cmd.Process.Pid)
		s.shells[cmd.Process.Pid] = true
		return newShellProc(cmd.Process.Pid, cmd, nil), nil
	}
	// The side channel is closed by a power off (after s.stopped is set):
	// a copy taken while on stays valid for the request below.
	s.mu.Lock()
	err := refused()
	if err == nil && mn != nil {
		mn, err = dupFile(mn)
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if mn != nil {
		defer mn.Close()
	}
	n, err := b.network()
	if err != nil {
		return nil, err
	}
	// Asked for outside s.mu (a round trip to the network's stage): a
	// power off meanwhile is seen below, and the sandbox killed then.
	bx, err := n.spawn(shellSpec{tty: tty, mn: mn, root: b.root, hostname: b.o.Name, env: env(true), limits: b.o.Limits})
	if err != nil {
		return nil, fmt.Errorf("start shell: %w", err)
	}
	s.mu.Lock()
	if err := refused(); err != nil {
		s.mu.Unlock()
		bx.kill()
		t := time.NewTimer(shellReapLimit)
		defer t.Stop()
		select {
		case <-bx.exited:
		case <-t.C:
		}
		return nil, err
	}
	s.shells[bx.pid] = true
	s.sandboxes[bx] = true
	s.mu.Unlock()
	return newShellProc(bx.pid, nil, bx), nil
}

// dupFile returns a copy of f's descriptor (close-on-exec).
func dupFile(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("start shell: %w", err)
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		derr = err
	}
	if derr != nil {
		return nil, fmt.Errorf("start shell: side channel: %w", derr)
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}

// makeTmp makes sure the board's tmp is a directory of its own, whatever
// the board's processes did to its root (a symlink there must never make
// this process create, or a sandbox bind, something elsewhere).
func (b *Board) makeTmp() error {
	r, err := os.OpenRoot(b.root)
	if err != nil {
		return err
	}
	defer r.Close()
	fi, err := r.Lstat("tmp")
	if err == nil && !fi.IsDir() {
		if err := r.Remove("tmp"); err != nil {
			return err
		}
		err = fs.ErrNotExist
	}
	if errors.Is(err, fs.ErrNotExist) {
		if err := r.Mkdir("tmp", 0o777); err != nil {
			return err
		}
		if err := r.Chmod("tmp", 0o777|fs.ModeSticky); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if b.o.Unsandboxed {
		return nil
	}
	return ownBySandbox(r, "tmp")
}

// sandboxEnv is the shell's environment inside its sandbox.
func (b *Board) sandboxEnv(token string, mn bool) []string {
	env := b.shellEnv(token, mn)
	for i, kv := range env {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "HOME":
			env[i] = "HOME=" + sandboxHome
		case "TMPDIR":
			env[i] = "TMPDIR=/tmp"
		case "LAVA_MULTI_NODE_CACHE":
			env[i] = "LAVA_MULTI_NODE_CACHE=/tmp/lava_multi_node_cache.txt"
		}
	}
	return env
}

// JoinGroup puts the board on its group's private network (shared by the
// group's sandboxes on this host, reaching nothing else). The nodes keep
// the addresses the lab gave them: all of 127.0.0.0/8 is the network's own
// loopback. The group's sim nodes on this host that the lab gave none (a
// worker's boards) get one there, 127.1.x.y by their place in the group.
func (b *Board) JoinGroup(g lab.Group) (map[string]string, error) {
	if b.o.Unsandboxed {
		return nil, nil
	}
	n, err := b.o.Networks.join(g.ID)
	if err != nil {
		return nil, fmt.Errorf("network of %s: %w", b.o.Name, err)
	}
	b.nmu.Lock()
	old := b.net
	b.net, b.group = n, g.ID
	b.nmu.Unlock()
	if old != nil {
		b.o.Networks.leave(old)
	}
	n.addrOnce.Do(func() { n.addrs = missingAddrs(g) })
	return n.addrs, nil
}

// missingAddrs gives the group's sim nodes on this host that have no
// address one: 127.1.x.y by their place in the group.
func missingAddrs(g lab.Group) map[string]string {
	var addrs map[string]string
	for i, node := range g.Nodes {
		bd, here := g.Boards[node.Name]
		if !here || bd.Backend != lab.Sim || g.Addresses[node.Name] != "" {
			continue
		}
		if addrs == nil {
			addrs = map[string]string{}
		}
		addrs[node.Name] = fmt.Sprintf("127.1.%d.%d", i/250, i%250+1)
	}
	return addrs
}

// network returns the board's network, making a private one if it has
// joined none.
func (b *Board) network() (*netns, error) {
	b.nmu.Lock()
	n := b.net
	b.nmu.Unlock()
	if n != nil {
		return n, nil
	}
	n, err := b.o.Networks.join("")
	if err != nil {
		return nil, err
	}
	b.nmu.Lock()
	if b.net == nil {
		b.net = n
		b.nmu.Unlock()
		return n, nil
	}
	other := b.net
	b.nmu.Unlock()
	b.o.Networks.leave(n)
	return other, nil
}

// leaveNetwork drops the board's network (at Close).
func (b *Board) leaveNetwork() {
	b.nmu.Lock()
	n := b.net
	b.net = nil
	b.nmu.Unlock()
	if n != nil {
		b.o.Networks.leave(n)
	}
}

// killShells ends every process of one power-on: sandboxed, by ending each
// shell's sandbox (its PID namespace); unsandboxed, by hunting them down
// (killSession).
func (b *Board) killShells(s *session, deadline time.Time) error {
	s.mu.Lock()
	shells := s.shellsLocked()
	boxes := make([]*box, 0, len(s.sandboxes))
	for bx := range s.sandboxes {
		boxes = append(boxes, bx)
	}
	s.mu.Unlock()
	if b.o.Unsandboxed {
		return killSession(s.token, shells, deadline)
	}
	for _, bx := range boxes {
		bx.kill()
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	var stuck []int
	expired := false
	for _, bx := range boxes {
		if !expired {
			select {
			case <-bx.exited:
				continue
			case <-t.C:
				expired = true
			}
		}
		select {
		case <-bx.exited:
		default:
			bx.kill()
			stuck = append(stuck, bx.pid)
		}
	}
	if len(stuck) > 0 {
		return fmt.Errorf("sandboxes %v did not end in time (killed)", stuck)
	}
	return nil
}
