// Package power drives the power switches of lab boards: pdudaemon over
// HTTP, user commands, an SNMP outlet, or an operator at a keyboard. Every
// driver satisfies Switch, which is boot.Power; Verify wraps any of them so
// that a switch that answers OK but does not switch ends in an error.
//
// Every error a driver returns names the action and the board first, e.g.
//
//	power on rpi-01: pdudaemon http://127.0.0.1:16421: 500 Internal Server Error
//
// and is an *Error, so errors.As gives the board and the action.
package power

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Switch is a board's power switch (the same method set as boot.Power).
type Switch interface {
	On(ctx context.Context) error
	Off(ctx context.Context) error
	State(ctx context.Context) (bool, error)
}

// Verifiable is implemented by switches that know whether their State reads
// the outlet back (true) or only repeats the last commanded or answered
// state (false). Verify does not read back a switch whose Verified is false:
// there is nothing it could learn.
type Verifiable interface {
	Verified() bool
}

// Op names an action on a switch.
type Op string

// The actions.
const (
	OpOn     Op = "on"
	OpOff    Op = "off"
	OpState  Op = "state"
	OpReboot Op = "reboot"
)

// Error is what every driver returns: the action, the board, the cause.
type Error struct {
	Op    Op
	Board string
	Err   error
}

func (e *Error) Error() string {
	board := e.Board
	if board == "" {
		board = "(unnamed board)"
	}
	return fmt.Sprintf("power %s %s: %v", e.Op, board, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

func wrap(op Op, board string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, Board: board, Err: err}
}

func opFor(on bool) Op {
	if on {
		return OpOn
	}
	return OpOff
}

func word(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// ErrNotSwitched matches (errors.Is) the error of a verified switch whose
// outlet did not reach the commanded state although the switch said OK.
var ErrNotSwitched = errors.New("the outlet did not switch")

// NotSwitchedError is the cause in an *Error when the outlet did not switch.
type NotSwitchedError struct {
	Want  bool // the commanded state
	Tries int  // how many times the command was sent
}

func (e *NotSwitchedError) Error() string {
	return fmt.Sprintf("the PDU answered OK but the outlet is still %s (%d tries)", word(!e.Want), e.Tries)
}

// Is makes errors.Is(err, ErrNotSwitched) true.
func (e *NotSwitchedError) Is(target error) bool { return target == ErrNotSwitched }

// parseState reads an "on"/"off" answer (any case, surrounding space
// ignored). ok is false for anything else.
func parseState(s string) (on, ok bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on":
		return true, true
	case "off":
		return false, true
	}
	return false, false
}
