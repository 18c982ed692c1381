// Package hardware assembles a real board from its lab description: a
// serial or TCP console, a power driver whose state is read back, and its
// boot method. The board actor drives it through the same console, boot
// and test-shell code as a simulated board.
package hardware

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/troupe-lab/troupe/boot"
	"github.com/troupe-lab/troupe/hardware/console"
	"github.com/troupe-lab/troupe/hardware/power"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
)

// Board is one real board.
type Board struct {
	power.Switch
	name string
	hw   lab.Hardware
	con  io.ReadWriteCloser
	once sync.Once
	opts Options

	mu   sync.Mutex
	vars map[string]string // u-boot placeholders set by the last deploy
}

// Options is what a run provides to its real boards.
type Options struct {
	Logger *slog.Logger
	// TFTPRoot is the directory the run's TFTP server serves, and
	// ServerIP how boards reach that server ({server_ip}); for boards with
	// deploy method "tftp".
	TFTPRoot, ServerIP string
}

// Open reaches the board described by b: it opens its console now (a
// missing device is an error here, naming the board) and builds its power
// switch.
func Open(b lab.Board, opts Options) (*Board, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if b.Hardware == nil {
		return nil, fmt.Errorf("board %s: not a hardware board", b.Name)
	}
	hw := *b.Hardware
	sw, err := newSwitch(b.Name, hw.Power)
	if err != nil {
		return nil, err
	}
	con, err := OpenConsole(b, logger)
	if err != nil {
		return nil, err
	}
	if hw.Deploy.Method == "tftp" && opts.TFTPRoot == "" {
		return nil, fmt.Errorf("board %s: deploy method tftp, but the run has no TFTP server", b.Name)
	}
	return &Board{Switch: sw, name: b.Name, hw: hw, con: con, opts: opts}, nil
}

// OpenConsole opens the console of the hardware board b with its lab
// settings: a serial device, or a TCP port (raw, telnet or RFC 2217).
func OpenConsole(b lab.Board, logger *slog.Logger) (io.ReadWriteCloser, error) {
	if b.Hardware == nil {
		return nil, fmt.Errorf("board %s: not a hardware board", b.Name)
	}
	c := b.Hardware.Console
	line := console.Line{Baud: c.Baud, Parity: c.Parity, StopBits: c.StopBits, Flow: c.Flow}
	switch c.Kind {
	case "serial":
		return console.OpenSerial(b.Name, c.Device, line)
	case "tcp":
		return console.DialTCP(b.Name, c.Address, console.TCPOptions{Mode: c.Mode, Reconnect: c.Reconnect, Line: line, Logger: logger})
	}
	return nil, fmt.Errorf("console of %s: unknown kind %q", b.Name, c.Kind)
}

func newSwitch(board string, p lab.Power) (power.Switch, error) {
	var sw power.Switch
	switch p.Kind {
	case "pdudaemon":
		sw = &power.PDUDaemon{Board: board, URL: p.URL, Hostname: p.Hostname, Port: p.Port, StateCommand: p.State}
	case "command":
		sw = &power.Command{Board: board, OnCommand: p.On, OffCommand: p.Off, StateCommand: p.State}
	case "snmp":
		sw = &power.SNMP{Board: board, Target: p.Target, Community: p.Community, OID: p.OID, OnValue: p.OnValue, OffValue: p.OffValue}
	case "manual":
		sw = &power.Manual{Board: board, In: os.Stdin, Out: os.Stderr}
	case "sim":
		sw = &power.Sim{Board: board, Socket: p.Socket}
	default:
		return nil, fmt.Errorf("power of %s: unknown kind %q", board, p.Kind)
	}
	retries := p.Retries
	if retries == 0 {
		retries = -1 // none (Verify's 0 is its default)
	}
	return &cycled{Switch: power.Verify(sw, board, retries, p.Settle), delay: p.CycleDelay}, nil
}

// cycled keeps a board off for at least delay between Off and On: power
// supplies and boards that need their capacitors drained get the time.
type cycled struct {
	power.Switch
	delay time.Duration

	mu      sync.Mutex
	lastOff time.Time
}

func (c *cycled) Off(ctx context.Context) error {
	err := c.Switch.Off(ctx)
	if err == nil {
		c.mu.Lock()
		c.lastOff = time.Now()
		c.mu.Unlock()
	}
	return err
}

