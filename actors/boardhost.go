package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/coordinator"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/testshell"
	"github.com/troupe-lab/troupe/workers/images"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

// WorkerBoardsConfig is a worker process's boards, as its boards actor
// runs them for the server.
type WorkerBoardsConfig struct {
	Worker string
	Boards []lab.Board
	// Open makes the backend of a board (as LabConfig.Open).
	Open   func(node string, b lab.Board) (Backend, error)
	Clock  Clock        // nil: the wall clock
	Logger *slog.Logger // nil: discard
	// Images keeps the deploy images fetched from the server; nil: the
	// worker's boards take no images.
	Images *images.Cache
	// Power and Console are a board's power switch and console for the
	// operator commands through the server (troupe power, troupe
	// console); nil: refused.
	Power   func(b lab.Board) (WorkerPowerSwitch, error)
	Console func(b lab.Board) (io.ReadWriteCloser, error)
}

// ResetBoards asks a boards actor to release every board it runs (a
// worker about to register again: its server forgot the sessions). It
// answers with ResetDone once all are off.
type ResetBoards struct{}

// ResetDone answers ResetBoards.
type ResetDone struct{}

// NewWorkerBoards makes the boards actor of a worker: it opens a board
// for the server's board proxy (OpenBoard), spawning a board host that
// drives it with the board actor every lab uses, and routes CloseBoard to
// it. A board is in one session at a time.
func NewWorkerBoards(cfg WorkerBoardsConfig) actor.Actor {
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &workerBoards{cfg: cfg, byName: map[string]lab.Board{}, sessions: map[string]*actor.PID{},
		boardOf: map[string]string{}, sessionOf: map[string]string{}, busy: map[string]string{}, powering: map[string]bool{},
		consoles: map[string]bool{}}
	for _, b := range cfg.Boards {
		w.byName[b.Name] = b
	}
	return w
}

type workerBoards struct {
	cfg       WorkerBoardsConfig
	byName    map[string]lab.Board
	sessions  map[string]*actor.PID // session → its board host
	boardOf   map[string]string     // host PID id → board
	sessionOf map[string]string     // host PID id → session
	busy      map[string]string     // board → session (a node's, or a console's)
	powering  map[string]bool       // boards running a power command
	consoles  map[string]bool       // the sessions that are consoles
	resets    []*actor.PID          // waiting for every host to end
}

// hostClosed is a board host's note to the boards actor that its board is
// released: the board is free from now on (a next session may open it at
// once), then the CloseBoard is answered.
type hostClosed struct {
	host   *actor.PID
	to     *actor.PID
	answer *workerpb.BoardClosed
}

func (w *workerBoards) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *workerpb.OpenBoard:
		w.open(ctx, m)
	case *workerpb.PowerBoard:
		w.power(ctx, m)
	case *powered:
		delete(w.powering, m.board)
		ctx.Send(m.to, m.reply)
	case *workerpb.OpenConsole:
		w.openConsole(ctx, m)
	case *workerpb.CloseBoard:
		if h, ok := w.sessions[m.Session]; ok {
			ctx.RequestWithCustomSender(h, m, ctx.Sender())
			return
		}
		ctx.Respond(&workerpb.BoardClosed{Worker: w.cfg.Worker, Session: m.Session})
	case *ResetBoards:
		if len(w.sessions) == 0 {
			ctx.Respond(&ResetDone{})
			return
		}
		w.resets = append(w.resets, ctx.Sender())
		for _, h := range w.sessions {
			ctx.Stop(h)
		}
	case *hostClosed:
		w.free(m.host.Id)
		if m.to != nil {
			ctx.Send(m.to, m.answer)
		}
	case *actor.Terminated:
		w.free(m.Who.Id)
		delete(w.boardOf, m.Who.Id)
		delete(w.sessionOf, m.Who.Id)
		if len(w.sessions) == 0 {
			for _, r := range w.resets {
				ctx.Send(r, &ResetDone{})
			}
			w.resets = nil
		}
	}
}

// free ends the session of a board host: its board may open again.
func (w *workerBoards) free(host string) {
	board, session := w.boardOf[host], w.sessionOf[host]
	if w.busy[board] == session {
		delete(w.busy, board)
	}
	if h, ok := w.sessions[session]; ok && h.Id == host {
		delete(w.sessions, session)
		delete(w.consoles, session)
	}
}

