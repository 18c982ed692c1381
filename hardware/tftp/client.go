package tftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Get fetches file from the TFTP server at server ("host:port"; the port
// defaults to 69) and writes its bytes to w, returning how many were
// written. blksize > 0 asks for that block size (MinBlockSize..MaxBlockSize);
// 0 uses the RFC 1350 default of 512 bytes. The transfer size is always
// asked for (tsize) and checked when the server reports it.
//
// Errors name the file and server; an ERROR packet from the server is
// returned as a wrapped *Error, e.g.
// `tftp get "Image" from 127.0.0.1:6969: file not found`. Get gives up when
// ctx is done (the error then wraps ctx.Err()) or when the server stays
// silent through DefaultRetries retransmissions of DefaultTimeout each.
func Get(ctx context.Context, server, file string, w io.Writer, blksize int) (int64, error) {
	return get(ctx, server, file, w, blksize, DefaultTimeout, DefaultRetries)
}

func get(ctx context.Context, server, file string, w io.Writer, blksize int, timeout time.Duration, retries int) (int64, error) {
	n, err := (&client{timeout: timeout, retries: retries}).get(ctx, server, file, w, blksize)
	if err != nil {
		return n, fmt.Errorf("tftp get %q from %s: %w", file, server, err)
	}
	return n, nil
}

// ErrTimeout is wrapped by Get's error when the server stopped answering.
var ErrTimeout = errors.New("timeout")

type client struct {
	timeout time.Duration
	retries int

	conn   *net.UDPConn
	server netip.AddrPort // where requests go
	tid    netip.AddrPort // the server's transfer socket, once known
	buf    []byte
}

func (c *client) get(ctx context.Context, server, file string, w io.Writer, blksize int) (int64, error) {
	if blksize != 0 && (blksize < MinBlockSize || blksize > MaxBlockSize) {
		return 0, fmt.Errorf("blksize %d outside %d..%d", blksize, MinBlockSize, MaxBlockSize)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "69")
	}
	ua, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return 0, err
	}
	c.server = ua.AddrPort()
	c.server = netip.AddrPortFrom(c.server.Addr().Unmap(), c.server.Port())
	c.conn, err = net.ListenUDP("udp", nil)
	if err != nil {
		return 0, err
	}
	defer c.conn.Close()
	c.buf = make([]byte, maxPacket+1)

	// Unblock reads as soon as ctx is done.
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetReadDeadline(time.Now()) })
	defer stop()

	opts := [][2]string{{"tsize", "0"}}
	if blksize > 0 {
		opts = append([][2]string{{"blksize", strconv.Itoa(blksize)}}, opts...)
	}
	pkt := rrqPacket(file, "octet", opts)

	size := DefaultBlockSize
	tsize := int64(-1)
	var (
		expect  uint16 = 1
		written int64
		send    = true // send pkt before waiting; false after an ignored packet
	)
	for ; ; send = true {
		p, err := c.exchange(ctx, pkt, send)
		if err != nil {
			if c.tid.IsValid() && ctx.Err() != nil {
				c.send(errorPacket(ErrCodeUndefined, "transfer cancelled"))
			}
			return written, err
		}
		switch binary.BigEndian.Uint16(p) {
		case opERROR:
			return written, parseError(p)
		case opOACK:
			if expect != 1 || written != 0 {
				send = false
				continue // duplicate OACK after we moved on: ignore
			}
			m, err := parseOACK(p)
			if err != nil {
				c.send(errorPacket(ErrCodeOptionsRefused, "malformed OACK"))
				return 0, fmt.Errorf("bad OACK: %w", err)
			}
			size = DefaultBlockSize
			if v, ok := m["blksize"]; ok {
				n, err := strconv.Atoi(v)
				if err != nil || blksize == 0 || n < MinBlockSize || n > blksize {
					c.send(errorPacket(ErrCodeOptionsRefused, "bad blksize"))
					return 0, fmt.Errorf("server offered blksize %q, asked for %d", v, blksize)
				}
				size = n
			}
			if v, ok := m["tsize"]; ok {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
					tsize = n
				}
			}
			pkt = ackPacket(0)
		case opDATA:
			block := binary.BigEndian.Uint16(p[2:])
			if block != expect {
				// A retransmission of a block we already have: our ACK was
				// lost, so repeat it. Anything else is ignored.
				if block == expect-1 && written > 0 {
					c.send(ackPacket(block))
				}
				send = false
				continue
			}
			data := p[4:]
			if len(data) > size {
				c.send(errorPacket(ErrCodeIllegalOp, "block too large"))
				return written, fmt.Errorf("block %d is %d bytes, blksize %d", block, len(data), size)
			}
			if _, err := w.Write(data); err != nil {
				c.send(errorPacket(ErrCodeDiskFull, "write error"))
				return written, err
			}
			written += int64(len(data))
			pkt = ackPacket(block)
			expect++
			if len(data) < size {
				c.send(pkt) // final ACK; the server's retransmit would be ignored
				if tsize >= 0 && written != tsize {
					return written, fmt.Errorf("received %d bytes, server announced %d", written, tsize)
				}
				return written, nil
			}
		}
	}
}

func (c *client) send(pkt []byte) {
	to := c.tid
	if !to.IsValid() {
		to = c.server
	}
	_, _ = c.conn.WriteToUDPAddrPort(pkt, to)
}

// exchange sends pkt (to the server's TID if known, else to the request
// port; not at first when sendFirst is false) and returns the next packet
// from the server, retransmitting pkt on timeout. It returns only DATA, OACK and ERROR packets. When no TID is
// known yet, the first reply from the server's host fixes it.
func (c *client) exchange(ctx context.Context, pkt []byte, sendFirst bool) ([]byte, error) {
	for try := 0; try <= c.retries; try++ {
		if try > 0 || sendFirst {
			c.send(pkt)
		}
		deadline := time.Now().Add(c.timeout)
		ctxDeadline := false
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline, ctxDeadline = d, true
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := c.conn.SetReadDeadline(deadline); err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil { // AfterFunc may have raced the deadline
			return nil, err
		}
		for {
			n, from, err := c.conn.ReadFromUDPAddrPort(c.buf)
			if err != nil {
				if cerr := ctx.Err(); cerr != nil {
					return nil, cerr
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					if ctxDeadline {
						// The socket deadline can fire a moment before
						// ctx's own timer does.
						<-ctx.Done()
						return nil, ctx.Err()
					}
					break
				}
				return nil, err
			}
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			if n < 4 || n > maxPacket {
				continue
			}
			op := binary.BigEndian.Uint16(c.buf)
			if op != opDATA && op != opOACK && op != opERROR {
				continue
			}
			if !c.tid.IsValid() {
				if !sameHost(from.Addr(), c.server.Addr()) {
					continue
				}
				c.tid = from
			} else if from != c.tid {
				_, _ = c.conn.WriteToUDPAddrPort(errorPacket(ErrCodeUnknownTID, "unknown transfer ID"), from)
				continue
			}
			return c.buf[:n], nil
		}
	}
	if !c.tid.IsValid() {
		return nil, fmt.Errorf("%w: no reply to request after %d retransmissions", ErrTimeout, c.retries)
	}
	return nil, fmt.Errorf("%w: no reply after %d retransmissions", ErrTimeout, c.retries)
}

func sameHost(a, b netip.Addr) bool {
	if b.IsUnspecified() {
		return true
	}
	return a == b
}
