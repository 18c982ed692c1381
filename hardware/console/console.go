// Package console provides the consoles of real boards: a local serial
// device (USB-serial adapter, on-board UART) and a raw TCP console such as
// ser2net. Both are io.ReadWriteClosers suited to the expect engine in
// package github.com/troupe-lab/troupe/console and to actors.Backend.
//
// Conventions shared by both types:
//
//   - Read blocks until data arrives, the console is closed, or the console
//     is lost. After Close, Read returns io.EOF (a clean end of stream).
//   - Errors caused by the console going away wrap ErrLost and name the
//     board; once lost, a console stays lost.
//   - Write after Close returns an error wrapping ErrClosed.
//   - Close is idempotent and promptly unblocks pending Reads (and, for TCP,
//     any reconnect wait).
package console

import "errors"

// ErrLost is wrapped by Read and Write errors when the console went away:
// the serial device was unplugged or hung up, or a TCP peer stayed gone for
// longer than the reconnect window. Wrapped errors name the board.
var ErrLost = errors.New("console lost")

// ErrClosed is wrapped by Write errors after Close.
var ErrClosed = errors.New("console closed")