func (w *workerBoards) open(ctx actor.Context, m *workerpb.OpenBoard) {
	b, why := w.available(m.Board, m.Session)
	if why != "" {
		ctx.Respond(&workerpb.BoardOpened{Worker: w.cfg.Worker, Session: m.Session, Error: why})
		return
	}
	proxy := ctx.Sender()
	if proxy == nil {
		return
	}
	open, group := m, w.group(m)
	h := ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &boardHost{cfg: w.cfg, open: open, group: group, board: b, proxy: proxy, fetching: map[int32]context.CancelFunc{}}
	}))
	w.sessions[m.Session] = h
	w.boardOf[h.Id], w.sessionOf[h.Id] = m.Board, m.Session
	w.busy[m.Board] = m.Session
}

// available returns board name for a new session, or why it cannot have
// one (a job's board or a console's alike).
func (w *workerBoards) available(name, session string) (lab.Board, string) {
	b, ok := w.byName[name]
	switch {
	case !ok:
		return b, fmt.Sprintf("worker %s has no board %s", w.cfg.Worker, name)
	case session == "" || w.sessions[session] != nil:
		return b, fmt.Sprintf("session %q already open", session)
	case w.busy[name] != "":
		return b, fmt.Sprintf("board %s is in session %s on worker %s", name, w.busy[name], w.cfg.Worker)
	case len(w.resets) > 0:
		return b, fmt.Sprintf("worker %s is releasing its boards", w.cfg.Worker)
	}
	return b, ""
}

// group is the board's group as OpenBoard tells it, with the boards of
// its nodes on this worker.
func (w *workerBoards) group(m *workerpb.OpenBoard) lab.Group {
	g := lab.Group{ID: m.Group, Node: m.Node, Boards: map[string]lab.Board{}, Addresses: map[string]string{}}
	for _, n := range m.GroupNodes {
		g.Nodes = append(g.Nodes, jobs.Node{Name: n.Name, Role: n.Role})
		if n.Address != "" {
			g.Addresses[n.Name] = n.Address
		}
		if b, ok := w.byName[n.Board]; ok {
			g.Boards[n.Name] = b
		}
	}
	return g
}

// flushEvery is how often a board host sends its console batch.
const flushEvery = 100 * time.Millisecond

type hostFlush struct{}
type hostChildGone struct{}

// boardHost runs one node's board on the worker for the server's board
// proxy: the board actor as in any lab, its console batched to the proxy,
// its MultiNode calls sent to the proxy and answered from there.
type boardHost struct {
	cfg     WorkerBoardsConfig
	open    *workerpb.OpenBoard
	group   lab.Group // the board's group, for a board with group networks
	board   lab.Board
	proxy   *actor.PID
	child   *actor.PID
	log     *batchLog
	mn      *remoteMN
	closer  *actor.PID // of CloseBoard, answered once the board is off
	stillOn string
	stop    func() bool
	// fetching are the deploy actions whose images are being fetched;
	// releases end the session's hold on the images it fetched.
	fetching map[int32]context.CancelFunc
	releases []func()
	life     context.Context // ends when the host stops
	endLife  context.CancelFunc
}

func (h *boardHost) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		h.start(ctx)
	case *workerpb.DoAction:
		switch {
		case h.child == nil || m.Session != h.open.Session:
		case len(m.Images) > 0:
			h.fetchImages(ctx, m)
		default:
			ctx.Send(h.child, fromPBAction(m))
		}
	case *imagesFetched:
		delete(h.fetching, m.m.Index)
		h.releases = append(h.releases, m.releases...)
		switch {
		case m.err != nil:
			h.flush(ctx)
			ctx.Send(h.proxy, h.done(&actionResult{index: int(m.m.Index), err: fmt.Errorf("board %s: %w", h.board.Name, m.err)}))
		case h.child != nil:
			ctx.Send(h.child, imagesIn(m.m, m.paths))
		}
	case *workerpb.AbortAction:
		if cancel := h.fetching[m.Index]; cancel != nil && m.Session == h.open.Session {
			cancel()
		}
		if h.child != nil && m.Session == h.open.Session {
			ctx.Send(h.child, &abortAction{index: int(m.Index)})
		}
	case *actionResult:
		h.flush(ctx)
		ctx.Send(h.proxy, h.done(m))
	case *workerpb.MnReply:
		if h.mn != nil && m.Session == h.open.Session {
			h.mn.deliver(m)
		}
	case *hostFlush:
		h.flush(ctx)
		h.arm(ctx)
	case *boardStillOn:
		h.stillOn = m.err.Error()
	case *workerpb.CloseBoard:
		h.closer = ctx.Sender()
		if h.child == nil {
			h.closed(ctx)
			return
		}
		ctx.Stop(h.child)
	case *actor.Terminated:
		// Queued behind what the board actor sent before it ended (its
		// boardStillOn).
		ctx.Send(ctx.Self(), &hostChildGone{})
	case *hostChildGone:
		h.child = nil
		h.closed(ctx)
	case *actor.Stopping:
		if h.stop != nil {
			h.stop()
		}
		if h.mn != nil {
			h.mn.end()
		}
		if h.endLife != nil {
			h.endLife()
		}
		for _, release := range h.releases {
			release()
		}
	}
}

