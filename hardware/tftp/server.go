package tftp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// DefaultTimeout is how long either side waits for its peer's next
	// packet before retransmitting.
	DefaultTimeout = time.Second
	// DefaultRetries is how many times a packet is retransmitted before the
	// transfer is abandoned.
	DefaultRetries = 5

	closeWait = 5 * time.Second
)

// Server is a read-only TFTP server for the files under one directory.
type Server struct {
	conn    *net.UDPConn
	root    *os.Root
	rootAbs []string // absolute spellings of root, for absolute requests
	log     *slog.Logger
	timeout time.Duration
	retries int

	mu        sync.Mutex
	closed    bool
	transfers map[netip.AddrPort]*net.UDPConn // by client address
	wg        sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Listen serves the files under root over TFTP on the UDP address addr
// (e.g. ":69", or "127.0.0.1:0" for an ephemeral port). Requests can only
// reach files inside root: "..", absolute paths outside root and symlinks
// leading out of it are refused. A nil logger discards logs.
func Listen(addr, root string, logger *slog.Logger) (*Server, error) {
	return listen(addr, root, logger, DefaultTimeout, DefaultRetries)
}

func listen(addr, root string, logger *slog.Logger, timeout time.Duration, retries int) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("tftp: root: %w", err)
	}
	var abs []string
	if a, err := filepath.Abs(root); err == nil {
		abs = append(abs, a)
		if e, err := filepath.EvalSymlinks(a); err == nil && e != a {
			abs = append(abs, e)
		}
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("tftp: listen %s: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("tftp: %w", err)
	}
	s := &Server{
		conn:      conn,
		root:      r,
		rootAbs:   abs,
		log:       logger.With("tftp", conn.LocalAddr().String()),
		timeout:   timeout,
		retries:   retries,
		transfers: map[netip.AddrPort]*net.UDPConn{},
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr returns the address the server listens on, e.g. "127.0.0.1:40123".
func (s *Server) Addr() string { return s.conn.LocalAddr().String() }

// Close stops the server: no new requests are accepted and transfers in
// progress are aborted. It waits (boundedly) for every transfer goroutine to
// finish before returning. Close is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]*net.UDPConn, 0, len(s.transfers))
		for _, c := range s.transfers {
			conns = append(conns, c)
		}
		s.mu.Unlock()

		err := s.conn.Close()
		for _, c := range conns {
			c.Close() // unblocks the transfer's read; it exits at once
		}
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		t := time.NewTimer(closeWait)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			err = errors.Join(err, errors.New("tftp: close: timed out waiting for transfers"))
		}
		s.closeErr = errors.Join(err, s.root.Close())
	})
	return s.closeErr
}

func (s *Server) serve() {
	defer s.wg.Done()
	buf := make([]byte, maxPacket)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("tftp read", "err", err)
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		req, err := parseRequest(buf[:n])
		if err != nil {
			if n >= 2 {
				op := binary.BigEndian.Uint16(buf)
				if op == opRRQ || op == opWRQ {
					s.reply(from, ErrCodeIllegalOp, "malformed request")
					continue
				}
			}
			// Stray DATA/ACK/ERROR on the listening port: not ours.
			s.log.Debug("tftp: ignored packet", "from", from, "len", n)
			continue
		}
		if req.op == opWRQ {
			s.log.Info("tftp: write refused", "from", from, "file", req.filename)
			s.reply(from, ErrCodeAccess, "access violation")
			continue
		}
		s.start(from, req)
	}
}

// reply sends an ERROR from the listening socket.
func (s *Server) reply(to netip.AddrPort, code uint16, msg string) {
	_, _ = s.conn.WriteToUDPAddrPort(errorPacket(code, msg), to)
}

// start opens the transfer's own socket (its TID) and runs it.
func (s *Server) start(client netip.AddrPort, req *request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if _, dup := s.transfers[client]; dup {
		// A retransmitted RRQ while we are already answering it.
		return
	}
	local := s.conn.LocalAddr().(*net.UDPAddr)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: local.IP, Zone: local.Zone})
	if err != nil {
		s.log.Warn("tftp: transfer socket", "err", err)
		s.reply(client, ErrCodeUndefined, "server error")
		return
	}
	s.transfers[client] = conn
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.transfers, client)
			s.mu.Unlock()
			conn.Close()
		}()
		s.transfer(conn, client, req)
	}()
}

// errRefused carries the ERROR packet to send for a refused request.
type errRefused struct {
	code uint16
	msg  string
}

func (e *errRefused) Error() string { return e.msg }

var (
	refusedAccess   = &errRefused{ErrCodeAccess, "access violation"}
	refusedNotFound = &errRefused{ErrCodeNotFound, "file not found"}
)

