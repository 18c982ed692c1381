// Package tftp is a small read-only TFTP server and client (RFC 1350) with
// the option extension (RFC 2347), the blksize option (RFC 2348) and the
// tsize option (RFC 2349). Real boards fetch their kernels, device trees and
// ramdisks with it from u-boot; the client exists for tests and for checking
// that a lab's server actually serves what a job is about to boot.
//
// Only reads are served, in octet mode; "netascii" requests are accepted but
// the bytes are served unchanged. Write requests are refused.
package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Opcodes.
const (
	opRRQ   uint16 = 1
	opWRQ   uint16 = 2
	opDATA  uint16 = 3
	opACK   uint16 = 4
	opERROR uint16 = 5
	opOACK  uint16 = 6
)

// Error codes (RFC 1350 and RFC 2347).
const (
	ErrCodeUndefined      uint16 = 0
	ErrCodeNotFound       uint16 = 1
	ErrCodeAccess         uint16 = 2
	ErrCodeDiskFull       uint16 = 3
	ErrCodeIllegalOp      uint16 = 4
	ErrCodeUnknownTID     uint16 = 5
	ErrCodeFileExists     uint16 = 6
	ErrCodeNoSuchUser     uint16 = 7
	ErrCodeOptionsRefused uint16 = 8
)

const (
	// DefaultBlockSize is the RFC 1350 block size, used when no blksize
	// option is negotiated.
	DefaultBlockSize = 512
	// MinBlockSize and MaxBlockSize bound the blksize option (RFC 2348).
	MinBlockSize = 8
	MaxBlockSize = 65464

	maxPacket = MaxBlockSize + 4
)

// Error is an ERROR packet received from the peer. Its Error method returns
// the peer's message alone, so wrapping errors read naturally:
// `tftp get "Image" from 127.0.0.1:6969: file not found`.
type Error struct {
	Code    uint16
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("tftp error code %d", e.Code)
	}
	return e.Message
}

var errMalformed = errors.New("malformed packet")

// request is a parsed RRQ or WRQ.
type request struct {
	op       uint16
	filename string
	mode     string
	options  map[string]string // lower-case names
	order    []string          // option names in the order received
}

func parseRequest(p []byte) (*request, error) {
	if len(p) < 2 {
		return nil, errMalformed
	}
	op := binary.BigEndian.Uint16(p)
	if op != opRRQ && op != opWRQ {
		return nil, errMalformed
	}
	fields, err := splitZ(p[2:])
	if err != nil {
		return nil, err
	}
	if len(fields) < 2 {
		return nil, errMalformed
	}
	r := &request{op: op, filename: fields[0], mode: strings.ToLower(fields[1]), options: map[string]string{}}
	opts := fields[2:]
	// A trailing odd field is tolerated and ignored (some clients pad).
	for i := 0; i+1 < len(opts); i += 2 {
		name := strings.ToLower(opts[i])
		if _, dup := r.options[name]; dup {
			continue
		}
		r.options[name] = opts[i+1]
		r.order = append(r.order, name)
	}
	return r, nil
}

// splitZ splits a sequence of NUL-terminated strings. The last string must
// be terminated.
func splitZ(b []byte) ([]string, error) {
	var out []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return nil, errMalformed
		}
		out = append(out, string(b[:i]))
		b = b[i+1:]
	}
	return out, nil
}

func appendZ(b []byte, s ...string) []byte {
	for _, x := range s {
		b = append(b, x...)
		b = append(b, 0)
	}
	return b
}

func rrqPacket(filename, mode string, opts [][2]string) []byte {
	b := binary.BigEndian.AppendUint16(nil, opRRQ)
	b = appendZ(b, filename, mode)
	for _, o := range opts {
		b = appendZ(b, o[0], o[1])
	}
	return b
}

func ackPacket(block uint16) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint16(b, opACK)
	binary.BigEndian.PutUint16(b[2:], block)
	return b
}

func errorPacket(code uint16, msg string) []byte {
	b := binary.BigEndian.AppendUint16(nil, opERROR)
	b = binary.BigEndian.AppendUint16(b, code)
	return appendZ(b, msg)
}

func oackPacket(opts [][2]string) []byte {
	b := binary.BigEndian.AppendUint16(nil, opOACK)
	for _, o := range opts {
		b = appendZ(b, o[0], o[1])
	}
	return b
}

func parseError(p []byte) *Error {
	e := &Error{}
	if len(p) >= 4 {
		e.Code = binary.BigEndian.Uint16(p[2:])
		msg := p[4:]
		if i := bytes.IndexByte(msg, 0); i >= 0 {
			msg = msg[:i]
		}
		e.Message = string(msg)
	}
	return e
}

func parseOACK(p []byte) (map[string]string, error) {
	fields, err := splitZ(p[2:])
	if err != nil {
		return nil, err
	}
	if len(fields)%2 != 0 {
		return nil, errMalformed
	}
	m := make(map[string]string, len(fields)/2)
	for i := 0; i < len(fields); i += 2 {
		m[strings.ToLower(fields[i])] = fields[i+1]
	}
	return m, nil
}

// parseBlksize parses a blksize option value, clamping values above the
// maximum. ok is false when the value is unusable and the option should be
// ignored.
func parseBlksize(v string) (n int, ok bool) {
	n, err := strconv.Atoi(v)
	if err != nil || n < MinBlockSize {
		return 0, false
	}
	return min(n, MaxBlockSize), true
}
