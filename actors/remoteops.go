package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

// Operator commands on a worker's board (troupe power, troupe console
// through the server): the server asks the board's worker over the
// remote; the worker switches the board's power or attaches to its
// console with its own lab entry.

// WorkerLostError is the error of a command on a board whose worker is
// lost.
type WorkerLostError struct{ Board, Worker string }

func (e *WorkerLostError) Error() string {
	return fmt.Sprintf("device %s: its worker %s is lost (offline)", e.Board, e.Worker)
}

// ErrRefused marks a command the board's worker refused (not a hardware
// board, a board in a job's session): bad input, not an infrastructure
// failure.
var ErrRefused = errors.New("refused")

// refusedError is a refusal as the worker words it.
type refusedError string

func (e refusedError) Error() string { return string(e) }
func (e refusedError) Unwrap() error { return ErrRefused }

// ErrNotWorkerBoard: the board is not a worker's.
var ErrNotWorkerBoard = errors.New("not a worker's board")

// workerOf asks the lab actor for the worker of a board.
type workerOf struct{ board string }

// workerOfAnswer answers workerOf; pid nil: not a worker's board.
type workerOfAnswer struct {
	worker string
	pid    *actor.PID
	gone   chan struct{}
}

func (a *labActor) workerOf(ctx actor.Context, m *workerOf) {
	w, ok := a.boardWorker[m.board]
	if !ok || a.links[w] == nil {
		ctx.Respond(&workerOfAnswer{})
		return
	}
	ctx.Respond(&workerOfAnswer{worker: w, pid: a.links[w].pid, gone: a.links[w].gone})
}

// link is the worker of board and how to reach it; a lost worker is a
// WorkerLostError.
func (l *Lab) link(board string) (*workerOfAnswer, error) {
	res, err := l.system.Root.RequestFuture(l.pid, &workerOf{board: board}, askTimeout).Result()
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	a, _ := res.(*workerOfAnswer)
	switch {
	case a == nil || a.pid == nil:
		return nil, fmt.Errorf("device %s: %w", board, ErrNotWorkerBoard)
	case isClosed(a.gone):
		return nil, &WorkerLostError{Board: board, Worker: a.worker}
	}
	return a, nil
}

// WorkerPower switches a worker's board (action on, off, cycle) or reads
// its power (status) on its worker, within ctx's deadline; it returns the
// state read back.
func (l *Lab) WorkerPower(ctx context.Context, board, action string) (bool, error) {
	a, err := l.link(board)
	if err != nil {
		return false, err
	}
	timeout := time.Minute
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	fut := l.system.Root.RequestFuture(a.pid, &workerpb.PowerBoard{Board: board, Action: action, TimeoutMs: timeout.Milliseconds()}, timeout+5*time.Second)
	got := make(chan answer, 1)
	go func() {
		res, err := fut.Result()
		got <- answer{res, err}
	}()
	select {
	case r := <-got:
		if r.err != nil {
			return false, fmt.Errorf("power %s of %s: worker %s: %w", action, board, a.worker, r.err)
		}
		d, ok := r.res.(*workerpb.PowerDone)
		switch {
		case !ok || d.Worker != a.worker || d.Board != board:
			return false, fmt.Errorf("power %s of %s: worker %s answered for another board", action, board, a.worker)
		case d.Refused:
			return false, refusedError(d.Error)
		case d.Error != "":
			return false, errors.New(d.Error)
		}
		return d.On, nil
	case <-a.gone:
		return false, &WorkerLostError{Board: board, Worker: a.worker}
	case <-ctx.Done():
		return false, fmt.Errorf("power %s of %s: %w", action, board, ctx.Err())
	}
}

type answer struct {
	res interface{}
	err error
}

// consoleBuffer bounds the console output held for a slow reader.
const consoleBuffer = 256

