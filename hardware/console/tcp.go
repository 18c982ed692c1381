package console

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

const (
	defaultDialTimeout = 5 * time.Second
	defaultReconnect   = 10 * time.Second
	redialInterval     = 200 * time.Millisecond
)

// TCPOptions configures DialTCP.
type TCPOptions struct {
	// DialTimeout bounds each connection attempt (0 = 5s).
	DialTimeout time.Duration
	// Reconnect is how long to keep trying to reconnect after the
	// connection drops (0 = 10s).
	Reconnect time.Duration
	// Logger receives connection diagnostics (nil = discard).
	Logger *slog.Logger
}

// TCP is a board console reached over a raw TCP socket (e.g. ser2net in
// raw mode). When the connection drops (EOF, reset, write error) it
// transparently reconnects, retrying every 200ms for up to
// TCPOptions.Reconnect; Read and Write wait for the reconnect. If the
// console cannot be reached again in time it is lost: Read and Write return
// an error wrapping ErrLost that names the board and the address.
//
// Bytes the board sent while no connection was open are not seen (ser2net
// discards them), and, as always with TCP, bytes written just before the
// peer vanished may be lost without an error.
type TCP struct {
	board, addr string
	dialTimeout time.Duration
	reconnect   time.Duration
	log         *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the reconnect goroutine

	mu     sync.Mutex
	conn   net.Conn      // nil while reconnecting, lost or closed
	ready  chan struct{} // closed when a reconnect attempt finishes
	lost   error         // sticky, wraps ErrLost
	closed bool

	closeOnce sync.Once
	closeErr  error

	// Set by tests before any I/O; nil otherwise.
	dialHook func(ctx context.Context) (net.Conn, error) // replaces dialling addr
	trace    func(event string)                          // told of each step tests wait for; never under mu
}

// Steps of a TCP console that its tests wait for.
const (
	traceRead        = "read"         // a Read is about to wait on the connection
	traceDropped     = "dropped"      // the connection dropped; reconnecting
	traceRedialError = "redial error" // a reconnect attempt failed
	traceWaiting     = "waiting"      // a Read or Write waits for the reconnect
	traceReconnected = "reconnected"
	traceLost        = "lost"
)

func (t *TCP) step(event string) {
	if t.trace != nil {
		t.trace(event)
	}
}

// DialTCP connects to the console of board at addr ("host:port"). The first
// connection attempt is not retried: its failure is returned, naming the
// board ("console of rpi-01: dial tcp 10.0.0.5:3001: connect: connection
// refused").
func DialTCP(board, addr string, opts TCPOptions) (*TCP, error) {
	t := &TCP{
		board:       board,
		addr:        addr,
		dialTimeout: opts.DialTimeout,
		reconnect:   opts.Reconnect,
		log:         opts.Logger,
	}
	if t.dialTimeout <= 0 {
		t.dialTimeout = defaultDialTimeout
	}
	if t.reconnect <= 0 {
		t.reconnect = defaultReconnect
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.log = t.log.With("board", board, "addr", addr)
	t.ctx, t.cancel = context.WithCancel(context.Background())

	c, err := t.dial(t.ctx)
	if err != nil {
		t.cancel()
		return nil, fmt.Errorf("console of %s: %w", board, err)
	}
	t.conn = c
	return t, nil
}

// Board returns the board name given to DialTCP.
func (t *TCP) Board() string { return t.board }

// Addr returns the address given to DialTCP.
func (t *TCP) Addr() string { return t.addr }

func (t *TCP) dial(ctx context.Context) (net.Conn, error) {
	if t.dialHook != nil {
		return t.dialHook(ctx)
	}
	d := net.Dialer{Timeout: t.dialTimeout}
	return d.DialContext(ctx, "tcp", t.addr)
}

// Read reads console output, reconnecting transparently when the
// connection drops. It returns io.EOF after Close and an error wrapping
// ErrLost when the console could not be reached again within Reconnect.
func (t *TCP) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		c, err := t.current()
		if err != nil {
			if err == errTCPClosed {
				return 0, io.EOF
			}
			return 0, err
		}
		t.step(traceRead)
		n, err := c.Read(p)
		if err != nil {
			t.dropped(c, "read", err)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// Write sends p to the board. If the connection is being re-established it
// waits for that (at most Reconnect); if writing fails because the
// connection dropped, it reconnects and sends the remaining bytes on the new
// connection.
func (t *TCP) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		c, err := t.current()
		if err != nil {
			if err == errTCPClosed {
				err = fmt.Errorf("console of %s: write %s: %w", t.board, t.addr, ErrClosed)
			}
			return written, err
		}
		n, err := c.Write(p)
		written += n
		p = p[n:]
		if err != nil {
			t.dropped(c, "write", err)
		}
	}
	return written, nil
}

