package console

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// readUntil reads from r until the accumulated bytes contain want, or fails
// the test after timeout. The reading goroutine is left to be unblocked by
// the caller's cleanup (closing r) if it times out.
func readUntil(t *testing.T, r io.Reader, want string, timeout time.Duration) string {
	t.Helper()
	type res struct {
		got string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		var got []byte
		buf := make([]byte, 256)
		for {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if strings.Contains(string(got), want) {
				ch <- res{string(got), nil}
				return
			}
			if err != nil {
				ch <- res{string(got), err}
				return
			}
		}
	}()
	select {
	case r := <-ch:
		require.NoError(t, r.err, "reading for %q; got %q", want, r.got)
		return r.got
	case <-time.After(timeout):
		t.Fatalf("timed out after %v waiting for %q", timeout, want)
		return ""
	}
}

// readErr runs one Read in a goroutine and returns a channel with its error.
func readErr(r io.Reader) <-chan error {
	ch := make(chan error, 1)
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := r.Read(buf)
			if err != nil || n == 0 {
				ch <- err
				return
			}
		}
	}()
	return ch
}

func waitErr(t *testing.T, ch <-chan error, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(timeout):
		t.Fatalf("Read did not return within %v", timeout)
		return nil
	}
}

// tracer counts the trace events of a console under test, so that a test
// waits for a step to have happened instead of sleeping.
type tracer struct {
	mu     sync.Mutex
	counts map[string]int
	change chan struct{} // closed and replaced at every event
}

func newTracer() *tracer {
	return &tracer{counts: map[string]int{}, change: make(chan struct{})}
}

func (tr *tracer) add(event string) {
	tr.mu.Lock()
	tr.counts[event]++
	ch := tr.change
	tr.change = make(chan struct{})
	tr.mu.Unlock()
	close(ch)
}

func (tr *tracer) count(event string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.counts[event]
}

// wait waits until event has happened n times in all, or fails the test
// after timeout.
func (tr *tracer) wait(t *testing.T, event string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		tr.mu.Lock()
		c, ch := tr.counts[event], tr.change
		tr.mu.Unlock()
		if c >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%q happened %d times within %v, want %d", event, c, timeout, n)
		}
	}
}

// --- serial -----------------------------------------------------------------

func openPTY(t *testing.T) (master *os.File, s *Serial) {
	t.Helper()
	master, slave, err := pty.Open()
	require.NoError(t, err)
	s, err = OpenSerial("rpi-01", slave.Name(), Line{Baud: 115200})
	if err != nil {
		master.Close()
		slave.Close()
		t.Fatal(err)
	}
	// The harness's port has its own descriptor; ours is no longer needed.
	require.NoError(t, slave.Close())
	t.Cleanup(func() {
		_ = s.Close()
		_ = master.Close()
	})
	return master, s
}

func TestSerialReadWrite(t *testing.T) {
	master, s := openPTY(t)

	// board -> harness
	_, err := master.Write([]byte("U-Boot 2024.01\r\nlogin: "))
	require.NoError(t, err)
	got := readUntil(t, s, "login: ", 2*time.Second)
	assert.Equal(t, "U-Boot 2024.01\r\nlogin: ", got, "raw mode: bytes pass unmodified")

	// harness -> board
	n, err := s.Write([]byte("root\n"))
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	assert.Equal(t, "root\n", readUntil(t, master, "root\n", 2*time.Second))

	// A larger transfer, both ways.
	big := strings.Repeat("0123456789abcdef", 256) + "END"
	go func() { _, _ = master.Write([]byte(big)) }()
	assert.Equal(t, big, readUntil(t, s, "END", 5*time.Second))
}

