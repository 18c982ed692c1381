package server

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
)

// batchConn is the connection under a WebSocket whose frames can be sent in
// batches: between Hold and Flush they collect in a buffer and leave in one
// write. A stream that has many lines waiting sends them with one system
// call instead of one each, which is what keeps 50 followers of a busy job
// cheap. Outside Hold, writes go straight through.
type batchConn struct {
	net.Conn
	mu   sync.Mutex // the WebSocket's reader goroutine may write (pongs)
	buf  *bufio.Writer
	hold bool
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold {
		return c.buf.Write(p)
	}
	if err := c.buf.Flush(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// Hold makes writes collect until Flush.
func (c *batchConn) Hold() {
	c.mu.Lock()
	c.hold = true
	c.mu.Unlock()
}

// Flush sends what was held and ends the hold.
func (c *batchConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold = false
	return c.buf.Flush()
}

func (c *batchConn) Close() error {
	return errors.Join(c.Flush(), c.Conn.Close())
}

// sendBuffer, if set, is the socket send buffer of stream connections
// (tests make it small to have a slow client lag).
var sendBuffer int

// batchWriter is a ResponseWriter whose hijacked connection (the one a
// WebSocket upgrade takes over) is a batchConn.
type batchWriter struct {
	http.ResponseWriter
	conn *batchConn
}

func (w *batchWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection cannot be taken over")
	}
	c, rw, err := h.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok && sendBuffer > 0 {
		_ = tc.SetWriteBuffer(sendBuffer)
	}
	w.conn = &batchConn{Conn: c, buf: bufio.NewWriterSize(c, 64<<10)}
	return w.conn, rw, nil
}
