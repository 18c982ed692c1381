package server

import (
	"net"
	"net/http"
	"sync"
)

// HTTPServer is the http.Server of the API with the server's Limits:
// idle keep-alive connections and slow headers are timed out (slow bodies
// are, per request, by guard). Serve it on Listener(ln).
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s.Handler(),
		IdleTimeout:       s.cfg.Limits.IdleTimeout,
		ReadHeaderTimeout: s.cfg.Limits.ReadHeaderTimeout,
	}
}

// Listener wraps ln so that one client address holds at most
// Limits.ConnsPerAddr open connections: more are closed as soon as they
// are accepted.
func (s *Server) Listener(ln net.Listener) net.Listener {
	return &capListener{Listener: ln, max: s.cfg.Limits.ConnsPerAddr, open: map[string]int{}, log: s}
}

type capListener struct {
	net.Listener
	max int
	log *Server

	mu   sync.Mutex
	open map[string]int // client address (IP) → open connections
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := c.RemoteAddr().String()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			addr = host
		}
		l.mu.Lock()
		full := l.open[addr] >= l.max
		if !full {
			l.open[addr]++
		}
		l.mu.Unlock()
		if full {
			_ = c.Close()
			l.log.log.Warn("connection refused: too many from one address", "addr", addr, "max", l.max)
			continue
		}
		return &cappedConn{Conn: c, release: func() { l.release(addr) }}, nil
	}
}

func (l *capListener) release(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[addr]--; l.open[addr] <= 0 {
		delete(l.open, addr)
	}
}

// cappedConn gives its place back when it is closed (once).
type cappedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
