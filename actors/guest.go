package actors

// Guest nodes (jobs.Role.Host, LAVA's ssh guests): a guest takes no board
// of the lab; its node waits until its host role has sent
// jobs.StartMessage, then its boot opens a session (a login) on the host
// node's board, and its board actor runs the same console and test-shell
// code over that session's console.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/troupe-lab/troupe/boot"
	"github.com/troupe-lab/troupe/coordinator"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/testshell"
)

// Sessions is a board that guests log in to: a session is a shell of its
// own on the board, with a console of its own (sim: a second shell in the
// board's sandbox; hardware: an ssh login). addr is the address the
// host's message gave ("" if the job names none); closing the console
// ends the session.
type Sessions interface {
	OpenSession(ctx context.Context, addr string) (io.ReadWriteCloser, error)
}

// ErrGuestNotStarted: a guest's host role never sent jobs.StartMessage
// (it ended first, or the guest's MultiNode timeout passed). The job's
// fault, not a board's.
var ErrGuestNotStarted = errors.New("guest not started")

// ErrNoSessions: a guest's host board cannot host guests (its backend
// opens no sessions: QEMU boards). The job's fault (or the lab's), not
// the board's: running it again would not help.
var ErrNoSessions = errors.New("cannot host ssh guests")

// sessionBooter is a backend whose boot logs in to another board: a
// guest's (guestBoard).
type sessionBooter interface {
	BootSession(ctx context.Context, addr string) error
}

// hostBoards are the backends of a group's host nodes (the nodes of the
// roles its guests name), for their guests' sessions, and how many of
// each host's guests are still running.
type hostBoards struct {
	mu sync.Mutex
	m  map[string]*hostEntry
}

type hostEntry struct {
	remote  bool          // the host's board is on a worker: not reachable here
	b       Backend       // nil until the host's board is open, and once it is going
	running int           // guests not yet ended
	idle    chan struct{} // closed when running reaches 0
}

// expect counts one more guest of host.
func (h *hostBoards) expect(host string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entry(host)
	e.running++
}

func (h *hostBoards) entry(host string) *hostEntry {
	if h.m == nil {
		h.m = map[string]*hostEntry{}
	}
	e := h.m[host]
	if e == nil {
		e = &hostEntry{idle: make(chan struct{})}
		h.m[host] = e
	}
	return e
}

// guestEnded counts a guest of host as ended (once per guest node).
func (h *hostBoards) guestEnded(host string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entry(host)
	if e.running > 0 {
		e.running--
		if e.running == 0 {
			close(e.idle)
		}
	}
}

// idle is closed once every guest of host has ended; nil if none runs.
func (h *hostBoards) idle(host string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.m[host]
	if e == nil || e.running == 0 {
		return nil
	}
	return e.idle
}

func (h *hostBoards) set(host string, b Backend) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.entry(host).b = b
}

// setRemote notes that host's board is on a worker.
func (h *hostBoards) setRemote(host string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.entry(host).remote = true
}

func (h *hostBoards) isRemote(host string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.m[host]
	return e != nil && e.remote
}

// drop forgets host's board: it is going off.
func (h *hostBoards) drop(host string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.m[host]; e != nil {
		e.b = nil
	}
}

func (h *hostBoards) get(host string) Backend {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.m[host]; e != nil {
		return e.b
	}
	return nil
}

// guestsEnded tells a host node whose node has ended complete that its
// guests have ended too: its board may go off.
type guestsEnded struct{}

// hostNode is the node a guest role's nodes log in to: its host role has
// one node.
func hostNode(r jobs.Role) string { return r.Host + "-0" }

// boardName is the name of the board node n runs on: its own, or for a
// guest its host's (whose failures, and retries, its sessions share).
func boardName(cfg Config, n jobs.Node) string {
	if r, ok := cfg.Job.Role(n.Role); ok && r.Guest() {
		return cfg.Boards[hostNode(r)].Name
	}
	return cfg.Boards[n.Name].Name
}

// isHost reports whether role is the host of a guest role of j.
func isHost(j *jobs.Job, role string) bool {
	for _, r := range j.Roles {
		if r.Host == role {
			return true
		}
	}
	return false
}

// guestBoard is a guest node's backend: no power, no deploy; its boot
// opens a session on the host node's board, whose console its Console
// carries from then on. Powering it off ends the session.
type guestBoard struct {
	host  string // the host node
	hosts *hostBoards
	con   *sessionConsole

	mu   sync.Mutex
	on   bool    // a session is open
	hb   Backend // the host's board, once a session is open
	open bool    // closed for good
}

func newGuestBoard(host string, hosts *hostBoards) *guestBoard {
	return &guestBoard{host: host, hosts: hosts, con: newSessionConsole(), open: true}
}

func (g *guestBoard) Console() io.ReadWriteCloser { return g.con }

// On does nothing: a guest's session is opened by its boot.
func (g *guestBoard) On(context.Context) error { return nil }

// Off ends the session. It never fails: a guest has no power to verify,
// and a session left behind ends with its host board's power.
func (g *guestBoard) Off(context.Context) error {
	g.mu.Lock()
	g.on = false
	g.mu.Unlock()
	_ = g.con.Close()
	return nil
}

// State reports whether the session is open on a board that is on.
func (g *guestBoard) State(ctx context.Context) (bool, error) {
	g.mu.Lock()
	on, hb := g.on, g.hb
	g.mu.Unlock()
	if !on {
		return false, nil
	}
	hon, err := hb.State(ctx)
	if err != nil {
		return false, nil //nolint:nilerr // a closed host board is off
	}
	return hon && !g.con.ended(), nil
}