func (h *boardHost) start(ctx actor.Context) {
	reply := &workerpb.BoardOpened{Worker: h.cfg.Worker, Session: h.open.Session}
	backend, err := h.cfg.Open(h.open.Node, h.board)
	if err != nil {
		reply.Error = err.Error()
		ctx.Request(h.proxy, reply)
		return
	}
	if n, ok := backend.(Networked); ok && h.group.ID != "" {
		if reply.Addrs, err = n.JoinGroup(h.group); err != nil {
			_ = backend.Close()
			reply.Error = fmt.Sprintf("board %s joins the group network: %v", h.board.Name, err)
			ctx.Request(h.proxy, reply)
			return
		}
	}
	limit := 2 * h.open.LogLimit
	if limit <= 0 {
		limit = 2 * logbook.DefaultLimit
	}
	h.log = &batchLog{clock: h.cfg.Clock, limit: limit}
	h.mn = &remoteMN{root: ctx.ActorSystem().Root, proxy: h.proxy, worker: h.cfg.Worker, session: h.open.Session,
		timeout: time.Duration(h.open.MnTimeoutMs) * time.Millisecond, calls: map[uint64]chan *workerpb.MnReply{}, quit: make(chan struct{})}
	cfg := Config{Clock: h.cfg.Clock, Logger: h.cfg.Logger.With("node", h.open.Node, "job", h.open.Job)}
	self, b, node, mn, log := ctx.Self(), h.board, h.open.Node, h.mn, h.log
	h.child = ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
		a := newBoardActor(cfg, node, b, backend, mn, self)
		a.log = log
		return a
	}))
	ctx.Request(h.proxy, reply)
	h.arm(ctx)
}

// HandleFailure supervises the board actor stop-and-report: it is
// stopped (releasing the board); the running action's result never comes,
// so the node's action timeout ends it on the server.
func (h *boardHost) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason, _ interface{}) {
	h.cfg.Logger.Error("board actor crashed", "board", h.board.Name, "reason", fmt.Sprint(reason))
	sup.StopChildren(child)
}

func (h *boardHost) arm(ctx actor.Context) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	h.stop = h.cfg.Clock.AfterFunc(flushEvery, func() { root.Send(self, &hostFlush{}) })
}

// closed answers CloseBoard once the board actor has released the board,
// and ends the session.
func (h *boardHost) closed(ctx actor.Context) {
	h.flush(ctx)
	if h.closer != nil {
		ctx.Send(ctx.Parent(), &hostClosed{host: ctx.Self(), to: h.closer,
			answer: &workerpb.BoardClosed{Worker: h.cfg.Worker, Session: h.open.Session, StillOn: h.stillOn}})
		ctx.Stop(ctx.Self())
	}
}

func (h *boardHost) flush(ctx actor.Context) {
	if h.log == nil {
		return
	}
	if b := h.log.take(h.cfg.Worker, h.open.Session); b != nil {
		ctx.Send(h.proxy, b)
	}
}

func (h *boardHost) done(m *actionResult) *workerpb.ActionDone {
	out := &workerpb.ActionDone{Worker: h.cfg.Worker, Session: h.open.Session, Index: int32(m.index),
		ExitCode: int32(m.outcome.ExitCode), Raised: m.outcome.Raised, Invalid: m.outcome.Invalid}
	for _, c := range m.outcome.Cases {
		pc := &workerpb.Case{Name: c.Name, Result: c.Result, Units: c.Units}
		if c.Measurement != nil {
			pc.HasMeasurement, pc.Measurement = true, *c.Measurement
		}
		out.Cases = append(out.Cases, pc)
	}
	if m.err != nil {
		out.Error = m.err.Error()
		out.ShellDied = errors.Is(m.err, testshell.ErrShellDied)
	}
	return out
}

