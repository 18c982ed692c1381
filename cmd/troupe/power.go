package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/troupe-lab/troupe/hardware"
	"github.com/troupe-lab/troupe/lab"
)

// powerTimeout bounds one operator power command (a cycle is two switches
// with their read-backs and the board's cycle delay).
const powerTimeout = 5 * time.Minute

func init() {
	commandHelps["power"] = commandHelp{
		synopsis: "troupe power BOARD on|off|cycle|status --lab LAB.toml\n       troupe power BOARD on|off|cycle|status [--server URL] [--token T]",
		about:    "Switch a real board by hand, through its power switch as a run uses it (read back and\nretried, cycle_delay kept between off and on); prints the state read back. With --lab, directly;\nelse through the server, with an admin token, on a board reserved by that token (troupe reserve);\na worker's board is switched by its worker.",
		example:  "troupe power bbb-03 cycle --lab examples/labs/rpi-farm.toml",
	}
}

// cmdPower is `troupe power BOARD on|off|cycle|status --lab LAB`: switch
// a real board of a lab file by hand, with the read-back and cycle delay of
// its lab entry.
func cmdPower(args []string, stdout, stderr io.Writer) int {
	c, code, ok := parseBoardCommand("power", args, 2, "want BOARD and on, off, cycle or status", stdout, stderr)
	if !ok {
		return code
	}
	name, op := c.fs.Arg(0), c.fs.Arg(1)
	switch op {
	case "on", "off", "cycle", "status":
	default:
		return usageError(c.fs, "unknown action %q (on, off, cycle, status)", op)
	}
	if c.lab == "" {
		return deviceOp(c.connect(), name, "power", map[string]string{"action": op}, stdout, stderr)
	}
	b, code := labBoard(c.lab, name, stderr)
	if code != exitOK {
		return code
	}
	sw, err := hardware.Switch(b)
	if err != nil {
		fmt.Fprintf(stderr, "troupe power: %v\n", err)
		return exitInvalid
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, powerTimeout)
	defer cancel()
	switch op {
	case "on":
		err = sw.On(ctx)
	case "off":
		err = sw.Off(ctx)
	case "cycle":
		if err = sw.Off(ctx); err == nil {
			err = sw.On(ctx)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "troupe power: %v\n", err)
		return exitIncomplete
	}
	on, err := sw.State(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "troupe power: %v\n", err)
		return exitIncomplete
	}
	fmt.Fprintf(stdout, "%s: %s\n", name, map[bool]string{true: "on", false: "off"}[on])
	return exitOK
}

// boardCommand is the parsed command line of a command that acts on one
// real board: directly, as the lab file of --lab describes it, or else
// through the server.
type boardCommand struct {
	fs      *flag.FlagSet
	lab     string // the --lab file; "" means through the server
	connect func() *client
}

// parseBoardCommand parses the flags and the n arguments (BOARD first) of
// the board command name; want is the usage error when they are not n.
// ok false means return code.
func parseBoardCommand(name string, args []string, n int, want string, stdout, stderr io.Writer) (c boardCommand, code int, ok bool) {
	fs := newFlags(name, stderr)
	labFile := fs.String("lab", "", "lab file that describes the board (without it: through the server)")
	connect := clientFlags(fs)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return boardCommand{}, code, false
	}
	if fs.NArg() != n {
		return boardCommand{}, usageError(fs, "%s", want), false
	}
	return boardCommand{fs: fs, lab: *labFile, connect: connect}, exitOK, true
}

// labBoard loads the lab file and finds the board called name in it.
func labBoard(labFile, name string, stderr io.Writer) (lab.Board, int) {
	l, err := lab.Load(labFile)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return lab.Board{}, exitInvalid
	}
	for _, b := range l.Boards {
		if b.Name == name {
			return b, exitOK
		}
	}
	fmt.Fprintf(stderr, "troupe: no board %q in %s\n", name, labFile)
	return lab.Board{}, exitInvalid
}
