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
	"os"
	"path/filepath"
	"regexp"
	"sync"

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
	var con io.ReadWriteCloser
	switch hw.Console.Kind {
	case "serial":
		con, err = console.OpenSerial(b.Name, hw.Console.Device, hw.Console.Baud)
	case "tcp":
		con, err = console.DialTCP(b.Name, hw.Console.Address, console.TCPOptions{Logger: logger})
	default:
		err = fmt.Errorf("console of %s: unknown kind %q", b.Name, hw.Console.Kind)
	}
	if err != nil {
		return nil, err
	}
	if hw.Deploy.Method == "tftp" && opts.TFTPRoot == "" {
		return nil, fmt.Errorf("board %s: deploy method tftp, but the run has no TFTP server", b.Name)
	}
	return &Board{Switch: sw, name: b.Name, hw: hw, con: con, opts: opts}, nil
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
	return power.Verify(sw, board, power.DefaultRetries, power.DefaultSettle), nil
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
	vars["image"] = vars["kernel"]
	b.mu.Lock()
	defer b.mu.Unlock()
	b.vars = vars
	return nil
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

// Boot brings the board to a logged-in shell by its boot method.
func (b *Board) Boot(ctx context.Context, con boot.Console) error {
	login, err := regexp.Compile(b.hw.Boot.Login + `\s*$`)
	if err != nil {
		return fmt.Errorf("boot %s: login prompt: %w", b.name, err)
	}
	p := boot.Prompts{Login: login, User: b.hw.Boot.User, Shell: boot.DefaultPrompts().Shell}
	if b.hw.Boot.Method != "u-boot" {
		return boot.Boot(ctx, b, con, p)
	}
	interrupt, err := regexp.Compile(b.hw.Boot.Interrupt)
	if err != nil {
		return fmt.Errorf("boot %s: interrupt: %w", b.name, err)
	}
	vars := map[string]string{"board": b.name}
	for k, v := range b.hw.Boot.Vars {
		vars[k] = v
	}
	b.mu.Lock()
	for k, v := range b.vars {
		vars[k] = v
	}
	b.mu.Unlock()
	return boot.BootUBoot(ctx, b, con, boot.UBoot{Interrupt: interrupt, Commands: b.hw.Boot.Commands, Vars: vars, Prompts: p})
}

// Close closes the console; the power is left as it is (the board actor
// switches it off first).
func (b *Board) Close() error {
	var err error
	b.once.Do(func() { err = b.con.Close() })
	return err
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
