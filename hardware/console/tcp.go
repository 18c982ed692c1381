package console

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"
)

const (
	defaultDialTimeout = 5 * time.Second
	defaultReconnect   = 10 * time.Second
	defaultRefusals    = 3
	redialInterval     = 200 * time.Millisecond
	// shortLived: a connection the peer closes sooner than this after it
	// was made was refused, whatever it said.
	shortLived = time.Second
	// refusalKept bounds what is kept of a connection's first bytes to
	// tell a refusal message from board output.
	refusalKept = 512
)

// TCP console modes.
const (
	ModeRaw     = "raw"     // bytes as they are (ser2net "tcp")
	ModeTelnet  = "telnet"  // telnet protocol (ser2net "telnet")
	ModeRFC2217 = "rfc2217" // telnet with COM-PORT-OPTION: the line is set over the network
)

// Modes are the TCP console modes.
var Modes = []string{ModeRaw, ModeTelnet, ModeRFC2217}

// TCPOptions configures DialTCP.
type TCPOptions struct {
	// DialTimeout bounds each connection attempt (0 = 5s).
	DialTimeout time.Duration
	// Reconnect is how long to keep trying to reconnect after the
	// connection drops (0 = 10s).
	Reconnect time.Duration
	// Refusals is how many connections in a row the peer may refuse
	// before the console is lost at once (0 = 3): a peer that accepts and
	// closes right away, or says only what a console server says when it
	// cannot open the port ("Device open failure", "port in use").
	Refusals int
	// Mode is ModeRaw (""), ModeTelnet or ModeRFC2217.
	Mode string
	// Line is the serial line to set on the remote port (ModeRFC2217).
	Line Line
	// Logger receives connection diagnostics (nil = discard).
	Logger *slog.Logger
}

