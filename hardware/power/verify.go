package power

import (
	"context"
	"fmt"
	"time"
)

// Defaults of Verify.
const (
	DefaultRetries = 2
	DefaultSettle  = 2 * time.Second
	// PollInterval is how often Verify reads the outlet back while it
	// settles (or every settle, if that is shorter).
	PollInterval = 200 * time.Millisecond
)

// Verify wraps s so that On and Off check their work: after the command
// succeeds, State is read back at once and then every PollInterval for up
// to settle; if the outlet has not reached the commanded state by then, the
// command is sent again, up to retries more times. When every try answered
// OK but the outlet never switched (pdudaemon's 200 for a failed outlet
// command, a PDU that lies) the error is, e.g.,
//
//	power on rpi-01: the PDU answered OK but the outlet is still off (3 tries)
//
// an *Error whose cause is a *NotSwitchedError (errors.Is ErrNotSwitched).
//
// retries 0 means DefaultRetries, negative means none; settle 0 or less
// means DefaultSettle. An error from the command itself or from reading the
// state back is returned at once, not retried: a switch that says it failed
// is believed, and retrying is for one that says OK and did not switch.
// Errors name board.
//
// If s implements Verifiable and says false (its State only repeats the last
// command), reading back would prove nothing: On and Off just send the
// command once. State is s.State. The result implements Verifiable with s's
// answer (true when s does not implement it).
func Verify(s Switch, board string, retries int, settle time.Duration) Switch {
	switch {
	case retries == 0:
		retries = DefaultRetries
	case retries < 0:
		retries = 0
	}
	if settle <= 0 {
		settle = DefaultSettle
	}
	return &verified{s: s, board: board, retries: retries, settle: settle}
}

type verified struct {
	s       Switch
	board   string
	retries int
	settle  time.Duration
}

func (v *verified) On(ctx context.Context) error  { return v.set(ctx, true) }
func (v *verified) Off(ctx context.Context) error { return v.set(ctx, false) }

func (v *verified) State(ctx context.Context) (bool, error) { return v.s.State(ctx) }

func (v *verified) Verified() bool {
	if c, ok := v.s.(Verifiable); ok {
		return c.Verified()
	}
	return true
}

func (v *verified) command(ctx context.Context, on bool) error {
	if on {
		return v.s.On(ctx)
	}
	return v.s.Off(ctx)
}

func (v *verified) set(ctx context.Context, on bool) error {
	op := opFor(on)
	if !v.Verified() {
		return v.command(ctx, on)
	}
	tries := 0
	for tries <= v.retries {
		tries++
		if err := v.command(ctx, on); err != nil {
			return v.ensureBoard(op, err)
		}
		ok, err := v.settled(ctx, on)
		if err != nil {
			return &Error{Op: op, Board: v.board, Err: fmt.Errorf("read the outlet back: %w", err)}
		}
		if ok {
			return nil
		}
	}
	return &Error{Op: op, Board: v.board, Err: &NotSwitchedError{Want: on, Tries: tries}}
}

// ensureBoard returns err as is when it is one of ours (it names the
// board); else it wraps it with the board.
func (v *verified) ensureBoard(op Op, err error) error {
	if e, ok := err.(*Error); ok && e.Board != "" {
		return err
	}
	return &Error{Op: op, Board: v.board, Err: err}
}

// settled reads the state until it is want or settle has passed.
func (v *verified) settled(ctx context.Context, want bool) (bool, error) {
	interval := min(PollInterval, v.settle)
	deadline := time.Now().Add(v.settle)
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for {
		got, err := v.s.State(ctx)
		if err != nil {
			return false, err
		}
		if got == want {
			return true, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false, nil
		}
		t.Reset(min(interval, left))
		select {
		case <-t.C:
		case <-ctx.Done():
			return false, context.Cause(ctx)
		}
	}
}