// Close closes the connection, stops any reconnect attempt and waits for
// it. Pending and later Reads return io.EOF. Close is idempotent.
func (t *TCP) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		c := t.conn
		t.conn = nil
		t.mu.Unlock()
		t.cancel()
		if c != nil {
			if err := c.Close(); err != nil {
				t.closeErr = fmt.Errorf("console of %s: close %s: %w", t.board, t.addr, err)
			}
		}
		t.wg.Wait()
	})
	return t.closeErr
}

// errTCPClosed is an internal marker returned by current after Close.
var errTCPClosed = fmt.Errorf("tcp console: %w", ErrClosed)

// current returns the live connection, waiting for a reconnect in progress.
func (t *TCP) current() (net.Conn, error) {
	t.mu.Lock()
	for {
		switch {
		case t.closed:
			t.mu.Unlock()
			return nil, errTCPClosed
		case t.lost != nil:
			err := t.lost
			t.mu.Unlock()
			return nil, err
		case t.conn != nil:
			c := t.conn
			t.mu.Unlock()
			return c, nil
		}
		ready := t.ready
		t.mu.Unlock()
		t.step(traceWaiting)
		select {
		case <-ready:
		case <-t.ctx.Done():
		}
		t.mu.Lock()
	}
}

// dropped retires c after an I/O error and starts reconnecting, unless c
// was already retired or the console is closed.
func (t *TCP) dropped(c net.Conn, op string, cause error) {
	t.mu.Lock()
	if t.closed || t.conn != c {
		t.mu.Unlock()
		return
	}
	_ = c.Close()
	t.conn = nil
	t.ready = make(chan struct{})
	t.log.Warn("console connection dropped; reconnecting", "op", op, "err", cause, "within", t.reconnect)
	t.wg.Add(1)
	ready := t.ready
	t.mu.Unlock()
	t.step(traceDropped)
	go t.redial(cause, ready)
}

func (t *TCP) redial(cause error, ready chan struct{}) {
	defer t.wg.Done()
	defer close(ready)
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.ctx, t.reconnect)
	defer cancel()
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	lastErr := cause
	for attempt := 1; ; attempt++ {
		c, err := t.dial(ctx)
		if err == nil {
			t.mu.Lock()
			if t.closed {
				t.mu.Unlock()
				_ = c.Close()
				return
			}
			t.conn = c
			t.log.Info("console reconnected", "attempts", attempt, "after", time.Since(start).Round(time.Millisecond))
			t.mu.Unlock()
			t.step(traceReconnected)
			return
		}
		t.step(traceRedialError)
		lastErr = err
		timer.Reset(redialInterval)
		select {
		case <-timer.C:
			continue
		case <-ctx.Done():
		}
		break
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.lost = fmt.Errorf("console of %s: tcp %s: %w: connection dropped (%v) and not re-established within %v: %v",
		t.board, t.addr, ErrLost, cause, t.reconnect, lastErr)
	t.log.Error("console lost", "err", t.lost)
	t.mu.Unlock()
	t.step(traceLost)
}
