package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/troupe-lab/troupe/hardware"
)

// consoleEscape is Ctrl-]: typed on the console, it leaves it (as telnet).
const consoleEscape = 0x1d

func init() {
	commandHelps["console"] = commandHelp{
		synopsis: "troupe console BOARD --lab LAB.toml\n       troupe console BOARD [--server URL] [--token T]",
		about:    "Attach this terminal to a real board's console (serial, or TCP: raw, telnet, RFC 2217 as its\nlab entry says), in raw mode; Ctrl-] leaves. With --lab, directly (a job running on the board\ncompetes for the console); else through the server with an admin token: interactive on a board\nyou reserved, read-only (the job's console lines) while a job runs on it; a worker's board through its worker.",
		example:  "troupe console bbb-03 --lab examples/labs/rpi-farm.toml",
	}
}

// cmdConsole is `troupe console BOARD --lab LAB`: the board's console on
// this terminal, in raw mode, until Ctrl-] (or the end of the input when
// it is not a terminal). The console is opened as a run opens it (serial
// line, TCP mode of the lab entry): a job running on the board at the same
// time competes for it.
func cmdConsole(args []string, stdout, stderr io.Writer) int {
	c, code, ok := parseBoardCommand("console", args, 1, "want BOARD", stdout, stderr)
	if !ok {
		return code
	}
	if c.lab == "" {
		return remoteConsole(c.connect(), c.fs.Arg(0), stdout, stderr)
	}
	b, code := labBoard(c.lab, c.fs.Arg(0), stderr)
	if code != exitOK {
		return code
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	con, err := hardware.OpenConsole(b, logger)
	if err != nil {
		fmt.Fprintf(stderr, "troupe console: %v\n", err)
		if b.Hardware == nil {
			return exitInvalid
		}
		return exitIncomplete
	}
	defer con.Close()
	if restore, err := rawTerminal(os.Stdin); err == nil {
		defer restore()
	}
	fmt.Fprintf(stderr, "console of %s; Ctrl-] to leave\r\n", b.Name)

	out := make(chan error, 1)
	go func() {
		_, err := io.Copy(stdout, con)
		out <- err
	}()
	leave := make(chan struct{})
	go func() {
		defer close(leave)
		typeInto(con, os.Stdin)
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	select {
	case err := <-out:
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintf(stderr, "\r\ntroupe console: %v\r\n", err)
			return exitIncomplete
		}
		return exitOK
	case <-leave:
	case <-sigs:
	}
	_ = con.Close()
	<-out
	fmt.Fprintf(stderr, "\r\nleft the console of %s\r\n", b.Name)
	return exitOK
}

// typeInto copies what is typed to the console up to Ctrl-] or the end of
// the input.
func typeInto(con io.Writer, in io.Reader) {
	buf := make([]byte, 256)
	for {
		n, err := in.Read(buf)
		p := buf[:n]
		i := bytes.IndexByte(p, consoleEscape)
		if i >= 0 {
			p = p[:i]
		}
		if len(p) > 0 {
			if _, werr := con.Write(p); werr != nil {
				return
			}
		}
		if i >= 0 || err != nil {
			return
		}
	}
}

// rawTerminal puts f in raw mode if it is a terminal; restore puts it back.
func rawTerminal(f *os.File) (restore func(), err error) {
	fd := int(f.Fd())
	saved, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	if err := makeRaw(f); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, saved) }, nil
}
