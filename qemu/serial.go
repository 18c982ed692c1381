package qemu

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// serial is a QEMU board's console: the guest's first serial port, which
// QEMU connects to its stdin and stdout. It outlives power cycles: each
// QEMU process writes its output into the same stream, and what is typed
// goes to the process that runs now (nowhere while the board is off, as on
// a real UART).
type serial struct {
	r *io.PipeReader
	w *io.PipeWriter // QEMU's stdout (and stderr) is copied here

	mu sync.Mutex
	in io.WriteCloser // the running QEMU's stdin; nil while off
}

func newSerial() *serial {
	r, w := io.Pipe()
	return &serial{r: r, w: w}
}

func (s *serial) Read(p []byte) (int, error) { return s.r.Read(p) }

func (s *serial) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.in == nil {
		return len(p), nil
	}
	n, err := s.in.Write(p)
	if err != nil {
		return n, fmt.Errorf("serial console: %w", err)
	}
	return n, nil
}

// attach connects the console to a new QEMU process's stdin.
func (s *serial) attach(in io.WriteCloser) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.in = in
}

// detach disconnects (and closes) the stdin of the QEMU process that stops.
func (s *serial) detach() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.in != nil {
		_ = s.in.Close()
		s.in = nil
	}
}

// Close ends the stream: readers get EOF, QEMU's output copier an error.
func (s *serial) Close() error {
	s.detach()
	return errors.Join(s.w.Close(), s.r.Close())
}