// batchLog gathers a board's console (lines with the time they were read,
// raw bytes) between flushes; past limit bytes of a session it drops the
// rest (the server's book keeps less anyway).
type batchLog struct {
	clock Clock
	limit int64

	mu    sync.Mutex
	seq   uint64
	sent  int64
	lines []*workerpb.Line
	raw   []byte
}

func (l *batchLog) Raw(string) io.Writer { return rawBatch{l} }

func (l *batchLog) Line(_, text string) logbook.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sent += int64(len(text)) + 1; l.sent <= l.limit {
		l.lines = append(l.lines, &workerpb.Line{TimeUnixNano: l.clock.Now().UnixNano(), Text: text})
	}
	return logbook.Entry{}
}

type rawBatch struct{ l *batchLog }

func (r rawBatch) Write(p []byte) (int, error) {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	if r.l.sent += int64(len(p)); r.l.sent <= r.l.limit {
		r.l.raw = append(r.l.raw, p...)
	}
	return len(p), nil
}

// take returns the batch gathered since the last, or nil.
func (l *batchLog) take(worker, session string) *workerpb.ConsoleLines {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 0 && len(l.raw) == 0 {
		return nil
	}
	l.seq++
	b := &workerpb.ConsoleLines{Worker: worker, Session: session, Seq: l.seq, Lines: l.lines, Raw: l.raw}
	l.lines, l.raw = nil, nil
	return b
}

// remoteMN is a worker board's way to the coordinator: each call goes to
// the board proxy on the server, which answers with MnReply.
type remoteMN struct {
	root            *actor.RootContext
	proxy           *actor.PID
	worker, session string
	timeout         time.Duration

	mu    sync.Mutex
	next  uint64
	calls map[uint64]chan *workerpb.MnReply
	quit  chan struct{}
	ended bool
}

func (c *remoteMN) Call(ctx context.Context, r coordinator.Request) (coordinator.Reply, error) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return coordinator.Reply{}, fmt.Errorf("multinode %s %s: the board's session ended", r.Kind, r.ID)
	}
	c.next++
	id, ch := c.next, make(chan *workerpb.MnReply, 1)
	c.calls[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.calls, id)
		c.mu.Unlock()
	}()
	m := &workerpb.MnCall{Worker: c.worker, Session: c.session, Call: id, Kind: string(r.Kind), Id: r.ID, Role: r.Role}
	for _, kv := range r.Data {
		m.Data = append(m.Data, &workerpb.KV{Key: kv.Key, Value: kv.Value})
	}
	c.root.Send(c.proxy, m)
	// The server's client waits the call's timeout and its slack; this
	// end waits for that answer a little longer.
	t := time.NewTimer(c.timeout + 2*slack)
	defer t.Stop()
	select {
	case rep := <-ch:
		if rep.Failed != "" {
			return coordinator.Reply{}, fmt.Errorf("multinode %s %s: %s", r.Kind, r.ID, rep.Failed)
		}
		out := coordinator.Reply{Node: r.Node, Kind: r.Kind, ID: r.ID, OK: rep.Ok, Err: rep.Error}
		for _, d := range rep.Data {
			out.Data = append(out.Data, coordinator.Message{Sender: d.Sender, Key: d.Key, Value: d.Value})
		}
		return out, nil
	case <-ctx.Done():
		return coordinator.Reply{}, ctx.Err()
	case <-c.quit:
		return coordinator.Reply{}, fmt.Errorf("multinode %s %s: the board's session ended", r.Kind, r.ID)
	case <-t.C:
		return coordinator.Reply{}, fmt.Errorf("multinode %s %s: no answer from the server within %s", r.Kind, r.ID, c.timeout+2*slack)
	}
}

func (c *remoteMN) deliver(m *workerpb.MnReply) {
	c.mu.Lock()
	ch := c.calls[m.Call]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- m:
		default:
		}
	}
}

func (c *remoteMN) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ended {
		c.ended = true
		close(c.quit)
	}
}