// WorkerConsole attaches to the console of a worker's board: the
// board's bytes as they come, what is written typed there. Closing it
// detaches. A lost worker ends it with a WorkerLostError.
func (l *Lab) WorkerConsole(board string) (io.ReadWriteCloser, error) {
	a, err := l.link(board)
	if err != nil {
		return nil, err
	}
	c := &workerConsole{root: l.system.Root, board: board, worker: a.worker, gone: a.gone,
		out: make(chan []byte, consoleBuffer), opened: make(chan error, 1), ended: make(chan struct{})}
	c.self = l.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &consoleBridge{c: c, boards: a.pid, next: 1, held: map[uint64]*workerpb.ConsoleOutput{}}
	}))
	t := time.NewTimer(openTimeout)
	defer t.Stop()
	select {
	case err := <-c.opened:
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		return c, nil
	case <-a.gone:
		_ = c.Close()
		return nil, &WorkerLostError{Board: board, Worker: a.worker}
	case <-t.C:
		_ = c.Close()
		return nil, fmt.Errorf("console of %s: worker %s did not attach it within %s", board, a.worker, openTimeout)
	}
}

// workerConsole is the server's end of a worker board's console.
type workerConsole struct {
	root          *actor.RootContext
	self          *actor.PID // its bridge actor
	board, worker string
	gone          <-chan struct{}
	out           chan []byte
	opened        chan error

	mu      sync.Mutex
	host    *actor.PID // the worker's console actor
	pending []byte     // read but not yet returned
	ended   chan struct{}
	why     error // set before ended is closed
	closed  bool
}

// end ends the console with why (once).
func (c *workerConsole) end(why error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.why == nil {
		c.why = why
		close(c.ended)
	}
}

func (c *workerConsole) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		select {
		case b := <-c.out:
			c.pending = b
		case <-c.ended:
			select {
			case b := <-c.out: // what came before the end first
				c.pending = b
			default:
				return 0, c.why
			}
		case <-c.gone:
			return 0, &WorkerLostError{Board: c.board, Worker: c.worker}
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *workerConsole) Write(p []byte) (int, error) {
	c.mu.Lock()
	host, why := c.host, c.why
	c.mu.Unlock()
	switch {
	case why != nil:
		return 0, why
	case host == nil:
		return 0, fmt.Errorf("console of %s: not attached", c.board)
	}
	select {
	case <-c.gone:
		return 0, &WorkerLostError{Board: c.board, Worker: c.worker}
	default:
	}
	c.root.Send(host, &workerpb.ConsoleInput{Session: c.self.Id, Data: append([]byte(nil), p...)})
	return len(p), nil
}

// Close detaches from the console (the worker releases it).
func (c *workerConsole) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	host := c.host
	c.mu.Unlock()
	if host != nil {
		c.root.Send(host, &workerpb.CloseConsole{Session: c.self.Id})
	}
	c.end(io.EOF)
	_ = c.root.StopFuture(c.self).Wait()
	return nil
}

// consoleBridge takes a worker console's messages for workerConsole.
type consoleBridge struct {
	c      *workerConsole
	boards *actor.PID
	next   uint64
	held   map[uint64]*workerpb.ConsoleOutput
}

func (b *consoleBridge) Receive(ctx actor.Context) {
	c := b.c
	switch m := ctx.Message().(type) {
	case *actor.Started:
		ctx.Request(b.boards, &workerpb.OpenConsole{Session: ctx.Self().Id, Board: c.board})
	case *workerpb.ConsoleOpened:
		if m.Worker != c.worker || m.Session != ctx.Self().Id {
			return
		}
		var err error
		switch {
		case m.Refused:
			err = refusedError(m.Error)
		case m.Error != "":
			err = fmt.Errorf("console of %s on worker %s: %s", c.board, c.worker, m.Error)
		default:
			c.mu.Lock()
			c.host = ctx.Sender()
			c.mu.Unlock()
		}
		select {
		case c.opened <- err:
		default:
		}
	case *workerpb.ConsoleOutput:
		if m.Worker != c.worker || m.Session != ctx.Self().Id || m.Seq < b.next {
			return
		}
		if m.Seq > b.next {
			if len(b.held) < maxHeldBatches {
				b.held[m.Seq] = m
			} else {
				c.end(fmt.Errorf("console of %s: output from worker %s lost", c.board, c.worker))
			}
			return
		}
		for m != nil {
			b.output(m)
			b.next++
			m = b.held[b.next]
			delete(b.held, b.next)
		}
	}
}

