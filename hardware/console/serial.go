package console

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// serialPollInterval is the read timeout used internally so that a Read
// re-checks for Close at least this often (go.bug.st/serial also unblocks
// pending reads on Close by itself; this is a second line of defence).
const serialPollInterval = 100 * time.Millisecond

// Serial is a board console on a local serial device in raw mode, with the
// line settings it was opened with.
type Serial struct {
	board, device string
	port          serial.Port

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	mu   sync.Mutex
	lost error // sticky, wraps ErrLost

	trace func(event string) // set by tests before any I/O: told of each tracePoll
}

// tracePoll: a Read's poll timed out with nothing read; it polls again.
const tracePoll = "poll"

// OpenSerial opens device with the line settings line (8 data bits; the
// zero values of its other fields mean no parity, 1 stop bit, no flow
// control) for board. DTR and RTS are asserted when the device supports it
// (errors doing so are ignored: a pty, for instance, has no modem lines).
// Errors name the board and the device, e.g. "console of rpi-01: open
// /dev/ttyUSB0: no such file or directory"; a missing device satisfies
// errors.Is(err, fs.ErrNotExist).
func OpenSerial(board, device string, line Line) (*Serial, error) {
	if err := line.check(); err != nil {
		return nil, fmt.Errorf("console of %s: open %s: %w", board, device, err)
	}
	port, err := serial.Open(device, line.mode())
	if err != nil {
		return nil, fmt.Errorf("console of %s: open %s: %w", board, device, err)
	}
	if err := port.SetReadTimeout(serialPollInterval); err != nil {
		_ = port.Close()
		return nil, fmt.Errorf("console of %s: open %s: set read timeout: %w", board, device, err)
	}
	if err := setFlow(device, line.Flow); err != nil {
		_ = port.Close()
		return nil, fmt.Errorf("console of %s: open %s: %w", board, device, err)
	}
	// Modem-control ioctls fail on ptys and some adapters; not fatal.
	_ = port.SetDTR(true)
	_ = port.SetRTS(true)
	return &Serial{board: board, device: device, port: port}, nil
}

// Board returns the board name given to OpenSerial.
func (s *Serial) Board() string { return s.board }

// Device returns the device path given to OpenSerial.
func (s *Serial) Device() string { return s.device }

// Read reads console output. It blocks until at least one byte is available,
// the console is closed (io.EOF) or the device disappears or hangs up (an
// error wrapping ErrLost).
func (s *Serial) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if s.closed.Load() {
			return 0, io.EOF
		}
		if err := s.lostErr(); err != nil {
			return 0, err
		}
		n, err := s.port.Read(p)
		if n > 0 {
			if err != nil && !transient(err) && !s.closed.Load() {
				s.markLost("read", err) // reported on the next Read
			}
			return n, nil
		}
		if err == nil || transient(err) {
			if s.trace != nil {
				s.trace(tracePoll)
			}
			continue // read timeout (0, nil): poll again
		}
		if s.closed.Load() {
			return 0, io.EOF
		}
		return 0, s.markLost("read", err)
	}
}

// Write sends p to the board. An error wrapping ErrLost means the device
// went away; after Close the error wraps ErrClosed. Write blocks while the
// device's output buffer is full (no flow control, so a real UART drains at
// the baud rate); Close does not interrupt a Write already in progress.
func (s *Serial) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if s.closed.Load() {
			return written, fmt.Errorf("console of %s: write %s: %w", s.board, s.device, ErrClosed)
		}
		if err := s.lostErr(); err != nil {
			return written, err
		}
		n, err := s.port.Write(p)
		written += n
		p = p[n:]
		if err != nil {
			if transient(err) {
				continue
			}
			if s.closed.Load() {
				return written, fmt.Errorf("console of %s: write %s: %w", s.board, s.device, ErrClosed)
			}
			return written, s.markLost("write", err)
		}
		if n == 0 {
			return written, fmt.Errorf("console of %s: write %s: %w", s.board, s.device, io.ErrShortWrite)
		}
	}
	return written, nil
}

// Close closes the device. It is idempotent and unblocks a pending Read,
// which then returns io.EOF.
func (s *Serial) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if err := s.port.Close(); err != nil {
			s.closeErr = fmt.Errorf("console of %s: close %s: %w", s.board, s.device, err)
		}
	})
	return s.closeErr
}

func (s *Serial) lostErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lost
}

func (s *Serial) markLost(op string, cause error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lost == nil {
		// go.bug.st/serial reports a zero-length read (hang-up, unplugged
		// adapter) as "port has been closed", which reads as if we closed it.
		var pe *serial.PortError
		if errors.As(cause, &pe) && pe.Code() == serial.PortClosed {
			cause = fmt.Errorf("device hung up or disconnected (%w)", cause)
		}
		s.lost = fmt.Errorf("console of %s: %s %s: %w: %w", s.board, op, s.device, ErrLost, cause)
	}
	return s.lost
}

func transient(err error) bool {
	return errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN)
}
