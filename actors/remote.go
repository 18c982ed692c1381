package actors

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/coordinator"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/testshell"
	"github.com/troupe-lab/troupe/workers/images"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

// RemoteBoard is a node's board on a worker process: the node actor keeps
// a board proxy on the server that drives, over protoactor remote, a board
// host the worker's boards actor spawns (see boardhost.go).
type RemoteBoard struct {
	Worker string
	Boards *actor.PID      // the worker's boards actor
	Gone   <-chan struct{} // closed when the worker is lost
	Images *images.Source  // the server's deploy images, as workers fetch them
}

// Timing of a board proxy.
const (
	// openTimeout bounds opening a board on a live worker (a lost one
	// ends the node at once): a host opening its 100 boards at once under
	// load takes longer for each than one board alone (30 s was not enough
	// for 10 workers of 100 boards on this 2-core host).
	openTimeout = 2 * time.Minute
	// closeLimit bounds the wait for a live worker's answer to a
	// release: the worker bounds each board's release itself (the board
	// actor's release bound, its side channel's and the backend's close,
	// a few times over for a host powering off all its boards at once).
	closeLimit = 2 * time.Minute
	// maxHeldBatches bounds the console batches held back for a missing
	// earlier one.
	maxHeldBatches = 64
	// maxMnCalls bounds a node's MultiNode calls in flight.
	maxMnCalls = 16
)

// loseNodes tells a job (and its group) that the nodes on these boards are
// gone with their worker.
type loseNodes struct {
	boards []string
	reason string
}

// proxyOpenTimeout fires when the worker did not open the board in time.
type proxyOpenTimeout struct{}

// startRemote is the node actor's start for a board on a worker: its board
// actor is a proxy that drives the worker's. The first action waits for
// the worker to open the board (remoteOpened): the board may join its
// group's network there, whose addresses the tests' environment takes.
func (a *nodeActor) startRemote(ctx actor.Context, rb RemoteBoard) {
	b := a.cfg.Boards[a.node.Name]
	role, _ := a.cfg.Job.Role(a.node.Role)
	mn := mnClient{root: ctx.ActorSystem().Root, coord: a.coord, node: a.node.Name, timeout: role.Timeout}
	group := ctx.Parent()
	wg := a.shared.workers.of(rb.Worker, a.cfg, a.shared.nodes)
	a.board = ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &boardProxy{cfg: a.cfg, node: a.node.Name, board: b, rb: rb, mn: mn, group: group, wg: wg, next: 1,
			held: map[uint64]*workerpb.ConsoleLines{}, served: map[string]*images.Reader{}, naming: map[int]context.CancelFunc{}}
	}))
	ctx.Send(ctx.Parent(), &nodePhase{node: a.node.Name, action: fmt.Sprintf("open board %s on worker %s", b.Name, rb.Worker)})
}

// remoteOpened is the board proxy's word that the worker opened the board
// (err nil; addrs: its group network's addresses) or could not.
type remoteOpened struct {
	addrs map[string]string
	err   error
}

// opened starts a remote node's actions once its board is open.
func (a *nodeActor) opened(ctx actor.Context, m *remoteOpened) {
	if a.done {
		return
	}
	if m.err != nil {
		a.finish(ctx, report.StatusIncomplete, report.Infrastructure, m.err.Error())
		return
	}
	a.netAddrs = m.addrs
	a.next(ctx, 0)
}

// workerGroup is what the boards of one worker are told of their group:
// every node, the board of those on that worker.
type workerGroup struct {
	members []*workerpb.GroupNode // read only, once made
	here    map[string]bool       // the nodes on that worker
}

// workerGroups are a group's workerGroup by worker, made once each.
type workerGroups struct {
	mu sync.Mutex
	m  map[string]*workerGroup
}