func (b *consoleBridge) output(m *workerpb.ConsoleOutput) {
	c := b.c
	if len(m.Data) > 0 {
		select {
		case c.out <- m.Data:
		default:
			c.end(fmt.Errorf("console of %s: the reader fell behind by more than %d messages", c.board, consoleBuffer))
			return
		}
	}
	if m.Closed {
		why := error(io.EOF)
		if m.Error != "" {
			why = fmt.Errorf("console of %s on worker %s: %s", c.board, c.worker, m.Error)
		}
		c.end(why)
	}
}

// The worker's side.

// WorkerPowerSwitch is a board's power switch as a worker's operator
// commands use it.
type WorkerPowerSwitch interface {
	On(ctx context.Context) error
	Off(ctx context.Context) error
	State(ctx context.Context) (bool, error)
}

// powered is a boards actor's note that a power command ended, with the
// answer it gives the command's sender once the board is free again (an
// answer sent first let the sender's next command find the board still
// powering).
type powered struct {
	board string
	to    *actor.PID
	reply *workerpb.PowerDone
}

// power runs a PowerBoard off the actor and answers its sender.
func (w *workerBoards) power(ctx actor.Context, m *workerpb.PowerBoard) {
	reply := &workerpb.PowerDone{Worker: w.cfg.Worker, Board: m.Board}
	refuse := func(format string, args ...interface{}) {
		reply.Error, reply.Refused = fmt.Sprintf(format, args...), true
		ctx.Respond(reply)
	}
	b, ok := w.byName[m.Board]
	switch {
	case !ok:
		refuse("worker %s has no board %s", w.cfg.Worker, m.Board)
		return
	case w.busy[m.Board] != "" && !w.consoles[w.busy[m.Board]]:
		refuse("board %s is in a job's session on worker %s", m.Board, w.cfg.Worker)
		return
	case w.powering[m.Board]:
		refuse("a power command is running on board %s", m.Board)
		return
	case w.cfg.Power == nil:
		refuse("worker %s switches no boards by hand", w.cfg.Worker)
		return
	case b.Hardware == nil:
		refuse("board %s: not a hardware board (backend %s)", b.Name, b.Backend)
		return
	}
	sw, err := w.cfg.Power(b)
	if err != nil {
		refuse("%v", err)
		return
	}
	to, self, root := ctx.Sender(), ctx.Self(), ctx.ActorSystem().Root
	if to == nil {
		return
	}
	w.powering[m.Board] = true
	timeout := min(max(time.Duration(m.TimeoutMs)*time.Millisecond, time.Second), maxPowerTimeout)
	go func() {
		defer root.Send(self, &powered{board: m.Board, to: to, reply: reply})
		pctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var err error
		switch m.Action {
		case "on":
			err = sw.On(pctx)
		case "off":
			err = sw.Off(pctx)
		case "cycle":
			if err = sw.Off(pctx); err == nil {
				err = sw.On(pctx)
			}
		case "status":
		default:
			reply.Error, reply.Refused = fmt.Sprintf("action %q: want on, off, cycle or status", m.Action), true
			return
		}
		if err == nil {
			reply.On, err = sw.State(pctx)
		}
		if err != nil {
			reply.Error = err.Error()
		}
	}()
}

// maxPowerTimeout bounds a power command on a worker, whatever the
// server asks.
const maxPowerTimeout = 10 * time.Minute

