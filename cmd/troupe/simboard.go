package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/troupe-lab/troupe/sim"
)

// cmdSimboard runs one simulated board as a process of its own, with its
// console on a pseudo-terminal or a TCP port and a power control socket, so
// that the real-board code paths (serial and TCP consoles, PDU drivers) can
// be exercised without hardware.
func cmdSimboard(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "power" {
		return simboardPower(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("simboard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "simboard", "board name")
	dir := fs.String("dir", "", "sandbox directory (default: a temporary one)")
	ptyPath := fs.String("pty", "", "console on a pseudo-terminal: a symlink to its slave is made at this path")
	tcpAddr := fs.String("tcp", "", "console on a TCP port (raw, like ser2net), e.g. 127.0.0.1:4001")
	control := fs.String("control", "", "unix socket for power control (troupe simboard power SOCKET on|off|status)")
	bootloader := fs.String("bootloader", "", `bootloader emulation: "" (boot straight to the kernel) or "u-boot" (interactive u-boot console: setenv, tftpboot, booti...)`)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return usageError(fs, "no arguments expected, got %q", fs.Args())
	}
	if (*ptyPath == "") == (*tcpAddr == "") || *control == "" {
		return usageError(fs, "want --control and exactly one of --pty and --tcp")
	}
	if *bootloader != sim.BootloaderNone && *bootloader != sim.BootloaderUBoot {
		fmt.Fprintf(stderr, "troupe simboard: --bootloader: want %q or %q, got %q\n", sim.BootloaderNone, sim.BootloaderUBoot, *bootloader)
		return exitInvalid
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "simboard-")
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitIncomplete
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	b, err := sim.New(sim.Options{Name: *name, Dir: *dir, Bootloader: *bootloader, KeepEcho: true})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitIncomplete
	}
	defer b.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := removeStaleSocket(*control); err != nil {
		fmt.Fprintf(stderr, "troupe simboard: control socket: %v\n", err)
		return exitIncomplete
	}
	ln, err := net.Listen("unix", *control)
	if err != nil {
		fmt.Fprintf(stderr, "troupe simboard: control socket: %v\n", err)
		return exitIncomplete
	}
	defer ln.Close()
	go servePower(ln, b)

	if *ptyPath != "" {
		err = servePty(ctx, b, *ptyPath)
	} else {
		err = serveTCP(ctx, b, *tcpAddr, stdout)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "troupe simboard: %v\n", err)
		return exitIncomplete
	}
	return exitOK
}

// removeStaleSocket removes the unix socket at path when no process
// answers it any more (a simboard that was SIGKILLed leaves it behind). A
// socket that answers, or a path that is not a socket, is left alone: the
// listen that follows then fails and says why.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket {
		return nil
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: another simboard is serving it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale %s: %w", path, err)
	}
	return nil
}

// servePower answers one command a line on each connection: on, off,
// status. Replies: "ok", "on", "off" or "error: ...".
func servePower(ln net.Listener, b *sim.Board) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				reply := "ok"
				var err error
				switch strings.TrimSpace(sc.Text()) {
				case "on":
					err = b.On(ctx)
				case "off":
					err = b.Off(ctx)
				case "status":
					var on bool
					if on, err = b.State(ctx); err == nil {
						reply = map[bool]string{true: "on", false: "off"}[on]
					}
				default:
					err = fmt.Errorf("unknown command %q (on, off, status)", sc.Text())
				}
				cancel()
				if err != nil {
					reply = "error: " + err.Error()
				}
				if _, err := fmt.Fprintln(c, reply); err != nil {
					return
				}
			}
		}()
	}
}

// simboardPower is the client of the power control socket.
func simboardPower(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("simboard power", stderr)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 2 {
		return usageError(fs, "want SOCKET and on, off or status, got %q", fs.Args())
	}
	args = fs.Args()
	c, err := net.DialTimeout("unix", args[0], 5*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "troupe simboard power: %v\n", err)
		return exitIncomplete
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintln(c, args[1]); err != nil {
		fmt.Fprintf(stderr, "troupe simboard power: %v\n", err)
		return exitIncomplete
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Fprintf(stderr, "troupe simboard power: %v\n", err)
		return exitIncomplete
	}
	reply = strings.TrimSpace(reply)
	if strings.HasPrefix(reply, "error: ") {
		fmt.Fprintln(stderr, reply)
		return exitIncomplete
	}
	fmt.Fprintln(stdout, reply)
	return exitOK
}

// peers forwards the board's console output to whoever is attached now,
// like a serial line: output with nothing attached is lost.
type peers struct {
	mu  sync.Mutex
	cur io.Writer
}

func (p *peers) set(w io.Writer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur = w
}

// pump reads the board console for the life of the process.
func (p *peers) pump(con io.Reader) {
	buf := make([]byte, 4096)
	for {
		n, err := con.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if p.cur != nil {
				_, _ = p.cur.Write(buf[:n])
			}
			p.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// servePty bridges the board's console to a new pseudo-terminal whose
// slave is linked at path.
func servePty(ctx context.Context, b *sim.Board, path string) error {
	master, slave, err := pty.Open()
	if err != nil {
		return fmt.Errorf("pty: %w", err)
	}
	defer master.Close()
	defer slave.Close()
	_ = os.Remove(path)
	if err := os.Symlink(slave.Name(), path); err != nil {
		return fmt.Errorf("pty link: %w", err)
	}
	defer os.Remove(path)
	// Raw until a client sets its own mode: a cooked slave with echo on
	// would feed the board's output back to it as input.
	if err := makeRaw(slave); err != nil {
		return fmt.Errorf("pty raw mode: %w", err)
	}
	p := &peers{cur: master}
	go p.pump(b.Console())
	go func() { _, _ = io.Copy(b.Console(), master) }()
	<-ctx.Done()
	return ctx.Err()
}

// makeRaw puts a terminal in raw mode (cfmakeraw).
func makeRaw(f *os.File) error {
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
}

// serveTCP serves the board's console to one TCP client at a time.
func serveTCP(ctx context.Context, b *sim.Board, addr string, stdout io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("console port: %w", err)
	}
	fmt.Fprintf(stdout, "console on %s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	p := &peers{}
	go p.pump(b.Console())
	for {
		c, err := ln.Accept()
		if err != nil {
			return ctx.Err()
		}
		p.set(c)
		_, _ = io.Copy(b.Console(), c) // until the client goes away
		p.set(nil)
		c.Close()
	}
}
