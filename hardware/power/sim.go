package power

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// Sim switches a `troupe simboard` through its power control socket (one
// command a line: on, off, status; replies ok, on, off or "error: ...").
// Its State reads the board itself, so it is verified.
type Sim struct {
	Board, Socket string
}

func (s *Sim) On(ctx context.Context) error  { return s.do(ctx, OpOn, "on") }
func (s *Sim) Off(ctx context.Context) error { return s.do(ctx, OpOff, "off") }

// State asks the board whether it is on.
func (s *Sim) State(ctx context.Context) (bool, error) {
	reply, err := s.ask(ctx, "status")
	if err != nil {
		return false, &Error{Op: OpState, Board: s.Board, Err: err}
	}
	switch reply {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, &Error{Op: OpState, Board: s.Board, Err: fmt.Errorf("simboard %s: unexpected reply %q", s.Socket, reply)}
}

// Verified is true: State reads the board.
func (s *Sim) Verified() bool { return true }

func (s *Sim) do(ctx context.Context, op Op, cmd string) error {
	reply, err := s.ask(ctx, cmd)
	if err == nil && reply != "ok" {
		err = fmt.Errorf("simboard %s: unexpected reply %q", s.Socket, reply)
	}
	if err != nil {
		return &Error{Op: op, Board: s.Board, Err: err}
	}
	return nil
}

// ask sends one command and reads its reply, within ctx (30 s at most).
func (s *Sim) ask(ctx context.Context, cmd string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", s.Socket)
	if err != nil {
		return "", fmt.Errorf("simboard %s: %w", s.Socket, err)
	}
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.SetDeadline(deadline)
	if _, err := fmt.Fprintln(c, cmd); err != nil {
		return "", fmt.Errorf("simboard %s: %w", s.Socket, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("simboard %s: %w", s.Socket, err)
	}
	line = strings.TrimSpace(line)
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return "", fmt.Errorf("simboard %s: %s", s.Socket, msg)
	}
	return line, nil
}