// Deploy has nothing to put: a guest uses its host's board as it is.
func (g *guestBoard) Deploy(_ context.Context, image string) error {
	if image != "" {
		return fmt.Errorf("a guest logs in to its host's board: it has no image to deploy (%s)", image)
	}
	return nil
}

func (g *guestBoard) Close() error {
	g.mu.Lock()
	g.on, g.open = false, false
	g.mu.Unlock()
	_ = g.con.Close()
	return nil
}

// BootSession opens the session on the host node's board (once: a later
// boot keeps it).
func (g *guestBoard) BootSession(ctx context.Context, addr string) error {
	g.mu.Lock()
	on, open := g.on, g.open
	g.mu.Unlock()
	if on {
		return nil
	}
	if !open {
		return errors.New("session closed")
	}
	if g.hosts.isRemote(g.host) {
		return fmt.Errorf("the board of host node %s is on a worker: it %w here (a guest logs in to its host's board from the server's process)", g.host, ErrNoSessions)
	}
	hb := g.hosts.get(g.host)
	if hb == nil {
		return fmt.Errorf("host node %s has no board in this process to log in to (ended, or on a worker)", g.host)
	}
	s, ok := hb.(Sessions)
	if !ok {
		return fmt.Errorf("the board of host node %s %w: its backend opens no sessions (sim and hardware boards with [board.ssh] do)", g.host, ErrNoSessions)
	}
	rw, err := s.OpenSession(ctx, addr)
	if err != nil {
		return fmt.Errorf("log in to the board of host node %s: %w", g.host, err)
	}
	if err := g.con.attach(rw); err != nil {
		return err
	}
	g.mu.Lock()
	g.on, g.hb = true, hb
	g.mu.Unlock()
	return nil
}

// sessionConsole is a guest's console: it carries nothing until a session
// is attached, then that session's bytes. Reads wait for the session;
// writes before it fail.
type sessionConsole struct {
	ready chan struct{} // closed once attached or closed
	once  sync.Once

	mu     sync.Mutex
	rw     io.ReadWriteCloser
	closed bool
	eof    bool // the session's reads have ended
}

func newSessionConsole() *sessionConsole { return &sessionConsole{ready: make(chan struct{})} }

func (c *sessionConsole) attach(rw io.ReadWriteCloser) error {
	c.mu.Lock()
	if c.closed || c.rw != nil {
		c.mu.Unlock()
		_ = rw.Close()
		return errors.New("session console closed")
	}
	c.rw = rw
	c.mu.Unlock()
	c.once.Do(func() { close(c.ready) })
	return nil
}

func (c *sessionConsole) Read(p []byte) (int, error) {
	<-c.ready
	c.mu.Lock()
	rw := c.rw
	c.mu.Unlock()
	if rw == nil {
		return 0, io.EOF
	}
	n, err := rw.Read(p)
	if err != nil {
		c.mu.Lock()
		c.eof = true
		c.mu.Unlock()
	}
	return n, err
}

func (c *sessionConsole) Write(p []byte) (int, error) {
	c.mu.Lock()
	rw, closed := c.rw, c.closed
	c.mu.Unlock()
	if rw == nil || closed {
		return 0, errors.New("no session open")
	}
	return rw.Write(p)
}

// Close ends the session, if any; reads end.
func (c *sessionConsole) Close() error {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	rw := c.rw
	c.mu.Unlock()
	c.once.Do(func() { close(c.ready) })
	if rw == nil || already {
		return nil
	}
	return rw.Close()
}

// ended reports whether the session's reads have ended (its shell is
// gone).
func (c *sessionConsole) ended() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.eof || c.closed
}

// awaitStart waits, through the coordinator, until every node of the
// host role has sent jobs.StartMessage (bounded by the guest role's
// MultiNode timeout and ctx).
func awaitStart(ctx context.Context, mn testshell.MultiNode, host string) error {
	if mn == nil {
		return fmt.Errorf("%w: no coordinator", ErrGuestNotStarted)
	}
	rep, err := mn.Call(ctx, coordinator.Request{Kind: coordinator.WaitAll, ID: jobs.StartMessage, Role: host})
	if err != nil {
		return fmt.Errorf("%w: waiting for %s of role %s: %w", ErrGuestNotStarted, jobs.StartMessage, host, err)
	}
	if !rep.OK {
		return fmt.Errorf("%w: role %s did not send %s: %s", ErrGuestNotStarted, host, jobs.StartMessage, rep.Err)
	}
	return nil
}

// hostAddress is the address a guest's boot logs in to: the value of
// ad.Key in the host's message ad.Message ("" without ad).
func hostAddress(ctx context.Context, mn testshell.MultiNode, ad *jobs.Address) (string, error) {
	if ad == nil {
		return "", nil
	}
	if mn == nil {
		return "", errors.New("host address: no coordinator")
	}
	rep, err := mn.Call(ctx, coordinator.Request{Kind: coordinator.Wait, ID: ad.Message})
	if err != nil {
		return "", fmt.Errorf("host address: wait %s: %w", ad.Message, err)
	}
	if !rep.OK {
		return "", fmt.Errorf("host address: wait %s: %s", ad.Message, rep.Err)
	}
	for _, kv := range rep.Data {
		if kv.Key == ad.Key {
			return kv.Value, nil
		}
	}
	return "", fmt.Errorf("host address: message %s has no key %s", ad.Message, ad.Key)
}

var _ boot.Power = (*guestBoard)(nil)