func (w *workerGroups) of(worker string, cfg Config, nodes []jobs.Node) *workerGroup {
	w.mu.Lock()
	defer w.mu.Unlock()
	if g := w.m[worker]; g != nil {
		return g
	}
	g := &workerGroup{members: make([]*workerpb.GroupNode, 0, len(nodes)), here: map[string]bool{}}
	for _, n := range nodes {
		gn := &workerpb.GroupNode{Name: n.Name, Role: n.Role, Address: cfg.Addresses[n.Name]}
		if rb, ok := cfg.Remote[n.Name]; ok && rb.Worker == worker {
			gn.Board = cfg.Boards[n.Name].Name
			g.here[n.Name] = true
		}
		g.members = append(g.members, gn)
	}
	w.m[worker] = g
	return g
}

// boardProxy stands, in the node actor's tree, for the board actor that
// runs on the board's worker: it turns doAction/abortAction into protobuf
// for the worker's board host, and the host's results, console batches
// and MultiNode calls back into what the node actor, logbook and
// coordinator expect. Stopping it releases the board on the worker.
type boardProxy struct {
	cfg     Config
	node    string
	board   lab.Board
	rb      RemoteBoard
	mn      mnClient
	group   *actor.PID
	wg      *workerGroup // the group as its worker is told it
	session string
	host    *actor.PID // the worker's board host, once it opened the board
	pending []*workerpb.DoAction
	failed  error
	next    uint64 // the console batch due next
	held    map[uint64]*workerpb.ConsoleLines
	calls   int // MultiNode calls in flight
	stopMN  context.CancelFunc
	mnCtx   context.Context
	stop    func() bool

	// served are the images of the session's deploy actions, by
	// checksum: the worker may fetch these only.
	served map[string]*images.Reader
	naming map[int]context.CancelFunc // deploy actions whose images are being named
}

func (p *boardProxy) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.session = ctx.Self().Id
		p.mnCtx, p.stopMN = context.WithCancel(context.Background())
		open := &workerpb.OpenBoard{Session: p.session, Job: p.cfg.Job.Name, Node: p.node,
			Board: p.board.Name, MnTimeoutMs: p.mn.timeout.Milliseconds(), LogLimit: p.logLimit()}
		if p.group != nil && p.wg != nil {
			open.Group, open.GroupNodes = p.group.String(), p.wg.members
		}
		ctx.Request(p.rb.Boards, open)
		self, root := ctx.Self(), ctx.ActorSystem().Root
		p.stop = p.cfg.Clock.AfterFunc(openTimeout, func() { root.Send(self, &proxyOpenTimeout{}) })
	case *doAction:
		if m.action.Type == jobs.Deploy && len(imageFields(m.action)) > 0 {
			p.nameImages(ctx, m)
			return
		}
		p.send(ctx, toPB(p.session, m))
	case *imagesNamed:
		delete(p.naming, m.index)
		if m.err != nil {
			ctx.Send(ctx.Parent(), &actionResult{index: m.index, err: fmt.Errorf("board %s: %w", p.board.Name, m.err)})
			return
		}
		for sum, r := range m.readers {
			if p.served[sum] == nil {
				p.served[sum] = r
			} else {
				r.Close()
			}
		}
		p.send(ctx, m.pb)
	case *workerpb.FetchImage:
		p.fetchImage(ctx, m)
	case *abortAction:
		if cancel := p.naming[m.index]; cancel != nil {
			cancel()
		}
		if p.host != nil {
			ctx.Send(p.host, &workerpb.AbortAction{Session: p.session, Index: int32(m.index)})
		}
	case *proxyOpenTimeout:
		if p.host == nil && p.failed == nil {
			p.fail(ctx, fmt.Errorf("board %s: worker %s did not open it within %s", p.board.Name, p.rb.Worker, openTimeout))
		}
	case *workerpb.BoardOpened:
		if !p.ours(m.Worker, m.Session) || p.host != nil || p.failed != nil {
			return
		}
		p.disarm()
		if m.Error != "" {
			p.fail(ctx, fmt.Errorf("open board %s on worker %s: %s", p.board.Name, p.rb.Worker, m.Error))
			return
		}
		p.host = ctx.Sender()
		if p.host == nil {
			p.fail(ctx, fmt.Errorf("open board %s on worker %s: no board host", p.board.Name, p.rb.Worker))
			return
		}
		for _, d := range p.pending {
			ctx.Send(p.host, d)
		}
		p.pending = nil
		p.tellOpened(ctx, &remoteOpened{addrs: p.addrs(m.Addrs)})
	case *workerpb.ActionDone:
		if p.ours(m.Worker, m.Session) {
			ctx.Send(ctx.Parent(), fromPB(m))
		}
	case *workerpb.ConsoleLines:
		if p.ours(m.Worker, m.Session) {
			p.lines(m)
		}
	case *workerpb.MnCall:
		if p.ours(m.Worker, m.Session) {
			p.call(ctx, m)
		}
	case *mnDone:
		p.calls--
	case *actor.Stopping:
		p.disarm()
		p.stopMN()
		p.close(ctx)
		for _, r := range p.served {
			r.Close()
		}
	}
}

