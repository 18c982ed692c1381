package power

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// DefaultCommandTimeout bounds one run of a user command when no Timeout is
// set (Command.Timeout, and PDUDaemon's StateCommand).
const DefaultCommandTimeout = 30 * time.Second

// Command switches a board by running user commands. OnCommand, OffCommand
// and StateCommand are argv lists run directly (no shell; use
// {"/bin/sh", "-c", "..."} to get one). (The fields cannot be called On, Off
// and State: those are Command's Switch methods.) Each run is bounded by
// Timeout (DefaultCommandTimeout when zero) and by ctx; on either, the
// command's whole process group is killed.
//
// A command fails when it cannot start or exits non-zero; the error carries
// the exit status and the last line of its stderr.
//
// StateCommand answers in one of two ways, checked in this order:
//   - its stdout, trimmed, is "on" or "off" (any case): that is the state,
//     whatever the exit status;
//   - otherwise its exit status: 0 is on, 1 with nothing on stderr is off;
//     anything else is an error (so a failing "cat FILE", which exits 1 and
//     complains on stderr, is not taken for "off").
//
// Without a StateCommand, State returns the last state that On or Off set
// successfully (false before any) and Verified returns false.
type Command struct {
	Board        string
	OnCommand    []string
	OffCommand   []string
	StateCommand []string
	Timeout      time.Duration

	mu   sync.Mutex
	last bool
}

// On runs OnCommand.
func (c *Command) On(ctx context.Context) error { return c.set(ctx, true) }

// Off runs OffCommand.
func (c *Command) Off(ctx context.Context) error { return c.set(ctx, false) }

// State runs StateCommand (see Command).
func (c *Command) State(ctx context.Context) (bool, error) {
	if len(c.StateCommand) == 0 {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.last, nil
	}
	on, err := commandState(ctx, c.StateCommand, c.Timeout)
	return on, wrap(OpState, c.Board, err)
}

// Verified tells whether State runs a command that reads the outlet.
func (c *Command) Verified() bool { return len(c.StateCommand) > 0 }

func (c *Command) set(ctx context.Context, on bool) error {
	argv := c.OffCommand
	if on {
		argv = c.OnCommand
	}
	if len(argv) == 0 {
		return wrap(opFor(on), c.Board, fmt.Errorf("no %s command configured", word(on)))
	}
	if _, err := runCommand(ctx, argv, c.Timeout); err != nil {
		return wrap(opFor(on), c.Board, err)
	}
	c.mu.Lock()
	c.last = on
	c.mu.Unlock()
	return nil
}

// commandState runs a state command and reads its answer (see Command).
func commandState(ctx context.Context, argv []string, timeout time.Duration) (bool, error) {
	out, err := runCommand(ctx, argv, timeout)
	if on, ok := parseState(out); ok {
		var ee *exitError
		if err == nil || errors.As(err, &ee) {
			return on, nil // stdout wins over the exit status
		}
		return false, err // did not finish: timeout or cancellation
	}
	if err == nil {
		return true, nil
	}
	var ee *exitError
	if errors.As(err, &ee) && ee.code == 1 && ee.stderr == "" {
		return false, nil
	}
	if ee != nil {
		return false, fmt.Errorf("%w (a state command prints on/off, or exits 0 for on, 1 silently for off)", err)
	}
	return false, err
}

// exitError is a command that ran to its end with a non-zero status.
type exitError struct {
	argv   []string
	code   int
	stderr string
}

func (e *exitError) Error() string {
	msg := fmt.Sprintf("command %s: exit status %d", quoteArgv(e.argv), e.code)
	if e.stderr != "" {
		msg += ": " + e.stderr
	}
	return msg
}

const maxOutput = 64 << 10

// capped keeps the first maxOutput bytes written to it and drops the rest.
type capped struct{ bytes.Buffer }

func (b *capped) Write(p []byte) (int, error) {
	if room := maxOutput - b.Len(); room > 0 {
		if len(p) > room {
			b.Buffer.Write(p[:room])
		} else {
			b.Buffer.Write(p)
		}
	}
	return len(p), nil
}

// runCommand runs argv and returns its stdout. A non-zero exit is an
// *exitError; a timeout or a cancelled ctx are errors saying so.
func runCommand(ctx context.Context, argv []string, timeout time.Duration) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("empty command")
	}
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cmd := exec.CommandContext(runCtx, argv[0], argv[1:]...)
	var stdout, stderr capped
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	killGroup(cmd)
	// A grandchild that keeps the output pipes open must not hold us up
	// once the command is killed.
	cmd.WaitDelay = time.Second

	err := cmd.Run()
	out := stdout.String()
	if err == nil {
		return out, nil
	}
	switch {
	case ctx.Err() != nil:
		return out, fmt.Errorf("command %s: %w", quoteArgv(argv), context.Cause(ctx))
	case runCtx.Err() != nil:
		return out, fmt.Errorf("command %s: timed out after %s", quoteArgv(argv), timeout)
	}
	var xe *exec.ExitError
	if errors.As(err, &xe) && xe.Exited() {
		return out, &exitError{argv: argv, code: xe.ExitCode(), stderr: lastLine(stderr.String())}
	}
	return out, fmt.Errorf("command %s: %w", quoteArgv(argv), err)
}

// lastLine is the last non-empty line of s, cut to 200 bytes.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[i+1:])
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func quoteArgv(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`;&|<>*?()[]{}") {
			q[i] = fmt.Sprintf("%q", a)
		} else {
			q[i] = a
		}
	}
	return "[" + strings.Join(q, " ") + "]"
}