// TCP is a board console reached over a TCP socket: raw (ser2net's "tcp"
// accepter), telnet, or telnet with RFC 2217 (the baud rate, parity, stop
// bits and flow control of the remote port set over the network). When the
// connection drops (EOF, reset, write error) it transparently reconnects,
// retrying every 200ms; Read and Write wait for the reconnect.
//
// The console is lost, and Read and Write return an error wrapping ErrLost
// that names the board and the address, when no connection the peer keeps
// open comes back within TCPOptions.Reconnect of the drop, or at once when
// the peer refused TCPOptions.Refusals connections in a row: closed them
// within a second of accepting them without a word, or said nothing but a
// refusal (ser2net
// answers "Device open failure" and closes when the serial adapter behind
// it is gone).
//
// Bytes the board sent while no connection was open are not seen (ser2net
// discards them), and, as always with TCP, bytes written just before the
// peer vanished may be lost without an error.
type TCP struct {
	board, addr string
	dialTimeout time.Duration
	reconnect   time.Duration
	refusals    int
	mode        string
	line        Line
	log         *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the reconnect goroutine

	mu      sync.Mutex
	conn    *link         // nil while reconnecting, lost or closed
	ready   chan struct{} // closed when a reconnect attempt finishes
	lost    error         // sticky, wraps ErrLost
	closed  bool
	outage  time.Time // when the console last lost a connection the peer kept; zero while none
	refused int       // connections refused in a row since then
	said    string    // what the last refused connection said

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

// link is one connection.
type link struct {
	net.Conn
	since time.Time
	tn    *telnet // nil in raw mode

	mu    sync.Mutex
	first []byte // the first bytes of data received, up to refusalKept
	noted bool   // the confirmed baud rate was logged
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
		refusals:    opts.Refusals,
		mode:        opts.Mode,
		line:        opts.Line,
		log:         opts.Logger,
	}
	if t.dialTimeout <= 0 {
		t.dialTimeout = defaultDialTimeout
	}
	if t.reconnect <= 0 {
		t.reconnect = defaultReconnect
	}
	if t.refusals <= 0 {
		t.refusals = defaultRefusals
	}
	switch t.mode {
	case "":
		t.mode = ModeRaw
	case ModeRaw, ModeTelnet:
	case ModeRFC2217:
		if err := t.line.check(); err != nil {
			return nil, fmt.Errorf("console of %s: %s: %w", board, addr, err)
		}
	default:
		return nil, fmt.Errorf("console of %s: %s: unknown mode %q (want one of %s)", board, addr, t.mode, strings.Join(Modes, ", "))
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

// dial makes a connection and, in the telnet modes, opens the negotiation.
func (t *TCP) dial(ctx context.Context) (*link, error) {
	var c net.Conn
	var err error
	if t.dialHook != nil {
		c, err = t.dialHook(ctx)
	} else {
		d := net.Dialer{Timeout: t.dialTimeout}
		c, err = d.DialContext(ctx, "tcp", t.addr)
	}
	if err != nil {
		return nil, err
	}
	l := &link{Conn: c, since: time.Now()}
	if t.mode != ModeRaw {
		l.tn = newTelnet(t.mode == ModeRFC2217, t.line)
		if _, err := c.Write(l.tn.start()); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	return l, nil
}

// Read reads console output, reconnecting transparently when the
// connection drops. It returns io.EOF after Close and an error wrapping
// ErrLost once the console is lost.
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
		if c.tn != nil && n > 0 {
			var reply []byte
			var data []byte
			data, reply = c.tn.decode(p[:0], nil, p[:n])
			n = len(data)
			if len(reply) > 0 {
				if _, werr := c.Write(reply); werr != nil && err == nil {
					err = werr
				}
			}
			t.noteBaud(c)
		}
		if n > 0 {
			c.record(p[:n])
		}
		if err != nil {
			t.dropped(c, "read", err)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// record keeps the first bytes a connection delivered.
func (l *link) record(p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := refusalKept - len(l.first); room > 0 {
		l.first = append(l.first, p[:min(room, len(p))]...)
	}
}

// refusal tells whether the peer refused the connection: it closed it
// right after accepting it without a word, or it said nothing but a
// refusal. said is what it said, trimmed.
func (l *link) refusal(now time.Time) (refused bool, said string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	said = strings.TrimSpace(string(l.first))
	if len(l.first) == 0 {
		return now.Sub(l.since) < shortLived, said
	}
	return isRefusal(l.first), said
}

// refusalLine matches what console servers say when they cannot serve a
// port: ser2net's "Device open failure: ...", "Port already in use", and
// the like.
var refusalLine = regexp.MustCompile(`(?i)^(device open failure|port (is )?(already )?in use|port busy|connection refused|access denied|permission denied)`)

// isRefusal: every non-empty line of what a connection said is a refusal.
func isRefusal(said []byte) bool {
	some := false
	for line := range strings.Lines(string(said)) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if !refusalLine.MatchString(line) {
			return false
		}
		some = true
	}
	return some
}

// noteBaud logs the baud rate an RFC 2217 server confirmed, once.
func (t *TCP) noteBaud(c *link) {
	if c.tn == nil || !c.tn.comPort {
		return
	}
	baud, ok := c.tn.ackedBaud()
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.noted {
		return
	}
	c.noted = true
	if want := t.line.Baud; baud != want {
		t.log.Warn("rfc2217: the server set another baud rate", "want", want, "got", baud)
		return
	}
	t.log.Info("rfc2217: line set", "line", t.line.String())
}

// Write sends p to the board. If the connection is being re-established it
// waits for that; if writing fails because the connection dropped, it
// reconnects and sends the remaining bytes on the new connection.
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
		if c.tn != nil {
			// Telnet escaping: all of p or nothing of it goes out.
			if _, err := c.Write(c.tn.encode(nil, p)); err != nil {
				t.dropped(c, "write", err)
				continue
			}
			return written + len(p), nil
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
func (t *TCP) current() (*link, error) {
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
// was already retired or the console is closed. A refused connection
// counts toward the refusals that lose the console at once; one the peer
// kept ends the previous outage.
func (t *TCP) dropped(c *link, op string, cause error) {
	now := time.Now()
	refused, said := c.refusal(now)
	t.mu.Lock()
	if t.closed || t.conn != c {
		t.mu.Unlock()
		return
	}
	t.conn = nil
	if !refused || t.outage.IsZero() {
		t.outage, t.refused = now, 0
	}
	if refused {
		t.refused++
		t.said = said
	}
	if t.refused >= t.refusals {
		t.lost = fmt.Errorf("console of %s: tcp %s: %w: the peer refused %d connections in a row%s",
			t.board, t.addr, ErrLost, t.refused, t.saidLocked())
		lost := t.lost
		t.mu.Unlock()
		_ = c.Close()
		t.log.Error("console lost", "err", lost)
		t.step(traceLost)
		return
	}
	t.ready = make(chan struct{})
	ready := t.ready
	deadline := t.outage.Add(t.reconnect)
	t.wg.Add(1)
	t.mu.Unlock()
	_ = c.Close()
	t.log.Warn("console connection dropped; reconnecting", "op", op, "err", cause, "refused", refused, "until", deadline)
	t.step(traceDropped)
	go t.redial(cause, refused, deadline, ready)
}

func (t *TCP) saidLocked() string {
	if t.said == "" {
		return " (each closed at once)"
	}
	s := t.said
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return fmt.Sprintf(" (the last one said %q)", s)
}

func (t *TCP) redial(cause error, refused bool, deadline time.Time, ready chan struct{}) {
	defer t.wg.Done()
	defer close(ready)
	start := time.Now()
	ctx, cancel := context.WithDeadline(t.ctx, deadline)
	defer cancel()
	timer := time.NewTimer(0)
	defer timer.Stop()
	if refused {
		// Do not hammer a peer that just refused.
		timer.Reset(redialInterval)
	}
	lastErr := cause
	for attempt := 1; ; attempt++ {
		select {
		case <-timer.C:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		c, err := t.dial(ctx)
		if err == nil {
			t.mu.Lock()
			if t.closed {
				t.mu.Unlock()
				_ = c.Close()
				return
			}
			t.conn = c
			t.mu.Unlock()
			t.log.Info("console reconnected", "attempts", attempt, "after", time.Since(start).Round(time.Millisecond))
			t.step(traceReconnected)
			return
		}
		t.step(traceRedialError)
		lastErr = err
		timer.Reset(redialInterval)
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.lost = fmt.Errorf("console of %s: tcp %s: %w: connection dropped (%v) and not re-established within %v: %v",
		t.board, t.addr, ErrLost, cause, t.reconnect, lastErr)
	if t.refused > 0 {
		t.lost = fmt.Errorf("%w; %d refused connections before%s", t.lost, t.refused, t.saidLocked())
	}
	lost := t.lost
	t.mu.Unlock()
	t.log.Error("console lost", "err", lost)
	t.step(traceLost)
}

// ConfirmedBaud is the baud rate the RFC 2217 server said it set on the
// current connection; ok is false in the other modes, while reconnecting,
// and until the server answered.
func (t *TCP) ConfirmedBaud() (baud int, ok bool) {
	t.mu.Lock()
	c := t.conn
	t.mu.Unlock()
	if c == nil || c.tn == nil || !c.tn.comPort {
		return 0, false
	}
	return c.tn.ackedBaud()
}
