// Package qemu is the backend of QEMU boards: power on starts a
// qemu-system process (TCG) booting a real kernel, power off kills and
// reaps it, the console is the guest's serial port on QEMU's stdio, and
// the boards of one group share a private network (see Networks). They go
// through the same console, boot and test-shell code as every other board.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/troupe-lab/troupe/internal/sockpair"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
)

// Options are what a QEMU board needs of its run.
type Options struct {
	// Networks are the group networks of the run; nil: the board has no
	// network device.
	Networks *Networks
	// CacheDir is where the default images are built ("": the user's cache
	// directory).
	CacheDir string
	// Dir is the board's own directory, where it notes its QEMU process
	// while on, for PowerOffLeftover; "": not noted.
	Dir    string
	Logger *slog.Logger // nil: discard
}

// Board is one QEMU board.
type Board struct {
	name   string
	cfg    lab.Qemu
	opts   Options
	logger *slog.Logger
	con    *serial

	mu     sync.Mutex
	images *jobs.Images // deployed; nil: the default images
	job    jobQemu      // what the job's context asks of the boots
	vm     *vm          // the running QEMU process; nil: off
	port   *port        // on the group's network; nil: none
	host   string       // guest hostname: the node
	addr   string       // guest address with prefix ("10.3.0.1/16"); "": none
	mac    string
	nextMN *mnChannel // the MultiNode side channel of the next power-on, if asked for
	// tmpFiles go in the default images' /tmp (BootWithTmpFiles).
	tmpFiles map[string][]byte
	closed   bool
}

// MultiNodePort is the name of the virtio-serial port that carries a
// board's MultiNode side channel in the guest (/sys/class/virtio-ports/
// vportNpM/name): the test shell's Init opens its /dev/vportNpM as the
// helpers' descriptor. A guest without virtio_console has no such port,
// and its helpers use the console.
const MultiNodePort = "troupe.mn"

// mnChannel is the side channel of one power-on: troupe's end, and QEMU's
// (a connected socket: -chardev socket,fd=N).
type mnChannel struct {
	harness io.Closer
	qemu    *os.File
}

func (c *mnChannel) close() {
	_ = c.harness.Close()
	if c.qemu != nil {
		_ = c.qemu.Close()
	}
}

// vm is one QEMU process.
type vm struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process is reaped
	err  error         // its exit, once done
	mn   *mnChannel    // its MultiNode side channel; nil: none
}

// Open makes the board b (backend "qemu"); it is off.
func Open(b lab.Board, opts Options) (*Board, error) {
	if b.Qemu == nil {
		return nil, fmt.Errorf("qemu %s: not a QEMU board (backend %q)", b.Name, b.Backend)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Board{name: b.Name, cfg: *b.Qemu, opts: opts, logger: opts.Logger.With("board", b.Name), con: newSerial(), host: b.Name}, nil
}

// Console is the guest's serial port.
func (b *Board) Console() io.ReadWriteCloser { return b.con }

// OpenMultiNodeChannel makes a MultiNode side channel for the board's next
// power-on and returns troupe's end of it: that QEMU process gets the
// other end as a virtio-serial port named MultiNodePort; its power-off, or
// Close, closes it. A channel asked for earlier and not yet used is
// closed.
func (b *Board) OpenMultiNodeChannel() (io.ReadWriteCloser, error) {
	conn, end, err := sockpair.New("multinode")
	if err != nil {
		return nil, fmt.Errorf("qemu %s: multinode channel: %w", b.name, err)
	}
	c := &mnChannel{harness: conn, qemu: end}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		c.close()
		return nil, fmt.Errorf("qemu %s: multinode channel: closed", b.name)
	}
	old := b.nextMN
	b.nextMN = c
	b.mu.Unlock()
	if old != nil {
		old.close()
	}
	return conn, nil
}

// BootWithTmpFiles makes the board's boots of the default images start
// with files (paths relative to the guest's /tmp: the test shell's
// helpers) in /tmp, built into the initramfs (DefaultImages); images a job
// deploys are booted as they are. files is only read.
func (b *Board) BootWithTmpFiles(files map[string][]byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tmpFiles = files
}

// MultiNodePort names the guest's port of the side channel (see
// OpenMultiNodeChannel).
func (b *Board) MultiNodePort() string { return MultiNodePort }

// Deploy accepts no image: a QEMU board boots images = {kernel, ...} (or
// the default images when it deploys nothing).
func (b *Board) Deploy(_ context.Context, image string) error {
	if image == "" {
		return nil
	}
	return fmt.Errorf("qemu %s: a QEMU board is deployed with images = {kernel = ..., initrd = ..., rootfs = ...}, not image = %q", b.name, image)
}