// send sends an action to the board host, or holds it until the board is
// open.
func (p *boardProxy) send(ctx actor.Context, d *workerpb.DoAction) {
	switch {
	case p.failed != nil:
		ctx.Send(ctx.Parent(), &actionResult{index: int(d.Index), err: p.failed})
	case p.host == nil:
		p.pending = append(p.pending, d)
	default:
		ctx.Send(p.host, d)
	}
}

// ours tells whether a message from a worker is of this session (the
// transport has checked that the worker is who it says).
func (p *boardProxy) ours(worker, session string) bool {
	return worker == p.rb.Worker && session == p.session
}

func (p *boardProxy) disarm() {
	if p.stop != nil {
		p.stop()
		p.stop = nil
	}
}

// fail tells the node the board could not be opened, and answers every
// action asked for, and every later one, with err.
func (p *boardProxy) fail(ctx actor.Context, err error) {
	p.failed = err
	p.tellOpened(ctx, &remoteOpened{err: err})
	for _, d := range p.pending {
		ctx.Send(ctx.Parent(), &actionResult{index: int(d.Index), err: err})
	}
	p.pending = nil
}

// tellOpened tells the node actor whether its board is open (a proxy
// of no node, as tests spawn, tells nobody).
func (p *boardProxy) tellOpened(ctx actor.Context, m *remoteOpened) {
	if parent := ctx.Parent(); parent != nil {
		ctx.Send(parent, m)
	}
}

// addrs keeps, of the addresses a worker reports for its board's group
// network, those of the group's nodes on that worker (no other node's
// address is the worker's to give).
func (p *boardProxy) addrs(got map[string]string) map[string]string {
	var out map[string]string
	if p.wg == nil {
		return nil
	}
	for n, a := range got {
		if p.wg.here[n] && validAddr(a) {
			if out == nil {
				out = map[string]string{}
			}
			out[n] = a
		}
	}
	return out
}

// validAddr tells whether a is an IP address, as a worker must report.
func validAddr(a string) bool {
	_, err := netip.ParseAddr(a)
	return err == nil
}

func (p *boardProxy) logLimit() int64 {
	if p.cfg.LogLimit > 0 {
		return p.cfg.LogLimit
	}
	return logbook.DefaultLimit
}

// lines writes the console batches to the logbook in their order, with
// their original times.
func (p *boardProxy) lines(m *workerpb.ConsoleLines) {
	if m.Seq < p.next {
		return
	}
	if m.Seq > p.next {
		if len(p.held) < maxHeldBatches {
			p.held[m.Seq] = m
		}
		return
	}
	for m != nil {
		if len(m.Raw) > 0 {
			_, _ = p.cfg.Book.Raw(p.node).Write(m.Raw)
		}
		for _, l := range m.Lines {
			p.cfg.Book.LineAt(p.node, l.Text, time.Unix(0, l.TimeUnixNano))
		}
		p.next++
		m = p.held[p.next]
		delete(p.held, p.next)
	}
}