func TestSerialMissingDevice(t *testing.T) {
	_, err := OpenSerial("rpi-01", "/dev/ttyUSB-troupe-missing", Line{Baud: 115200})
	require.Error(t, err)
	assert.Equal(t, "console of rpi-01: open /dev/ttyUSB-troupe-missing: no such file or directory", err.Error())
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

func TestSerialCloseUnblocksRead(t *testing.T) {
	_, s := openPTY(t)
	tr := newTracer()
	s.trace = tr.add
	ch := readErr(s)
	tr.wait(t, tracePoll, 3, 5*time.Second) // Read blocks across a few poll timeouts
	select {
	case err := <-ch:
		t.Fatalf("Read returned early: %v", err)
	default:
	}
	start := time.Now()
	require.NoError(t, s.Close())
	err := waitErr(t, ch, time.Second)
	assert.ErrorIs(t, err, io.EOF)
	assert.Less(t, time.Since(start), time.Second)

	// Idempotent; further I/O reports the close.
	require.NoError(t, s.Close())
	_, err = s.Read(make([]byte, 8))
	assert.ErrorIs(t, err, io.EOF)
	_, err = s.Write([]byte("x"))
	assert.ErrorIs(t, err, ErrClosed)
}

// On Linux, closing the pty master hangs up the slave: a pending Read on the
// slave wakes up and the read fails (EIO, or a zero-length read that
// go.bug.st/serial reports as "port has been closed"), like an unplugged
// USB adapter. Either way Read reports ErrLost.
func TestSerialMasterClosedIsLost(t *testing.T) {
	master, s := openPTY(t)
	_, err := master.Write([]byte("hello"))
	require.NoError(t, err)
	readUntil(t, s, "hello", 2*time.Second)

	tr := newTracer()
	s.trace = tr.add
	ch := readErr(s)
	tr.wait(t, tracePoll, 1, 5*time.Second) // the Read is pending
	require.NoError(t, master.Close())
	err = waitErr(t, ch, 2*time.Second)
	require.ErrorIs(t, err, ErrLost)
	assert.Contains(t, err.Error(), "rpi-01")
	t.Logf("lost error: %v", err)

	// Sticky, for writes too.
	_, err = s.Read(make([]byte, 8))
	assert.ErrorIs(t, err, ErrLost)
	_, err = s.Write([]byte("x"))
	assert.ErrorIs(t, err, ErrLost)
	assert.NoError(t, s.Close())
}

// --- TCP --------------------------------------------------------------------

// server is a loopback console server that hands accepted connections to
// the test.
type server struct {
	ln    net.Listener
	conns chan net.Conn
	wg    sync.WaitGroup
	mu    sync.Mutex
	all   []net.Conn
}

func newServer(t *testing.T) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &server{ln: ln, conns: make(chan net.Conn, 16)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.all = append(s.all, c)
			s.mu.Unlock()
			s.conns <- c
		}
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

// stop closes the listener and every accepted connection.
func (s *server) stop() {
	_ = s.ln.Close()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.all {
		_ = c.Close()
	}
}

func (s *server) accept(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-s.conns:
		return c
	case <-time.After(3 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

func dialTest(t *testing.T, addr string, reconnect time.Duration) *TCP {
	t.Helper()
	c, err := DialTCP("rpi-02", addr, TCPOptions{DialTimeout: time.Second, Reconnect: reconnect})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// traced is dialTest with a tracer watching the console.
func traced(t *testing.T, addr string, reconnect time.Duration) (*TCP, *tracer) {
	t.Helper()
	c := dialTest(t, addr, reconnect)
	tr := newTracer()
	c.trace = tr.add
	return c, tr
}

// gate makes c's reconnect attempts fail while it is closed; open, they
// dial c's address as usual.
type gate struct {
	mu   sync.Mutex
	open bool
}

func (g *gate) set(open bool) {
	g.mu.Lock()
	g.open = open
	g.mu.Unlock()
}

func (g *gate) install(c *TCP) {
	c.dialHook = func(ctx context.Context) (net.Conn, error) {
		g.mu.Lock()
		open := g.open
		g.mu.Unlock()
		if !open {
			return nil, errors.New("connection refused (gate closed)")
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", c.addr)
	}
}

func TestTCPReadWrite(t *testing.T) {
	srv := newServer(t)
	c := dialTest(t, srv.addr(), 0)
	sc := srv.accept(t)

	_, err := sc.Write([]byte("Welcome\r\n# "))
	require.NoError(t, err)
	assert.Equal(t, "Welcome\r\n# ", readUntil(t, c, "# ", 2*time.Second))

	_, err = c.Write([]byte("uname -a\n"))
	require.NoError(t, err)
	assert.Equal(t, "uname -a\n", readUntil(t, sc, "\n", 2*time.Second))
}

func TestTCPDialError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	_, err = DialTCP("rpi-02", addr, TCPOptions{DialTimeout: time.Second})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "console of rpi-02")
	assert.Contains(t, err.Error(), addr)
}

func TestTCPReconnect(t *testing.T) {
	srv := newServer(t)
	c, tr := traced(t, srv.addr(), 3*time.Second)
	sc := srv.accept(t)

	_, err := sc.Write([]byte("before\n"))
	require.NoError(t, err)
	assert.Equal(t, "before\n", readUntil(t, c, "before\n", 2*time.Second))

	// The reader is blocked when the server drops the connection.
	type res struct {
		got string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		var got []byte
		buf := make([]byte, 3) // small reads: exercise reading across calls
		for !strings.Contains(string(got), "END") {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				ch <- res{string(got), err}
				return
			}
		}
		ch <- res{string(got), nil}
	}()
	tr.wait(t, traceRead, 1, 2*time.Second)
	require.NoError(t, sc.Close())

	// The console redials; everything the server sends on the new
	// connection arrives, in order.
	sc2 := srv.accept(t)
	want := "after reconnect: " + strings.Repeat("x", 10000) + " END"
	_, err = sc2.Write([]byte(want))
	require.NoError(t, err)
	select {
	case r := <-ch:
		require.NoError(t, r.err)
		assert.Equal(t, want, r.got)
	case <-time.After(3 * time.Second):
		t.Fatal("reader did not continue on the new connection")
	}
	assert.Equal(t, 1, tr.count(traceDropped))
	assert.Equal(t, 1, tr.count(traceReconnected))

	// Writes go to the new connection.
	_, err = c.Write([]byte("ls\n"))
	require.NoError(t, err)
	assert.Equal(t, "ls\n", readUntil(t, sc2, "\n", 2*time.Second))
}

func TestTCPWriteWaitsForReconnect(t *testing.T) {
	srv := newServer(t)
	c, tr := traced(t, srv.addr(), 3*time.Second)
	var g gate
	g.install(c)
	sc := srv.accept(t)
	rd := readErr(c) // drives the reconnect on EOF

	// Drop the connection while new ones are refused.
	require.NoError(t, sc.Close())
	tr.wait(t, traceRedialError, 1, 3*time.Second) // reconnect is failing now

	wr := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte("hello\n"))
		wr <- err
	}()
	tr.wait(t, traceWaiting, 1, 3*time.Second) // the writer waits for the reconnect
	select {
	case err := <-wr:
		t.Fatalf("Write returned before the reconnect: %v", err)
	default:
	}

	g.set(true)
	sc2 := srv.accept(t)
	select {
	case err := <-wr:
		require.NoError(t, err)
	case <-time.After(3 * time.Second):
		t.Fatal("Write did not complete after reconnect")
	}
	assert.Equal(t, "hello\n", readUntil(t, sc2, "\n", 2*time.Second))
	assert.Equal(t, 1, tr.count(traceReconnected))

	require.NoError(t, c.Close())
	assert.ErrorIs(t, waitErr(t, rd, time.Second), io.EOF)
}