// DeployImages makes the board boot im from its next power-on.
func (b *Board) DeployImages(_ context.Context, im jobs.Images) error {
	if len(im.Files) > 0 {
		return fmt.Errorf("qemu %s: deploy: QEMU boards boot a kernel, initrd, dtb and rootfs; %s are for boards that fetch their images over TFTP", b.name, strings.Join(slices.Sorted(maps.Keys(im.Files)), ", "))
	}
	if im.Kernel == "" {
		return fmt.Errorf("qemu %s: deploy: no kernel", b.name)
	}
	for _, f := range [][2]string{{"kernel", im.Kernel}, {"initrd", im.Initrd}, {"rootfs", im.Rootfs}, {"dtb", im.DTB}} {
		what, p := f[0], f[1]
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("qemu %s: deploy %s: %w", b.name, what, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("qemu %s: deploy %s: %s is not a regular file", b.name, what, p)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.images = &im
	return nil
}

// JoinGroup plugs the board into its group's network and gives it its
// address there: 10.<group>.0.0/16, the node's place in the group deciding
// the rest. Every QEMU node of the group is on it.
func (b *Board) JoinGroup(g lab.Group) (map[string]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.host = g.Node
	if b.opts.Networks == nil {
		return nil, nil
	}
	if b.port != nil {
		return nil, fmt.Errorf("qemu %s: already on a group network", b.name)
	}
	p, subnet, err := b.opts.Networks.join(g.ID)
	if err != nil {
		return nil, fmt.Errorf("qemu %s: %w", b.name, err)
	}
	b.port = p
	addrs := map[string]string{}
	for i, n := range g.Nodes {
		if g.Boards[n.Name].Backend != lab.QemuBackend {
			continue
		}
		addrs[n.Name] = fmt.Sprintf("10.%d.%d.%d", subnet, i/250, i%250+1)
		if n.Name == g.Node {
			b.addr = addrs[n.Name] + "/16"
			b.mac = fmt.Sprintf("52:54:00:%02x:%02x:%02x", subnet, i/250, i%250+1)
		}
	}
	return addrs, nil
}

// On starts QEMU; it is a no-op when QEMU already runs.
func (b *Board) On(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("qemu %s: closed", b.name)
	}
	if b.vm != nil && !b.vm.exited() {
		return nil
	}
	im, err := b.bootImages(ctx)
	if err != nil {
		return fmt.Errorf("qemu %s: %w", b.name, err)
	}
	mn := b.nextMN
	b.nextMN = nil
	// fd 3: the group network's socket; then the side channel's (see
	// argv); then, confined, the images.
	var extra []*os.File
	if b.port != nil {
		extra = append(extra, b.port.guest)
	}
	if mn != nil {
		extra = append(extra, mn.qemu)
	}
	var images []*os.File
	defer func() {
		for _, f := range images {
			_ = f.Close() // QEMU has its own copies (or never will)
		}
	}()
	confine := confined()
	if confine {
		cim, files, err := confineImages(im, 3+len(extra))
		if err != nil {
			confine = false
			b.logger.Warn("qemu runs unconfined, as troupe's user", "board", b.name, "err", err)
		} else {
			im, images = cim, files
			extra = append(extra, files...)
		}
	}
	bin, args := b.argv(im, mn != nil)
	path, err := exec.LookPath(bin)
	if err != nil {
		if mn != nil {
			mn.close()
		}
		return fmt.Errorf("qemu %s: %w (install %s)", b.name, err, packageOf(b.arch()))
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = b.con.w, b.con.w
	// The process dies with troupe, and stays out of the terminal's
	// process group (a ^C is troupe's to handle).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	cmd.ExtraFiles = extra
	if confine {
		setConfined(cmd.SysProcAttr)
		// A rootfs's snapshot overlay (snapshot=on) goes to $TMPDIR.
		cmd.Env = append(os.Environ(), "TMPDIR=/var/tmp")
	}
	stdin, err := cmd.StdinPipe()
	if err == nil {
		if err = cmd.Start(); err != nil {
			_ = stdin.Close()
			err = fmt.Errorf("start: %w", err)
		}
	}
	if mn != nil {
		// QEMU has its own copy now (or never will).
		_ = mn.qemu.Close()
		mn.qemu = nil
	}
	if err != nil {
		if mn != nil {
			mn.close()
		}
		return fmt.Errorf("qemu %s: %w", b.name, err)
	}
	v := &vm{cmd: cmd, done: make(chan struct{}), mn: mn}
	go func() {
		v.err = cmd.Wait()
		close(v.done)
	}()
	b.vm = v
	// Kept while on, so that a harness killed with the board on can power
	// it off when it starts again (PowerOffLeftover).
	if err := recordPower(b.opts.Dir, cmd.Process.Pid); err != nil {
		b.logger.Warn("qemu power file", "err", err)
	}
	b.con.attach(stdin)
	b.logger.Debug("qemu started", "pid", cmd.Process.Pid, "args", strings.Join(args, " "))
	return nil
}

// Off kills QEMU and reaps it.
func (b *Board) Off(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.off(ctx)
}

func (b *Board) off(ctx context.Context) error {
	v := b.vm
	if v == nil {
		return nil
	}
	b.con.detach()
	_ = v.cmd.Process.Kill()
	select {
	case <-v.done:
	case <-ctx.Done():
		return fmt.Errorf("qemu %s: power off: process %d not reaped: %w", b.name, v.cmd.Process.Pid, ctx.Err())
	}
	b.vm = nil
	if v.mn != nil {
		v.mn.close()
	}
	if err := clearPower(b.opts.Dir); err != nil {
		b.logger.Warn("qemu power file", "err", err)
	}
	return nil
}

// State is on while the QEMU process runs.
func (b *Board) State(context.Context) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.vm != nil && !b.vm.exited(), nil
}

// PID is the running QEMU process's (0: off), for measurements.
func (b *Board) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.vm == nil || b.vm.exited() {
		return 0
	}
	return b.vm.cmd.Process.Pid
}

