package sim

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
	"time"
)

// Faults configures a board's misbehaviour, so that tests can check how the
// harness reacts to the failures of a real lab. Only the sim backend knows
// about them: the harness sees their effects on the console, the power
// switch and Deploy, as it would on a real board.
//
// Set them before power-on (SetFaults) or at any time; the zero value is a
// healthy board. Settings persist across power cycles. Boot faults are read
// when the boot starts; console faults apply from the next byte read.
type Faults struct {
	BootHang      bool          // boot stops after "Starting kernel ..." and prints nothing more (until power off)
	SlowBoot      time.Duration // extra delay before the login prompt
	NoLoginPrompt bool          // the kernel log completes but no login prompt ever appears
	PanicAtBoot   bool          // the kernel log ends in "Kernel panic - not syncing: VFS: Unable to mount root fs" and the board hangs
	DeployFail    bool          // Deploy returns an error ("deploy to <board>: flash write failed (injected)")
	PowerFail     bool          // On and Off return errors ("power <on|off> <board>: PDU did not answer (injected)") and change nothing
	PowerLie      bool          // On returns nil and State reports on, but the board stays off: nothing is printed, nothing answers

	// Console faults, applied to the bytes the harness reads from Console().
	// NoiseRate: garbage bytes per second (accrued over time, at most
	// maxNoiseBurst pending), inserted only at line starts (just after a
	// '\n'); the bytes are ASCII (printable and control) except '\n', '<',
	// '>' and ESC (an ESC would make an ANSI stripper swallow the real text
	// that follows). 0 = none.
	NoiseRate float64
	DropProb  float64 // probability that each byte the harness would read is lost; 0 = none
	Baud      int     // bytes reach the harness at most Baud/10 per second; 0 = full speed

	// Seed drives every random choice above. Each SetFaults reseeds: the
	// same Seed and the same output give the same drop decisions and the
	// same sequence of noise bytes (the number of noise bytes inserted at a
	// line start depends on the time elapsed, as NoiseRate is per second).
	Seed uint64
}

// ErrInjected is wrapped by the errors of injected faults (for tests; the
// harness must not look for it).
var ErrInjected = errors.New("injected fault")

type injectedError struct{ msg string }

func (e *injectedError) Error() string        { return e.msg }
func (e *injectedError) Is(target error) bool { return target == ErrInjected }

func injected(msg string) error { return &injectedError{msg: msg} }

const (
	maxNoiseBurst = 64 // noise bytes pending at most (a long silence does not pile up)
	dropStream    = 0x64726f70
	noiseStream   = 0x6e6f6973
	panicText     = "\r\n[  123.456789] Kernel panic - not syncing: Fatal exception\r\n"
)

// SetFaults replaces the board's fault settings (see Faults) and reseeds
// the console's random generators from f.Seed.
func (b *Board) SetFaults(f Faults) {
	b.fmu.Lock()
	b.faults = f
	b.fmu.Unlock()
	b.con.setFaults(f)
	b.log.Info("faults set", "faults", f)
}

func (b *Board) getFaults() Faults {
	b.fmu.Lock()
	defer b.fmu.Unlock()
	return b.faults
}

// PowerLoss cuts the board's power at once: the shell and everything it
// started are killed, the console goes silent and State reports off. It
// bypasses the PDU, so PowerFail does not prevent it.
func (b *Board) PowerLoss() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.log.Info("fault: power loss")
	if err := b.offLocked(context.Background()); err != nil {
		b.log.Error("power loss", "err", err)
	}
}

// KernelPanic makes the running kernel panic: it prints
// "Kernel panic - not syncing: Fatal exception" on the console, kills the
// shell and everything it started and hangs (no new login prompt, no echo)
// until power off. State stays on. No-op if the board is off or has
// panicked already.
func (b *Board) KernelPanic() {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sess
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.panicked {
		s.mu.Unlock()
		return
	}
	s.panicked = true
	s.stopped = true // no new shell
	s.mu.Unlock()
	b.log.Info("fault: kernel panic")
	s.runCancel() // the run goroutine prints the panic and hangs
	if err := b.killShells(s, time.Now().Add(offTimeout)); err != nil {
		b.log.Error("kernel panic: kill processes", "err", err)
	}
	t := time.NewTimer(offTimeout)
	defer t.Stop()
	select {
	case <-s.hung:
	case <-s.done:
	case <-t.C:
		b.log.Error("kernel panic: board did not hang in time")
	}
}

// ShellHang makes the shell and everything it started stop answering
// (SIGSTOP); a later login gets no shell either. Power off still kills
// them. No-op if the board is off.
func (b *Board) ShellHang() {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sess
	if s == nil {
		return
	}
	s.mu.Lock()
	s.shellHung = true
	shells := s.shellsLocked()
	s.mu.Unlock()
	b.log.Info("fault: shell hang")
	if b.o.Unsandboxed {
		signalSession(s.token, shells, syscall.SIGSTOP)
		return
	}
	for pid := range shells {
		stopSandbox(pid)
	}
}

// Disconnect cuts the console link for d (d < 0: until power off or
// Close): the harness's reads see nothing, its writes are dropped and the
// output the board produces meanwhile is lost. It replaces a disconnect in
// progress. Power off reconnects.
func (b *Board) Disconnect(d time.Duration) {
	b.log.Info("fault: console disconnect", "for", d)
	b.con.disconnect(d)
}

