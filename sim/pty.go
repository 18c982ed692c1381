package sim

import (
	"fmt"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal. Both ends are returned in non-blocking
// (netpoller) mode, so Close unblocks a pending Read and deadlines work.
// creack/pty calls (*os.File).Fd on the master, which switches it to
// blocking mode; we re-wrap a non-blocking duplicate of it.
func openPTY() (master, slave *os.File, err error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	defer m.Close()
	var fd int
	err = control(m, func(raw int) error {
		var derr error
		fd, derr = unix.Dup(raw)
		return derr
	})
	if err == nil {
		unix.CloseOnExec(fd)
		err = unix.SetNonblock(fd, true)
		if err != nil {
			_ = unix.Close(fd)
		}
	}
	if err != nil {
		_ = s.Close()
		return nil, nil, fmt.Errorf("open pty: dup master: %w", err)
	}
	return os.NewFile(uintptr(fd), m.Name()), s, nil
}

// control runs fn on f's descriptor without switching f to blocking mode.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// termMode selects the line-discipline settings of the slave.
type termMode int

const (
	modeOff        termMode = iota // no echo: input written while off stays silent
	modeBoot                       // no output processing: boot text carries its own \r\n
	modeShell                      // "stty sane": canonical, echo, ONLCR
	modeShellQuiet                 // modeShell with "stty -echo": the console's shell after the login (see Board.EchoOff)
	modeUBoot                      // raw: byte by byte, no echo, no processing (the bootloader echoes)
)

func setMode(tty *os.File, m termMode) error {
	return control(tty, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return fmt.Errorf("get termios: %w", err)
		}
		t.Iflag = unix.ICRNL | unix.IXON | unix.IUTF8 | unix.BRKINT | unix.IMAXBEL
		t.Oflag = unix.OPOST | unix.ONLCR
		t.Cflag = t.Cflag&^(unix.CSIZE|unix.PARENB) | unix.CS8 | unix.CREAD
		t.Lflag = unix.ICANON | unix.ISIG | unix.IEXTEN | unix.ECHO | unix.ECHOE | unix.ECHOK | unix.ECHOCTL | unix.ECHOKE
		switch m {
		case modeOff:
			t.Lflag &^= unix.ECHO | unix.ECHOE | unix.ECHOK | unix.ECHOCTL | unix.ECHOKE
		case modeShellQuiet:
			t.Lflag &^= unix.ECHO
		case modeBoot:
			t.Oflag = 0
			t.Lflag &^= unix.ECHO | unix.ECHOE | unix.ECHOK | unix.ECHOCTL | unix.ECHOKE
		case modeUBoot:
			t.Iflag = unix.IUTF8
			t.Oflag = 0
			t.Lflag = 0
			t.Cc[unix.VMIN] = 1
			t.Cc[unix.VTIME] = 0
		}
		if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
			return fmt.Errorf("set termios: %w", err)
		}
		return nil
	})
}

// flushInput discards bytes written to the master but not yet read.
func flushInput(tty *os.File) error {
	return control(tty, func(fd int) error {
		if err := unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH); err != nil {
			return fmt.Errorf("flush tty input: %w", err)
		}
		return nil
	})
}