// Close powers the board off and unplugs it from its network.
func (b *Board) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := []error{b.off(ctx), b.con.Close()}
	if b.nextMN != nil {
		b.nextMN.close()
		b.nextMN = nil
	}
	if b.port != nil {
		errs = append(errs, b.port.Close())
		b.port = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("qemu %s: close: %w", b.name, err)
	}
	return nil
}

func (v *vm) exited() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

// bootImages are the deployed images, else the default ones.
func (b *Board) bootImages(ctx context.Context) (jobs.Images, error) {
	if b.images != nil {
		return *b.images, nil
	}
	return DefaultImages(ctx, b.arch(), b.opts.CacheDir, b.tmpFiles)
}

// argv is the QEMU command line of one boot: no default devices, the
// serial port on stdio, and only what the guest needs: the group network
// on fd 3 if the board is on one, and with mn a virtio-serial port named
// MultiNodePort on the next descriptor (the side channel).
func (b *Board) argv(im jobs.Images, mn bool) (string, []string) {
	arch := b.arch()
	bin, machine, cpu, tty := "qemu-system-x86_64", "pc", "max", "ttyS0"
	if arch == "aarch64" {
		// cortex-a57, not max: max emulates pointer authentication with
		// QARMA, which makes a TCG boot 5x slower (1.5 s against 7.5 s
		// to the login prompt).
		bin, machine, cpu, tty = "qemu-system-aarch64", "virt", "cortex-a57", "ttyAMA0"
	}
	cmdline := []string{"console=" + tty, "quiet", "loglevel=1", "panic=0", "mitigations=off", "troupe.name=" + b.host}
	if arch == "x86_64" {
		cmdline = append(cmdline, "8250.nr_uarts=1", "no_timer_check", "tsc=reliable")
	}
	if b.addr != "" {
		cmdline = append(cmdline, "troupe.ip="+b.addr)
	}
	if im.Rootfs != "" {
		cmdline = append(cmdline, "root=/dev/vda")
	}
	if b.cfg.Append != "" {
		cmdline = append(cmdline, b.cfg.Append)
	}
	cpus, memory := b.cfg.CPUs, b.cfg.Memory
	if b.job.cpu != "" {
		cpu = b.job.cpu
	}
	if b.job.machine != "" {
		machine = b.job.machine
	}
	if b.job.cpus > 0 {
		cpus = b.job.cpus
	}
	if b.job.memoryMiB > 0 {
		memory = fmt.Sprintf("%dM", b.job.memoryMiB)
	}
	args := []string{
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-M", machine, "-accel", "tcg,tb-size=64", "-cpu", cpu,
		"-smp", fmt.Sprint(cpus), "-m", memory,
		"-kernel", im.Kernel,
	}
	if im.Initrd != "" {
		args = append(args, "-initrd", im.Initrd)
	}
	if im.DTB != "" {
		args = append(args, "-dtb", im.DTB)
	}
	args = append(args, "-append", strings.Join(cmdline, " "),
		"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con")
	if b.port != nil {
		args = append(args, "-netdev", "dgram,id=net0,local.type=fd,local.str=3",
			"-device", "virtio-net-pci,netdev=net0,romfile=,mac="+b.mac)
	}
	if mn {
		fd := 3
		if b.port != nil {
			fd = 4
		}
		args = append(args, "-device", "virtio-serial-pci,id=mnbus,romfile=",
			"-chardev", fmt.Sprintf("socket,id=mn,fd=%d", fd),
			"-device", "virtserialport,bus=mnbus.0,chardev=mn,name="+MultiNodePort)
	}
	if im.Rootfs != "" {
		// In an option value, QEMU reads ",," as a comma: no path adds options.
		args = append(args, "-drive", "file="+strings.ReplaceAll(im.Rootfs, ",", ",,")+",format=raw,if=virtio,snapshot=on")
	}
	return bin, args
}

func packageOf(arch string) string {
	if arch == "aarch64" {
		return "qemu-system-arm"
	}
	return "qemu-system-x86"
}