// mnDone is the proxy's own note that a MultiNode call was answered.
type mnDone struct{}

// call passes a MultiNode call of the worker's test shell to the
// coordinator and its reply back.
func (p *boardProxy) call(ctx actor.Context, m *workerpb.MnCall) {
	host, root, self := p.host, ctx.ActorSystem().Root, ctx.Self()
	if host == nil {
		return
	}
	if p.calls >= maxMnCalls {
		ctx.Send(host, &workerpb.MnReply{Session: p.session, Call: m.Call, Failed: fmt.Sprintf("more than %d MultiNode calls in flight", maxMnCalls)})
		return
	}
	p.calls++
	req := coordinator.Request{Kind: coordinator.Kind(m.Kind), ID: m.Id, Role: m.Role}
	for _, kv := range m.Data {
		req.Data = append(req.Data, coordinator.KV{Key: kv.Key, Value: kv.Value})
	}
	mn, mnCtx, session := p.mn, p.mnCtx, p.session
	go func() {
		defer root.Send(self, &mnDone{})
		rep, err := mn.Call(mnCtx, req)
		out := &workerpb.MnReply{Session: session, Call: m.Call, Ok: rep.OK, Error: rep.Err}
		if err != nil {
			out.Failed = err.Error()
		}
		for _, d := range rep.Data {
			out.Data = append(out.Data, &workerpb.MnMessage{Sender: d.Sender, Key: d.Key, Value: d.Value})
		}
		root.Send(host, out)
	}()
}

// close releases the board on its worker and waits for the worker to say
// it is off; a board not verified off is reported to the group as a local
// one would be. The wait is bounded by the worker's liveness, not by one
// board's time: a worker powering off its 100 boards at once on its cores
// takes longer for each than one board alone, and it bounds each
// release itself; a lost worker is not waited for, and a live one at
// most closeLimit.
func (p *boardProxy) close(ctx actor.Context) {
	// The answer comes to a waiter of its own, stopped when the wait ends
	// (a future would outlive a given-up wait).
	got := make(chan interface{}, 1)
	root := ctx.ActorSystem().Root
	waiter := root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *workerpb.BoardClosed, *actor.DeadLetterResponse:
			select {
			case got <- m:
			default:
			}
		}
	}))
	defer root.Stop(waiter)
	limit := make(chan struct{})
	stop := p.cfg.Clock.AfterFunc(closeLimit, func() { close(limit) })
	defer stop()
	root.RequestWithCustomSender(p.rb.Boards, &workerpb.CloseBoard{Session: p.session}, waiter)
	var still string
	select {
	case m := <-got:
		switch m := m.(type) {
		case *workerpb.BoardClosed:
			if m.Worker != p.rb.Worker || m.Session != p.session {
				still = fmt.Sprintf("worker %s answered the release of another session", p.rb.Worker)
			} else {
				still = m.StillOn
			}
		default:
			still = fmt.Sprintf("worker %s did not confirm the release: its boards actor is unreachable", p.rb.Worker)
		}
	case <-p.rb.Gone:
		p.cfg.Logger.Warn("board not released: its worker is lost; the worker powers it off when it returns", "board", p.board.Name, "worker", p.rb.Worker)
		return
	case <-limit:
		still = fmt.Sprintf("worker %s did not confirm the release within %s", p.rb.Worker, closeLimit)
	}
	if still != "" && p.group != nil {
		ctx.Send(p.group, &boardStillOn{node: p.node, board: p.board.Name, err: errors.New(still)})
	}
}