// signalSession sends sig to every process of one power-on (see
// killSession for how they are found). It repeats until a pass finds no
// new process, so children forked meanwhile are caught too.
func signalSession(token string, shells map[int]bool, sig syscall.Signal) {
	self := os.Getpid()
	needle := []byte("\x00" + tokenVar + "=" + token + "\x00")
	done := map[int]bool{}
	for pass := 0; pass < 20; pass++ {
		found := false
		for _, p := range listProcs() {
			if p.pid == self || done[p.pid] || p.state == 'Z' || p.state == 'X' {
				continue
			}
			if !shells[p.pid] && !shells[p.sid] && !shells[p.pgid] && !environHas(p.pid, needle) {
				continue
			}
			done[p.pid] = true
			found = true
			_ = syscall.Kill(p.pid, sig)
		}
		if !found && pass > 0 {
			return
		}
	}
}

// faultConn is the harness's side of the console: it passes bytes through
// from src, applying the console faults (disconnect, drop, noise, baud) to
// what the harness reads, and dropping its writes while disconnected.
type faultConn struct {
	src       io.ReadWriteCloser
	closing   chan struct{}
	closeOnce sync.Once

	rmu      sync.Mutex // serialises Reads; guards the fields below
	raw      []byte
	out      []byte // processed bytes not yet delivered
	lineFree time.Time
	rerr     error

	mu          sync.Mutex
	noiseRate   float64
	dropProb    float64
	baud        int
	dropRNG     *rand.Rand
	noiseRNG    *rand.Rand
	noiseAcc    float64
	noiseAt     time.Time
	discUntil   time.Time
	discForever bool
	lost        int // bytes of the board's output lost to a disconnect
}

func newFaultConn(src io.ReadWriteCloser) *faultConn {
	return &faultConn{src: src, closing: make(chan struct{}), raw: make([]byte, 4096)}
}

func (c *faultConn) setFaults(f Faults) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noiseRate = max(f.NoiseRate, 0)
	c.dropProb = min(max(f.DropProb, 0), 1)
	c.baud = max(f.Baud, 0)
	c.dropRNG = rand.New(rand.NewPCG(f.Seed, dropStream))
	c.noiseRNG = rand.New(rand.NewPCG(f.Seed, noiseStream))
	c.noiseAcc = 0
	c.noiseAt = time.Now()
}

func (c *faultConn) disconnect(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.discForever = d < 0
	c.discUntil = time.Now().Add(d)
}

func (c *faultConn) reconnect() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.discForever = false
	c.discUntil = time.Time{}
}

func (c *faultConn) disconnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.disconnectedLocked(time.Now())
}

// lostBytes is how many bytes of the board's output a disconnect lost.
func (c *faultConn) lostBytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

func (c *faultConn) disconnectedLocked(now time.Time) bool {
	return c.discForever || now.Before(c.discUntil)
}

// Read returns the next bytes of the console as the harness sees them.
func (c *faultConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		select {
		case <-c.closing:
			return 0, os.ErrClosed
		default:
		}
		c.mu.Lock()
		if c.disconnectedLocked(time.Now()) {
			c.out = c.out[:0]
		}
		baud := c.baud
		c.mu.Unlock()
		if len(c.out) > 0 {
			n := min(len(p), len(c.out))
			if baud > 0 {
				// Deliver at most 10 ms worth of bytes, once they have
				// crossed the line.
				n = min(n, max(1, baud/1000))
				now := time.Now()
				if c.lineFree.Before(now) {
					c.lineFree = now
				}
				c.lineFree = c.lineFree.Add(time.Duration(n) * 10 * time.Second / time.Duration(baud))
				if err := c.sleepUntil(c.lineFree); err != nil {
					return 0, err
				}
				if c.disconnected() {
					c.out = c.out[:0]
					continue
				}
			}
			copy(p, c.out[:n])
			c.out = c.out[:copy(c.out, c.out[n:])]
			return n, nil
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		n, err := c.src.Read(c.raw)
		if n > 0 {
			c.process(c.raw[:n])
		}
		if err != nil {
			c.rerr = err
		}
	}
}

// process applies disconnect, drop and noise to bytes read from src and
// queues the result in out.
func (c *faultConn) process(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.disconnectedLocked(now) {
		c.lost += len(b)
		return
	}
	if c.noiseRate > 0 {
		c.noiseAcc = min(c.noiseAcc+c.noiseRate*now.Sub(c.noiseAt).Seconds(), maxNoiseBurst)
	}
	c.noiseAt = now
	for _, x := range b {
		if c.dropProb > 0 && c.dropRNG.Float64() < c.dropProb {
			continue
		}
		c.out = append(c.out, x)
		if x == '\n' && c.noiseAcc >= 1 {
			k := int(c.noiseAcc)
			c.noiseAcc -= float64(k)
			for range k {
				c.out = append(c.out, noiseByte(c.noiseRNG))
			}
		}
	}
}

// noiseByte draws a garbage byte: ASCII except '\n', '<', '>' and ESC.
func noiseByte(r *rand.Rand) byte {
	for {
		x := byte(r.IntN(128))
		switch x {
		case '\n', '<', '>', 0x1b:
			continue
		}
		return x
	}
}

func (c *faultConn) sleepUntil(t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-c.closing:
		return os.ErrClosed
	}
}

// Write sends p to the board, or drops it while disconnected.
func (c *faultConn) Write(p []byte) (int, error) {
	select {
	case <-c.closing:
		return 0, os.ErrClosed
	default:
	}
	if c.disconnected() {
		return len(p), nil
	}
	return c.src.Write(p)
}

// Close closes src and unblocks a pending Read.
func (c *faultConn) Close() error {
	c.closeOnce.Do(func() { close(c.closing) })
	return c.src.Close()
}