// openConsole attaches a console actor to a board for the server's
// bridge; the board is in no job's session meanwhile.
func (w *workerBoards) openConsole(ctx actor.Context, m *workerpb.OpenConsole) {
	refuse := func(format string, args ...interface{}) {
		ctx.Respond(&workerpb.ConsoleOpened{Worker: w.cfg.Worker, Session: m.Session, Error: fmt.Sprintf(format, args...), Refused: true})
	}
	b, why := w.available(m.Board, m.Session)
	switch {
	case why != "":
		refuse("%s", why)
		return
	case w.cfg.Console == nil:
		refuse("worker %s attaches no consoles", w.cfg.Worker)
		return
	case b.Hardware == nil:
		refuse("board %s: not a hardware board (backend %s)", b.Name, b.Backend)
		return
	}
	bridge := ctx.Sender()
	if bridge == nil {
		return
	}
	open := w.cfg.Console
	h := ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &consoleHost{worker: w.cfg.Worker, session: m.Session, board: b, open: open, bridge: bridge}
	}))
	w.sessions[m.Session] = h
	w.boardOf[h.Id], w.sessionOf[h.Id] = m.Board, m.Session
	w.busy[m.Board] = m.Session
	w.consoles[m.Session] = true
}

// consoleHost is a board's console attached for the server's bridge.
type consoleHost struct {
	worker, session string
	board           lab.Board
	open            func(lab.Board) (io.ReadWriteCloser, error)
	bridge          *actor.PID
	con             io.ReadWriteCloser
	done            chan struct{} // the reader's end

	// A console opened after the host stopped is closed at once.
	mu      sync.Mutex
	stopped bool
	opened  io.ReadWriteCloser // opened, not yet taken by the actor
}

type consoleReady struct {
	con io.ReadWriteCloser
	err error
}

func (h *consoleHost) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		self, root, open, b := ctx.Self(), ctx.ActorSystem().Root, h.open, h.board
		go func() {
			con, err := open(b)
			h.mu.Lock()
			stopped := h.stopped
			if !stopped {
				h.opened = con
			}
			h.mu.Unlock()
			if stopped {
				if con != nil {
					_ = con.Close()
				}
				return
			}
			root.Send(self, &consoleReady{con: con, err: err})
		}()
	case *consoleReady:
		h.mu.Lock()
		h.opened = nil
		h.mu.Unlock()
		if m.err != nil {
			ctx.Request(h.bridge, &workerpb.ConsoleOpened{Worker: h.worker, Session: h.session, Error: m.err.Error()})
			ctx.Stop(ctx.Self())
			return
		}
		h.con, h.done = m.con, make(chan struct{})
		ctx.Request(h.bridge, &workerpb.ConsoleOpened{Worker: h.worker, Session: h.session})
		go h.read(ctx.ActorSystem().Root, ctx.Self())
	case *workerpb.ConsoleInput:
		if h.con != nil && m.Session == h.session {
			if _, err := h.con.Write(m.Data); err != nil {
				ctx.Stop(ctx.Self())
			}
		}
	case *workerpb.CloseConsole:
		if m.Session == h.session {
			ctx.Stop(ctx.Self())
		}
	case *consoleEnded:
		ctx.Stop(ctx.Self())
	case *actor.Stopping:
		h.mu.Lock()
		h.stopped = true
		late := h.opened
		h.mu.Unlock()
		if late != nil {
			_ = late.Close()
		}
		if h.con != nil {
			_ = h.con.Close()
			<-h.done
		}
	}
}

type consoleEnded struct{}

// read sends the console's bytes to the bridge until the console ends.
func (h *consoleHost) read(root *actor.RootContext, self *actor.PID) {
	defer close(h.done)
	var seq uint64
	buf := make([]byte, 4096)
	for {
		n, err := h.con.Read(buf)
		if n > 0 {
			seq++
			root.Send(h.bridge, &workerpb.ConsoleOutput{Worker: h.worker, Session: h.session, Seq: seq, Data: append([]byte(nil), buf[:n]...)})
		}
		if err != nil {
			seq++
			out := &workerpb.ConsoleOutput{Worker: h.worker, Session: h.session, Seq: seq, Closed: true}
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				out.Error = err.Error()
			}
			root.Send(h.bridge, out)
			root.Send(self, &consoleEnded{})
			return
		}
	}
}