// toPB is an action as it crosses to the worker.
func toPB(session string, d *doAction) *workerpb.DoAction {
	out := &workerpb.DoAction{Session: session, Index: int32(d.index), Type: string(d.action.Type), Name: d.action.Name,
		Run: d.test.Script, Parse: d.action.Parse, Fixup: d.action.Fixup, Files: d.test.Files}
	if d.test.Pattern != nil {
		out.Parse = d.test.Pattern.String()
	}
	if d.test.Fixup != nil {
		out.Fixup = d.test.Fixup
	}
	for _, r := range d.action.Before {
		out.Before = append(out.Before, &workerpb.Request{Kind: r.Kind, Id: r.ID, Args: r.Args})
	}
	for _, kv := range d.test.Env {
		out.Env = append(out.Env, &workerpb.KV{Key: kv[0], Value: kv[1]})
	}
	return out
}

// fromPB is a worker's action outcome as the node actor takes it.
func fromPB(m *workerpb.ActionDone) *actionResult {
	res := &actionResult{index: int(m.Index), outcome: testshell.Outcome{ExitCode: int(m.ExitCode), Raised: m.Raised, Invalid: m.Invalid}}
	for _, c := range m.Cases {
		tc := testshell.Case{Name: c.Name, Result: c.Result, Units: c.Units}
		if c.HasMeasurement {
			v := c.Measurement
			tc.Measurement = &v
		}
		res.outcome.Cases = append(res.outcome.Cases, tc)
	}
	switch {
	case m.ShellDied:
		res.err = shellDied(m.Error)
	case m.Error != "":
		res.err = errors.New(m.Error)
	}
	return res
}

// shellDied is testshell.ErrShellDied as it comes back from a worker.
type shellDied string

func (e shellDied) Error() string { return string(e) }
func (e shellDied) Unwrap() error { return testshell.ErrShellDied }

// loseNodes (group) ends the nodes on boards of a lost worker: incomplete,
// an infrastructure error naming the worker; their MultiNode peers are
// released at once (settle tells the coordinator) naming them.
func (g *groupActor) loseNodes(ctx actor.Context, m *loseNodes) {
	var names []string
	for _, name := range g.order {
		st := g.nodes[name]
		if st.done || !slices.Contains(m.boards, g.cfg.Boards[name].Name) {
			continue
		}
		names = append(names, name)
		st.endReason = m.reason
		g.lost = append(g.lost, name)
		g.settle(ctx, st, report.StatusIncomplete, report.Infrastructure, fmt.Sprintf("%s (during %s)", m.reason, st.action))
		if st.pid != nil {
			ctx.Stop(st.pid)
		}
	}
	if len(names) == 0 {
		return
	}
	g.lostWhy = fmt.Sprintf("%s: node %s", m.reason, strings.Join(names, ", "))
	g.cfg.Logger.Warn("nodes lost with their worker", "job", g.cfg.Job.Name, "nodes", names, "reason", m.reason)
	for _, name := range names {
		if g.nodes[name].essential {
			g.end(ctx, &endGroup{status: report.StatusIncomplete, reason: g.lostWhy, class: report.Infrastructure, nodeClass: report.JobError})
			return
		}
	}
}

// fromPBAction is an action as the worker's board actor performs it.
func fromPBAction(m *workerpb.DoAction) *doAction {
	act := jobs.Action{Type: jobs.ActionType(m.Type), Name: m.Name, Run: m.Run, Parse: m.Parse, Fixup: m.Fixup}
	for _, r := range m.Before {
		act.Before = append(act.Before, jobs.Request{Kind: r.Kind, ID: r.Id, Args: r.Args})
	}
	d := &doAction{index: int(m.Index), action: act}
	if act.Type == jobs.Test {
		d.test = testshell.Test{Name: m.Name, Script: m.Run, Files: m.Files, Fixup: m.Fixup}
		if m.Parse != "" {
			// The server's jobs.Parse checked it; a bad one parses nothing.
			d.test.Pattern, _ = regexp.Compile(m.Parse)
		}
		for _, kv := range m.Env {
			d.test.Env = append(d.test.Env, [2]string{kv.Key, kv.Value})
		}
	}
	return d
}
