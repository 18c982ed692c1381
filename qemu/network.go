package qemu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Networks are the private networks of the groups of one run: one hub per
// group, made by the first board of the group that joins and closed with
// the last one that leaves. A board is plugged in through a socketpair
// whose one end QEMU gets as its dgram netdev: guest frames never touch an
// IP socket, and only the boards of one group can reach each other.
type Networks struct {
	logger *slog.Logger
	mu     sync.Mutex
	hubs   map[string]*hub
	used   map[int]bool // subnets in use: 10.<n>.0.0/16
}

// NewNetworks returns an empty set of group networks.
func NewNetworks(logger *slog.Logger) *Networks {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Networks{logger: logger, hubs: map[string]*hub{}, used: map[int]bool{}}
}

// maxSubnets is how many groups can have a network at once.
const maxSubnets = 254

// join plugs a new port into the network of group, making it if needed.
// The subnet number n gives the group its addresses, 10.n.0.0/16.
func (ns *Networks) join(group string) (p *port, subnet int, err error) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	h := ns.hubs[group]
	if h == nil {
		for n := 1; n <= maxSubnets && h == nil; n++ {
			if !ns.used[n] {
				ns.used[n] = true
				h = &hub{group: group, subnet: n, ports: map[*port]bool{}, logger: ns.logger.With("group", group)}
			}
		}
		if h == nil {
			return nil, 0, fmt.Errorf("network of group %s: all %d subnets in use", group, maxSubnets)
		}
		ns.hubs[group] = h
	}
	p, err = h.plug()
	if err != nil {
		if len(h.ports) == 0 {
			ns.drop(h)
		}
		return nil, 0, fmt.Errorf("network of group %s: %w", group, err)
	}
	p.leave = func() {
		ns.mu.Lock()
		defer ns.mu.Unlock()
		h.mu.Lock()
		delete(h.ports, p)
		empty := len(h.ports) == 0
		h.mu.Unlock()
		if empty {
			ns.drop(h)
		}
	}
	return p, h.subnet, nil
}

// drop forgets an empty hub; ns.mu is held.
func (ns *Networks) drop(h *hub) {
	if ns.hubs[h.group] == h {
		delete(ns.hubs, h.group)
		delete(ns.used, h.subnet)
	}
}

// hub repeats every frame a port sends to every other port of the group.
type hub struct {
	group  string
	subnet int
	logger *slog.Logger
	mu     sync.Mutex
	ports  map[*port]bool
}

// port is one board's socket on a hub.
type port struct {
	hub   *hub
	guest *os.File      // QEMU's end: passed to every QEMU process of the board
	conn  *net.UnixConn // the hub's end
	out   chan []byte   // frames to the guest, dropped when full
	quit  chan struct{}
	done  sync.WaitGroup
	once  sync.Once
	leave func()
}

// queueLen is how many frames wait for a guest before the hub drops them
// (like a switch port's buffer).
const queueLen = 256

// writeTimeout is how long a frame may wait for a guest that is not reading
// (powered off, hung) before it is dropped.
const writeTimeout = 100 * time.Millisecond

func (h *hub) plug() (*port, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	guest := os.NewFile(uintptr(fds[0]), "guest-net")
	hubEnd := os.NewFile(uintptr(fds[1]), "hub-net")
	c, err := net.FileConn(hubEnd)
	hubEnd.Close() // FileConn made its own copy
	if err != nil {
		guest.Close()
		return nil, fmt.Errorf("hub end: %w", err)
	}
	p := &port{hub: h, guest: guest, conn: c.(*net.UnixConn), out: make(chan []byte, queueLen), quit: make(chan struct{})}
	h.mu.Lock()
	h.ports[p] = true
	h.mu.Unlock()
	p.done.Add(2)
	go p.read()
	go p.write()
	return p, nil
}

// read takes the frames the guest sends and queues them to every other port.
func (p *port) read() {
	defer p.done.Done()
	buf := make([]byte, 65536)
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.hub.logger.Debug("hub read", "err", err)
			}
			return
		}
		p.hub.mu.Lock()
		for q := range p.hub.ports {
			if q == p {
				continue
			}
			select {
			case q.out <- append([]byte(nil), buf[:n]...):
			default: // the port's queue is full: dropped, as a switch would
			}
		}
		p.hub.mu.Unlock()
	}
}

// write hands queued frames to the guest.
func (p *port) write() {
	defer p.done.Done()
	for {
		select {
		case <-p.quit:
			return
		case f := <-p.out:
			_ = p.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := p.conn.Write(f); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				p.hub.logger.Debug("hub write", "err", err)
			}
		}
	}
}

// Close unplugs the port and waits for its goroutines.
func (p *port) Close() error {
	var err error
	p.once.Do(func() {
		p.leave()
		close(p.quit)
		err = errors.Join(p.conn.Close(), p.guest.Close())
		p.done.Wait()
	})
	return err
}