// On waits until delay has passed since the last Off, then switches on.
func (c *cycled) On(ctx context.Context) error {
	c.mu.Lock()
	wait := time.Until(c.lastOff.Add(c.delay))
	c.mu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("power on: waiting %v after power off: %w", c.delay, context.Cause(ctx))
		}
	}
	return c.Switch.On(ctx)
}

// Console is the board's console, open for the board's life.
func (b *Board) Console() io.ReadWriteCloser { return b.con }

// Deploy puts an image on the board with its deploy method: the flasher
// command, or nothing (a board that boots what it has; an image is then
// an error).
func (b *Board) Deploy(ctx context.Context, image string) error {
	if image == "" {
		return nil
	}
	switch b.hw.Deploy.Method {
	case "flasher":
		return flash(ctx, b.name, b.hw.Deploy.Command, b.hw.Deploy.Timeout, image)
	case "tftp":
		return b.stage(image)
	}
	return fmt.Errorf("deploy %s to %s: the board has no deploy method (set [board.deploy] method = \"flasher\")", image, b.name)
}

// DeployImages stages a kernel's images for a board that fetches them over
// TFTP (LAVA's deploy to: tftp): the u-boot placeholders {kernel},
// {ramdisk} (also {initrd}), {dtb} and {rootfs} name the staged files.
func (b *Board) DeployImages(_ context.Context, im jobs.Images) error {
	if b.hw.Deploy.Method != "tftp" {
		return fmt.Errorf("deploy images to %s: the board's deploy method is %q; kernel, initrd and dtb images need tftp", b.name, b.hw.Deploy.Method)
	}
	vars := map[string]string{"server_ip": b.opts.ServerIP}
	for _, f := range [][3]string{{"kernel", im.Kernel, ""}, {"ramdisk", im.Initrd, "initrd"}, {"dtb", im.DTB, ""}, {"rootfs", im.Rootfs, ""}} {
		if f[1] == "" {
			continue
		}
		file, err := b.copyToTFTP(f[1])
		if err != nil {
			return err
		}
		vars[f[0]] = file
		if f[2] != "" {
			vars[f[2]] = file
		}
	}
	for _, k := range slices.Sorted(maps.Keys(im.Files)) {
		file, err := b.copyToTFTP(im.Files[k])
		if err != nil {
			return err
		}
		vars[k] = file
	}
	vars["image"] = vars["kernel"]
	b.mu.Lock()
	defer b.mu.Unlock()
	b.vars = vars
	return nil
}

// mountsNFSRoot reports whether one of commands names the staged
// nfsrootfs.
func mountsNFSRoot(commands []string) bool {
	for _, c := range commands {
		if strings.Contains(c, "{nfsrootfs}") {
			return true
		}
	}
	return false
}

// stage puts image where the TFTP server serves it to this board only
// (<root>/<board>/<name>) and sets the u-boot placeholders for it.
func (b *Board) stage(image string) error {
	file, err := b.copyToTFTP(image)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.vars = map[string]string{"server_ip": b.opts.ServerIP, "kernel": file, "image": file}
	return nil
}