// resolve maps a requested file name to a path relative to root.
func (s *Server) resolve(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) {
		return "", refusedAccess
	}
	if filepath.IsAbs(name) {
		clean := filepath.Clean(name)
		rel := ""
		for _, a := range s.rootAbs {
			if r, err := filepath.Rel(a, clean); err == nil && r != ".." && !strings.HasPrefix(r, "../") {
				rel = r
				break
			}
		}
		if rel == "" {
			return "", refusedAccess
		}
		name = filepath.ToSlash(rel)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", refusedAccess
		}
	}
	name = path.Clean(name)
	if name == "." || name == "/" {
		return "", refusedAccess
	}
	return name, nil
}

// open opens the requested file for reading, returning it and its size.
func (s *Server) open(name string) (*os.File, int64, error) {
	rel, err := s.resolve(name)
	if err != nil {
		return nil, 0, err
	}
	// Stat first so that FIFOs and devices are never opened.
	fi, err := s.root.Stat(rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, refusedNotFound
		}
		// Includes symlinks escaping root.
		return nil, 0, refusedAccess
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, refusedAccess
	}
	f, err := s.root.Open(rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, refusedNotFound
		}
		return nil, 0, refusedAccess
	}
	return f, fi.Size(), nil
}

// peer is one side of a transfer: our socket and the client's TID.
type peer struct {
	conn    *net.UDPConn
	client  netip.AddrPort
	timeout time.Duration
	retries int
	buf     []byte
}

// exchange sends pkt and waits for the ACK of block, retransmitting on
// timeout. ACKs for other blocks are ignored (no retransmission on duplicate
// ACKs: Sorcerer's Apprentice). Packets from other TIDs get ERROR 5.
func (p *peer) exchange(pkt []byte, block uint16) error {
	for try := 0; try <= p.retries; try++ {
		if _, err := p.conn.WriteToUDPAddrPort(pkt, p.client); err != nil {
			return err
		}
		deadline := time.Now().Add(p.timeout)
		if err := p.conn.SetReadDeadline(deadline); err != nil {
			return err
		}
		for {
			n, from, err := p.conn.ReadFromUDPAddrPort(p.buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // retransmit
				}
				return err
			}
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			if from != p.client {
				_, _ = p.conn.WriteToUDPAddrPort(errorPacket(ErrCodeUnknownTID, "unknown transfer ID"), from)
				continue
			}
			if n < 4 {
				continue
			}
			switch binary.BigEndian.Uint16(p.buf) {
			case opACK:
				if binary.BigEndian.Uint16(p.buf[2:]) == block {
					return nil
				}
			case opERROR:
				return fmt.Errorf("client aborted: %w", parseError(p.buf[:n]))
			}
		}
	}
	return fmt.Errorf("no ACK for block %d after %d retransmissions", block, p.retries)
}

func (s *Server) transfer(conn *net.UDPConn, client netip.AddrPort, req *request) {
	log := s.log.With("client", client.String(), "file", req.filename)
	send := func(code uint16, msg string) {
		_, _ = conn.WriteToUDPAddrPort(errorPacket(code, msg), client)
	}
	if req.mode != "octet" && req.mode != "netascii" {
		log.Info("tftp: unsupported mode", "mode", req.mode)
		send(ErrCodeIllegalOp, "unsupported mode "+strconv.Quote(req.mode))
		return
	}
	f, size, err := s.open(req.filename)
	if err != nil {
		var r *errRefused
		if !errors.As(err, &r) {
			r = &errRefused{ErrCodeUndefined, err.Error()}
		}
		log.Info("tftp: read refused", "err", r.msg)
		send(r.code, r.msg)
		return
	}
	defer f.Close()

	blksize := DefaultBlockSize
	var oack [][2]string
	for _, name := range req.order {
		v := req.options[name]
		switch name {
		case "blksize":
			if n, ok := parseBlksize(v); ok {
				blksize = n
				oack = append(oack, [2]string{"blksize", strconv.Itoa(n)})
			}
		case "tsize":
			oack = append(oack, [2]string{"tsize", strconv.FormatInt(size, 10)})
		}
	}

	p := &peer{conn: conn, client: client, timeout: s.timeout, retries: s.retries, buf: make([]byte, 1024)}
	start := time.Now()
	if len(oack) > 0 {
		if err := p.exchange(oackPacket(oack), 0); err != nil {
			s.abort(log, err)
			return
		}
	}

	pkt := make([]byte, 4+blksize)
	binary.BigEndian.PutUint16(pkt, opDATA)
	var block uint16
	var sent int64
	for {
		n, err := io.ReadFull(f, pkt[4:])
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			log.Warn("tftp: read", "err", err)
			send(ErrCodeUndefined, "read error")
			return
		}
		block++ // wraps to 0 after 65535, as most implementations do
		binary.BigEndian.PutUint16(pkt[2:], block)
		if err := p.exchange(pkt[:4+n], block); err != nil {
			s.abort(log, err)
			return
		}
		sent += int64(n)
		if n < blksize {
			break
		}
	}
	log.Info("tftp: sent", "bytes", sent, "blksize", blksize, "elapsed", time.Since(start).Round(time.Millisecond))
}

func (s *Server) abort(log *slog.Logger, err error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		log.Info("tftp: transfer aborted by server close")
		return
	}
	log.Warn("tftp: transfer aborted", "err", err)
}
