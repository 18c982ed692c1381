package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrOff is returned by OpenSession on a board that is off.
var ErrOff = errors.New("board is off")

// OpenSession logs in to the board as ssh would (LAVA's ssh guests): a
// shell of its own, started like the console's (the same root files, HOME
// and network, sandboxed the same way), on a terminal of its own, which
// it returns. Its $TMPDIR is a directory of its own under the board's
// /tmp (tmp/session-N), so the test shells of the console and of every
// session keep their files apart. Its MultiNode calls go through its
// terminal (no side channel). addr is not used: a sim board is reached
// directly. Closing the terminal ends the session's shell and every
// process it started; so does powering the board off.
func (b *Board) OpenSession(ctx context.Context, addr string) (io.ReadWriteCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("session on %s: %w", b.o.Name, err)
	}
	b.mu.Lock()
	s, closed := b.sess, b.closed
	n := 0
	if s != nil && !closed {
		b.sessions++
		n = b.sessions
	}
	b.mu.Unlock()
	switch {
	case closed:
		return nil, fmt.Errorf("session on %s: %w", b.o.Name, ErrClosed)
	case s == nil:
		return nil, fmt.Errorf("session on %s: %w", b.o.Name, ErrOff)
	}
	ptm, pts, err := openPTY()
	if err != nil {
		return nil, fmt.Errorf("session on %s: %w", b.o.Name, err)
	}
	if err := setMode(pts, modeShell); err != nil {
		_ = ptm.Close()
		_ = pts.Close()
		return nil, fmt.Errorf("session on %s: %w", b.o.Name, err)
	}
	sub := "session-" + strconv.Itoa(n)
	sh, err := b.startShell(s, pts, nil, func(sandboxed bool) []string {
		tmp := filepath.Join("/tmp", sub)
		env := b.shellEnv(s.token, false)
		if sandboxed {
			env = b.sandboxEnv(s.token, false)
		} else {
			tmp = filepath.Join(b.root, "tmp", sub)
		}
		for i, kv := range env {
			switch k, _, _ := strings.Cut(kv, "="); k {
			case "TMPDIR":
				env[i] = "TMPDIR=" + tmp
			case "LAVA_MULTI_NODE_CACHE":
				env[i] = "LAVA_MULTI_NODE_CACHE=" + filepath.Join(tmp, "lava_multi_node_cache.txt")
			}
		}
		return env
	})
	_ = pts.Close()
	if err != nil {
		_ = ptm.Close()
		return nil, fmt.Errorf("session on %s: %w", b.o.Name, err)
	}
	b.log.Debug("session started", "pid", sh.pid, "session", sub, "sandboxed", sh.bx != nil)
	return &sessionConn{File: ptm, sh: sh}, nil
}

// sessionConn is the terminal of a session; Close ends its shell.
type sessionConn struct {
	*os.File // the terminal's master side
	sh       *shellProc
	once     sync.Once
	err      error
}

func (c *sessionConn) Close() error {
	c.once.Do(func() {
		if c.sh.bx != nil {
			c.sh.bx.kill() // the sandbox ends with its PID namespace
		} else {
			// Its own session and process group (Setsid): all of it.
			_ = syscall.Kill(-c.sh.pid, syscall.SIGKILL)
		}
		t := time.NewTimer(shellReapLimit)
		defer t.Stop()
		select {
		case <-c.sh.done:
		case <-t.C:
			c.err = errors.New("session shell not reaped")
		}
		c.err = errors.Join(c.err, c.File.Close())
	})
	return c.err
}
