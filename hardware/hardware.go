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
	"regexp"
	"sync"

	"github.com/troupe-lab/troupe/boot"
	"github.com/troupe-lab/troupe/hardware/console"
	"github.com/troupe-lab/troupe/hardware/power"
	"github.com/troupe-lab/troupe/lab"
)

// Board is one real board.
type Board struct {
	power.Switch
	name string
	hw   lab.Hardware
	con  io.ReadWriteCloser
	once sync.Once
}

// Open reaches the board described by b: it opens its console now (a
// missing device is an error here, naming the board) and builds its power
// switch.
func Open(b lab.Board, logger *slog.Logger) (*Board, error) {
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
	return &Board{Switch: sw, name: b.Name, hw: hw, con: con}, nil
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
	if b.hw.Deploy.Method == "flasher" {
		return flash(ctx, b.name, b.hw.Deploy.Command, b.hw.Deploy.Timeout, image)
	}
	return fmt.Errorf("deploy %s to %s: the board has no deploy method (set [board.deploy] method = \"flasher\")", image, b.name)
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
	return boot.BootUBoot(ctx, b, con, boot.UBoot{Interrupt: interrupt, Commands: b.hw.Boot.Commands, Prompts: p})
}

// Close closes the console; the power is left as it is (the board actor
// switches it off first).
func (b *Board) Close() error {
	var err error
	b.once.Do(func() { err = b.con.Close() })
	return err
}
