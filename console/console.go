// Package console is an expect engine over a board's console byte stream.
// It is used for simulated boards and for real serial or TCP consoles alike.
package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sync"
	"time"
)

// KernelPanic matches a kernel panic's line on a console, up to and with
// its end: a match on the line's first bytes alone would quote a reason cut
// short ("Kernel panic - not syncing:") when the rest had not yet arrived.
const KernelPanic = `Kernel panic - not syncing[^\n]*\n`

// ErrClosed is wrapped by Expect errors once the stream has ended and by
// Send after Close.
var ErrClosed = errors.New("console closed")

const (
	maxBuffer   = 64 << 10 // unmatched text kept for Expect
	tailLen     = 200      // unmatched text quoted in timeout errors
	readSize    = 4096
	closeWaitTO = 5 * time.Second
)

// Options configures a Console.
type Options struct {
	// Raw receives every byte read, unmodified (nil = none).
	Raw io.Writer
	// OnLine is called from the reader goroutine, in order, with each
	// complete line (ANSI sequences stripped, '\r' removed, no '\n'),
	// before that text becomes visible to Expect.
	OnLine func(line string)
	// Logger receives diagnostics (nil = discard).
	Logger *slog.Logger
}

// Console reads a byte stream in a background goroutine and lets callers
// wait for patterns in it.
type Console struct {
	rwc    io.ReadWriteCloser
	opts   Options
	log    *slog.Logger
	sendMu sync.Mutex

	mu      sync.Mutex
	buf     []byte        // unmatched, stripped text
	changed chan struct{} // closed and replaced whenever buf or ended changes
	ended   bool          // reader goroutine finished
	readErr error         // why it finished (nil after Close or EOF)
	closing bool

	closeOnce sync.Once
	closeErr  error
	done      chan struct{}
}

// New starts reading rwc in a goroutine and returns the Console.
func New(rwc io.ReadWriteCloser, o Options) *Console {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Console{
		rwc:     rwc,
		opts:    o,
		log:     log,
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go c.readLoop()
	return c
}

func (c *Console) readLoop() {
	defer close(c.done)
	var (
		st      stripper
		line    []byte // stripped text of the current incomplete line
		clean   []byte
		rawErrd bool
	)
	p := make([]byte, readSize)
	for {
		n, err := c.rwc.Read(p)
		if n > 0 {
			if c.opts.Raw != nil && !rawErrd {
				if _, werr := c.opts.Raw.Write(p[:n]); werr != nil {
					rawErrd = true
					c.log.Warn("console raw writer failed; disabling it", "err", werr)
				}
			}
			clean = st.strip(clean[:0], p[:n])
			// Deliver complete lines before the text becomes visible.
			rest := clean
			for {
				i := bytes.IndexByte(rest, '\n')
				if i < 0 {
					break
				}
				line = append(line, rest[:i]...)
				c.emitLine(line)
				line = line[:0]
				rest = rest[i+1:]
			}
			line = append(line, rest...)
			if len(line) > maxBuffer {
				line = line[len(line)-maxBuffer:]
			}
			c.appendVisible(clean)
		}
		if err != nil {
			if len(line) > 0 {
				c.emitLine(line)
			}
			c.finish(err)
			return
		}
	}
}

func (c *Console) emitLine(line []byte) {
	if c.opts.OnLine != nil {
		c.opts.OnLine(string(line))
	}
}

func (c *Console) appendVisible(p []byte) {
	if len(p) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, p...)
	if len(c.buf) > maxBuffer {
		c.buf = append(c.buf[:0], c.buf[len(c.buf)-maxBuffer:]...)
	}
	c.notifyLocked()
}

func (c *Console) finish(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	if !errors.Is(err, io.EOF) && !c.closing {
		c.readErr = err
	}
	c.log.Debug("console reader stopped", "err", err)
	c.notifyLocked()
}

func (c *Console) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Expect waits until re matches the text received since the end of the
// previous successful match (or since Discard), consumes the text up to the
// end of the match and returns the submatches.
func (c *Console) Expect(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	for {
		c.mu.Lock()
		if loc := re.FindSubmatchIndex(c.buf); loc != nil {
			subs := make([]string, len(loc)/2)
			for i := range subs {
				if loc[2*i] >= 0 {
					subs[i] = string(c.buf[loc[2*i]:loc[2*i+1]])
				}
			}
			c.buf = append(c.buf[:0], c.buf[loc[1]:]...)
			c.mu.Unlock()
			return subs, nil
		}
		if c.ended || c.closing {
			err := c.readErr
			tail := c.tailLocked()
			c.mu.Unlock()
			if err != nil {
				// The stream failed (a lost console): its error says
				// it all; what was being waited for is internal.
				return nil, &streamError{err: err, tail: tail}
			}
			return nil, fmt.Errorf("expect %q: %w; unmatched output: %q", re, ErrClosed, tail)
		}
		changed := c.changed
		c.mu.Unlock()

		select {
		case <-changed:
		case <-ctx.Done():
			c.mu.Lock()
			tail := c.tailLocked()
			c.mu.Unlock()
			return nil, fmt.Errorf("expect %q: %w; last output: %q", re, ctx.Err(), tail)
		}
	}
}

// streamError is why the stream ended: it reads as its cause (and the
// output nothing matched) and is ErrClosed too.
type streamError struct {
	err  error
	tail string
}

func (e *streamError) Error() string {
	return fmt.Sprintf("%v; unmatched output: %q", e.err, e.tail)
}
func (e *streamError) Unwrap() []error { return []error{e.err, ErrClosed} }

func (c *Console) tailLocked() string {
	b := c.buf
	if len(b) > tailLen {
		b = b[len(b)-tailLen:]
	}
	return string(b)
}

// Send writes all of s. Concurrent Sends are serialised.
func (c *Console) Send(s string) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing {
		return fmt.Errorf("send %q: %w", s, ErrClosed)
	}
	b := []byte(s)
	for len(b) > 0 {
		n, err := c.rwc.Write(b)
		if err != nil {
			return fmt.Errorf("send %q: %w", s, err)
		}
		if n == 0 {
			return fmt.Errorf("send %q: %w", s, io.ErrShortWrite)
		}
		b = b[n:]
	}
	return nil
}

// Discard forgets all unmatched buffered text.
func (c *Console) Discard() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = c.buf[:0]
}

// Close closes the underlying stream and waits for the reader goroutine.
// A partial last line is delivered to OnLine. Close is idempotent.
func (c *Console) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		c.mu.Unlock()
		if err := c.rwc.Close(); err != nil {
			c.closeErr = fmt.Errorf("close console: %w", err)
		}
		t := time.NewTimer(closeWaitTO)
		defer t.Stop()
		select {
		case <-c.done:
		case <-t.C:
			c.closeErr = errors.Join(c.closeErr, fmt.Errorf("close console: reader did not stop within %v", closeWaitTO))
		}
	})
	return c.closeErr
}