// copyToTFTP copies image to <root>/<board>/<name> and returns the file's
// TFTP name.
func (b *Board) copyToTFTP(image string) (string, error) {
	name := filepath.Base(image)
	dst := filepath.Join(b.opts.TFTPRoot, b.name, name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("deploy %s to %s: %w", image, b.name, err)
	}
	in, err := os.Open(image)
	if err != nil {
		return "", fmt.Errorf("deploy %s to %s: %w", image, b.name, err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return "", fmt.Errorf("deploy %s to %s: %w", image, b.name, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", fmt.Errorf("deploy %s to %s: %w", image, b.name, err)
	}
	if err := out.Close(); err != nil {
		return "", fmt.Errorf("deploy %s to %s: %w", image, b.name, err)
	}
	return b.name + "/" + name, nil
}

// Boot brings the board to a logged-in shell by its boot method, with the
// prompts, login and u-boot settings of its lab entry.
func (b *Board) Boot(ctx context.Context, con boot.Console) error {
	return b.BootWith(ctx, con, boot.Spec{})
}

// BootWith is Boot with a job's boot spec: the u-boot command set named
// spec.Commands of the board's lab entry ([board.boot.command_sets]; a
// LAVA boot's commands: nfs, ramdisk ...) — "" and, on a board without
// command sets, any name send the board's commands; spec.Context gives
// the placeholders the lab entry leaves open (it overrides none of the
// board's); spec.BootCommands, the job's own, replace the board's
// commands; spec.Login replaces the board's login settings it sets.
func (b *Board) BootWith(ctx context.Context, con boot.Console, spec boot.Spec) error {
	set := spec.Commands
	bm := b.hw.Boot
	p, err := prompts(bm)
	if err != nil {
		return fmt.Errorf("boot %s: %w", b.name, err)
	}
	if p, err = spec.Login.Apply(p); err != nil {
		return fmt.Errorf("boot %s: %w", b.name, err)
	}
	if bm.Method != "u-boot" {
		if len(spec.BootCommands) > 0 {
			return fmt.Errorf("boot %s: the job gives u-boot commands, but the board's lab entry boots it by %q, not u-boot", b.name, bm.Method)
		}
		return boot.Boot(ctx, b, con, p)
	}
	commands := bm.Commands
	if len(spec.BootCommands) > 0 {
		commands = spec.BootCommands
	} else if set != "" && len(bm.CommandSets) > 0 {
		cs, ok := bm.CommandSets[set]
		if !ok {
			return fmt.Errorf("boot %s: the job boots with the command set %q; the board's lab entry has %s", b.name, set, strings.Join(slices.Sorted(maps.Keys(bm.CommandSets)), ", "))
		}
		commands = cs
	}
	b.mu.Lock()
	_, nfs := b.vars["nfsrootfs"]
	b.mu.Unlock()
	if nfs && !mountsNFSRoot(commands) {
		return fmt.Errorf("boot %s: the job deploys an nfsrootfs, but the commands it boots with mount none ({nfsrootfs}); troupe serves it over TFTP and runs no NFS server: boot with a command set (nfs) of the board's lab entry, or commands of the job's own, whose kernel takes its root from {nfsrootfs}", b.name)
	}
	interrupt, err := regexp.Compile(bm.Interrupt)
	if err != nil {
		return fmt.Errorf("boot %s: interrupt: %w", b.name, err)
	}
	var uprompt *regexp.Regexp
	if bm.UBootPrompt != "" {
		if uprompt, err = regexp.Compile(bm.UBootPrompt); err != nil {
			return fmt.Errorf("boot %s: u-boot prompt: %w", b.name, err)
		}
	}
	vars := maps.Clone(spec.Context)
	if vars == nil {
		vars = map[string]string{}
	}
	vars["board"] = b.name
	for k, v := range bm.Vars {
		vars[k] = v
	}
	b.mu.Lock()
	for k, v := range b.vars {
		vars[k] = v
	}
	b.mu.Unlock()
	return boot.BootUBoot(ctx, b, con, boot.UBoot{Interrupt: interrupt, Prompt: uprompt, InterruptWith: bm.InterruptString,
		Commands: commands, Vars: vars, Prompts: p})
}

// prompts are the login prompts of bm ("" fields: boot's defaults).
func prompts(bm lab.BootMethod) (boot.Prompts, error) {
	def := boot.DefaultPrompts()
	p := boot.Prompts{User: bm.User, Shell: def.Shell, Password: bm.Password}
	var err error
	if p.Login, err = regexp.Compile(bm.Login + `\s*$`); err != nil {
		return p, fmt.Errorf("login prompt: %w", err)
	}
	if bm.ShellPrompt != "" {
		if p.Shell, err = regexp.Compile(bm.ShellPrompt); err != nil {
			return p, fmt.Errorf("shell prompt: %w", err)
		}
	}
	if bm.PasswordPrompt != "" {
		if p.PasswordPrompt, err = regexp.Compile(bm.PasswordPrompt); err != nil {
			return p, fmt.Errorf("password prompt: %w", err)
		}
	}
	return p, nil
}

// Close closes the console; the power is left as it is (the board actor
// switches it off first).
func (b *Board) Close() error {
	var err error
	b.once.Do(func() { err = b.con.Close() })
	return err
}

// Switch is the power switch of the hardware board b as a run uses it
// (read back and retried, with the board's cycle delay): for an operator's
// commands.
func Switch(b lab.Board) (power.Switch, error) {
	if b.Hardware == nil {
		return nil, fmt.Errorf("board %s: not a hardware board (backend %s)", b.Name, b.Backend)
	}
	return newSwitch(b.Name, b.Hardware.Power)
}

// PowerSwitch is the power switch of b alone, without its console: for
// powering off boards a harness left on when it died. Nil for a board whose
// power is manual (nobody may be at the keyboard).
func PowerSwitch(b lab.Board) (power.Switch, error) {
	if b.Hardware == nil || b.Hardware.Power.Kind == "manual" {
		return nil, nil
	}
	return newSwitch(b.Name, b.Hardware.Power)
}