func TestTCPServerGoneIsLost(t *testing.T) {
	srv := newServer(t)
	const reconnect = 500 * time.Millisecond
	c, tr := traced(t, srv.addr(), reconnect)
	srv.accept(t)

	ch := readErr(c)
	tr.wait(t, traceRead, 1, 2*time.Second)
	start := time.Now()
	srv.stop() // listener and connection gone for good

	err := waitErr(t, ch, reconnect+time.Second)
	elapsed := time.Since(start)
	require.ErrorIs(t, err, ErrLost)
	assert.Contains(t, err.Error(), "rpi-02")
	assert.Contains(t, err.Error(), srv.addr())
	assert.GreaterOrEqual(t, elapsed, reconnect-50*time.Millisecond, "kept trying for the reconnect window")
	assert.GreaterOrEqual(t, tr.count(traceRedialError), 2, "redialled more than once")
	assert.Equal(t, 1, tr.count(traceLost))
	t.Logf("lost after %v: %v", elapsed, err)

	// Sticky.
	_, err = c.Read(make([]byte, 8))
	assert.ErrorIs(t, err, ErrLost)
	_, err = c.Write([]byte("x"))
	assert.ErrorIs(t, err, ErrLost)
}

func TestTCPCloseDuringReconnect(t *testing.T) {
	srv := newServer(t)
	c, tr := traced(t, srv.addr(), 10*time.Second)
	srv.accept(t)

	rd := readErr(c)
	wr := make(chan error, 1)
	srv.stop()
	// The reader saw EOF and redialling fails: the console is reconnecting.
	tr.wait(t, traceRedialError, 1, 3*time.Second)
	go func() {
		_, err := c.Write([]byte("x"))
		wr <- err
	}()
	// The reader and the writer both wait for the reconnect.
	tr.wait(t, traceWaiting, 2, 3*time.Second)

	start := time.Now()
	require.NoError(t, c.Close())
	assert.Less(t, time.Since(start), 500*time.Millisecond, "Close returns promptly")
	assert.ErrorIs(t, waitErr(t, rd, time.Second), io.EOF)
	select {
	case err := <-wr:
		assert.ErrorIs(t, err, ErrClosed)
	case <-time.After(time.Second):
		t.Fatal("Write did not return after Close")
	}
	require.NoError(t, c.Close())
	assert.Zero(t, tr.count(traceReconnected))
	assert.Zero(t, tr.count(traceLost))
}

func TestTCPCloseUnblocksRead(t *testing.T) {
	srv := newServer(t)
	c, tr := traced(t, srv.addr(), 0)
	srv.accept(t)
	rd := readErr(c)
	tr.wait(t, traceRead, 1, 2*time.Second)
	require.NoError(t, c.Close())
	assert.ErrorIs(t, waitErr(t, rd, time.Second), io.EOF)
}
