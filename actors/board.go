package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/boot"
	"github.com/troupe-lab/troupe/console"
	"github.com/troupe-lab/troupe/coordinator"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/testshell"
)

// releaseTimeout bounds how long powering off and releasing a board may take.
const releaseTimeout = 10 * time.Second

// stuckAfter is how long release lets a canceled action stop by itself.
const stuckAfter = time.Second

// boardActor drives one board's backend through the shared console, boot
// and test-shell code. Each action runs in one goroutine of its own so the
// actor stays responsive; stopping the actor cancels it and powers off.
type boardActor struct {
	cfg     Config
	node    string
	board   lab.Board
	backend Backend
	con     *console.Console
	shell   *testshell.Shell
	mn      testshell.MultiNode
	cancel  context.CancelFunc
	opDone  chan struct{}
	group   *actor.PID // told when the board cannot be verified off
	log     consoleLog // cfg.Book, or on a worker the batches to the server
	// side is set by the action goroutine (boot) and taken by release,
	// which may run beside a stuck action.
	sideMu sync.Mutex
	side   *sideChannel
}

// sideChannel is the MultiNode side channel being served for the current
// power-on (see SideChanneled).
type sideChannel struct {
	ch     io.ReadWriteCloser
	cancel context.CancelFunc
	done   chan struct{}
}

// consoleLog is where a board actor's console goes: the job's logbook
// (logbook.Book) or, on a worker, the batches sent to the server.
type consoleLog interface {
	Raw(node string) io.Writer
	Line(node, text string) logbook.Entry
}

func newBoardActor(cfg Config, node string, b lab.Board, backend Backend, mn testshell.MultiNode, group *actor.PID) *boardActor {
	return &boardActor{cfg: cfg, node: node, board: b, backend: backend, mn: mn, group: group, log: cfg.Book}
}

// boardStillOn tells the group that a board could not be verified off
// when it was released: it must not be handed to another job.
type boardStillOn struct {
	node, board string
	err         error
}

func (a *boardActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		// The shell needs the console and the console feeds the shell:
		// the shell gets a reference that is filled in before any action
		// (and so any use of it) starts.
		ref := &consoleRef{}
		a.shell = testshell.New(ref, a.mn)
		sh := a.shell
		if fp, ok := a.backend.(FilePutter); ok {
			sh.PutFilesWith(func(files map[string][]byte, mode fs.FileMode) error {
				return fp.PutFiles(underTmp(files), mode)
			})
		}
		a.con = console.New(a.backend.Console(), console.Options{
			Raw: a.log.Raw(a.node),
			OnLine: func(line string) {
				a.log.Line(a.node, line)
				sh.Feed(line)
			},
			Logger: a.cfg.Logger.With("board", a.board.Name),
		})
		ref.Console = a.con
	case *doAction:
		a.start(ctx, m)
	case *abortAction:
		if a.cancel != nil {
			a.cancel()
		}
	case *actionResult:
		a.cancel = nil
		ctx.Send(ctx.Parent(), m)
	case *actor.Stopping:
		if err := a.release(); err != nil && a.group != nil {
			ctx.Send(a.group, &boardStillOn{node: a.node, board: a.board.Name, err: err})
		}
	}
}

func (a *boardActor) start(ctx actor.Context, m *doAction) {
	opCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	a.cancel, a.opDone = cancel, done
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		defer close(done)
		defer cancel()
		root.Send(self, a.perform(opCtx, m))
	}()
}

// perform runs one action; a panic in it becomes the action's error.
func (a *boardActor) perform(ctx context.Context, m *doAction) (res *actionResult) {
	res = &actionResult{index: m.index}
	defer func() {
		if r := recover(); r != nil {
			res.err = fmt.Errorf("board %s: panic: %v", a.board.Name, r)
		}
	}()
	if m.awaitStart != "" {
		if err := awaitStart(ctx, a.mn, m.awaitStart); err != nil {
			res.err = fmt.Errorf("board %s: %w", a.board.Name, err)
			return res
		}
	}
	if err := a.before(ctx, m.action.Before); err != nil {
		res.err = fmt.Errorf("board %s: %w", a.board.Name, err)
		return res
	}
	switch m.action.Type {
	case jobs.Deploy:
		if err := deploy(ctx, a.backend, m.action); err != nil {
			res.err = fmt.Errorf("board %s: %w", a.board.Name, err)
		}
	case jobs.Boot:
		a.serveSideChannel()
		a.bootWithHelpers()
		var err error
		login := boot.Login(m.action.Login)
		if b, ok := a.backend.(sessionBooter); ok {
			var addr string
			if addr, err = hostAddress(ctx, a.mn, m.action.Address); err == nil {
				err = b.BootSession(ctx, addr)
			}
		} else if b, ok := a.backend.(SpecBooter); ok {
			err = b.BootWith(ctx, a.con, boot.Spec{Commands: m.action.Commands, BootCommands: m.action.BootCommands, Context: m.context, Login: login})
		} else if b, ok := a.backend.(Booter); ok {
			err = b.Boot(ctx, a.con)
		} else {
			var p boot.Prompts
			if p, err = login.Apply(boot.DefaultPrompts()); err == nil {
				err = boot.Boot(ctx, a.backend, a.con, p)
			}
		}
		if err == nil {
			a.putHelpers()
			err = a.shell.Init(ctx, a.initOptions()...)
		}
		if err != nil {
			res.err = fmt.Errorf("board %s: %w", a.board.Name, err)
		}
	case jobs.Test:
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		stop := a.watchPower(ctx, cancel)
		out, err := a.shell.Run(ctx, m.test)
		stop()
		res.outcome = out
		if cause := context.Cause(ctx); errors.Is(cause, errPowerLost) {
			err = cause
		}
		if err != nil {
			res.err = fmt.Errorf("board %s: %w", a.board.Name, err)
		}
	default:
		res.err = fmt.Errorf("unknown action type %q", m.action.Type)
	}
	return res
}

// before makes the MultiNode calls an action asks for before it starts,
// bounded by the action's context; a nack fails the action.
func (a *boardActor) before(ctx context.Context, reqs []jobs.Request) error {
	for _, r := range reqs {
		if a.mn == nil {
			return fmt.Errorf("multinode %s before the action: no coordinator", r)
		}
		req := coordinator.Request{Kind: coordinator.Kind(r.Kind), ID: r.ID}
		switch r.Kind {
		case "send":
			for _, kv := range r.Args {
				k, v, _ := strings.Cut(kv, "=")
				req.Data = append(req.Data, coordinator.KV{Key: k, Value: v})
			}
		case "wait-all":
			if len(r.Args) == 1 {
				req.Role = r.Args[0]
			}
		}
		rep, err := a.mn.Call(ctx, req)
		if err != nil {
			return fmt.Errorf("multinode %s before the action: %w", r, err)
		}
		if !rep.OK {
			return fmt.Errorf("multinode %s before the action: %s", r, rep.Err)
		}
	}
	return nil
}

// errPowerLost: the board switched off under a running test.
var errPowerLost = errors.New("board lost power")

// powerWatch is how often the power state is read back while a test runs:
// a board that loses power falls silent, and nothing else would notice.
const powerWatch = 250 * time.Millisecond

// watchPower cancels ctx with errPowerLost when the board reports power
// off. The returned stop ends the watch and waits for it.
func (a *boardActor) watchPower(ctx context.Context, cancel context.CancelCauseFunc) (stop func()) {
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				a.cfg.Logger.Error("power watch", "board", a.board.Name, "panic", fmt.Sprint(r))
			}
		}()
		t := time.NewTicker(powerWatch)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if on, err := a.backend.State(ctx); err == nil && !on {
				cancel(errPowerLost)
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// release cancels the running action and waits for it to stop, then powers
// the board off, reads its power state back and closes it. An action still
// stuck after stuckAfter (on console I/O) is unblocked by closing the
// console. A panicking backend is logged, never left to hang the stop. It
// returns why the board could not be verified off, or nil.
func (a *boardActor) release() error {
	if a.cancel != nil {
		a.cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	var errs []error
	step := func(what string, f func() error) {
		defer func() {
			if r := recover(); r != nil {
				errs = append(errs, fmt.Errorf("%s: panic: %v", what, r))
			}
		}()
		if err := f(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	closed := false
	closeConsole := func() {
		if a.con != nil && !closed {
			closed = true
			step("close console", a.con.Close)
		}
	}
	if a.opDone != nil {
		stuck := time.NewTimer(stuckAfter)
		defer stuck.Stop()
		select {
		case <-a.opDone:
		case <-stuck.C:
			closeConsole()
			select {
			case <-a.opDone:
			case <-ctx.Done():
				errs = append(errs, errors.New("action did not stop in time"))
			}
		}
	}
	var stillOn error
	before := len(errs)
	step("power off", func() error {
		if err := a.backend.Off(ctx); err != nil {
			stillOn = err
			return err
		}
		if on, err := a.backend.State(ctx); err == nil && on {
			stillOn = errors.New("the board reports power on after off")
			return stillOn
		}
		return nil
	})
	if stillOn == nil && len(errs) > before { // it panicked
		stillOn = errs[len(errs)-1]
	}
	closeConsole()
	a.stopSideChannel()
	step("close", a.backend.Close)
	if err := errors.Join(errs...); err != nil {
		a.cfg.Logger.Error("release board", "board", a.board.Name, "node", a.node, "err", err)
	}
	if stillOn != nil {
		return fmt.Errorf("board %s still on: power off not verified: %w", a.board.Name, stillOn)
	}
	return nil
}

// consoleRef lets the shell be made before the console it talks to.
type consoleRef struct{ *console.Console }

// putHelpers puts the test shell's helpers on a board that can take files
// without the console; if that fails, Init types them.
func (a *boardActor) putHelpers() {
	fp, ok := a.backend.(FilePutter)
	if !ok {
		return
	}
	files, err := testshell.HelpersUnderTmp()
	if err == nil {
		err = fp.PutFiles(files, 0o755)
	}
	if err != nil {
		a.cfg.Logger.Warn("helpers not put on the board; typing them", "board", a.board.Name, "err", err)
	}
}

// bootWithHelpers gives the test shell's helpers to a board that can boot
// with them in place (TmpFileBooter); if that fails, Init types them.
func (a *boardActor) bootWithHelpers() {
	tb, ok := a.backend.(TmpFileBooter)
	if !ok {
		return
	}
	files, err := testshell.HelpersUnderTmp()
	if err != nil {
		a.cfg.Logger.Warn("helpers not built into the board's boot; typing them", "board", a.board.Name, "err", err)
		return
	}
	tb.BootWithTmpFiles(files)
}

// EchoOffShell is a backend whose board's shell comes up on a console
// with echo off (sim boards: troupe owns the terminal and turns echo off
// after the login, as a getty or an agent could): the test shell's Init
// then starts no stty. Other boards' shells get "stty -echo".
type EchoOffShell interface {
	EchoOff() bool
}

// initOptions tells the test shell's Init what the backend says of its
// shell's terminal, and of the side channel's port (a QEMU guest's) when
// one is served.
func (a *boardActor) initOptions() []testshell.InitOption {
	var opts []testshell.InitOption
	if e, ok := a.backend.(EchoOffShell); ok && e.EchoOff() {
		opts = append(opts, testshell.EchoOff)
	}
	a.sideMu.Lock()
	served := a.side != nil
	a.sideMu.Unlock()
	if p, ok := a.backend.(MultiNodePorted); ok && served {
		opts = append(opts, testshell.MultiNodePort(p.MultiNodePort()))
	}
	return opts
}

// serveSideChannel opens a MultiNode side channel for the power-on of the
// boot to come, if the board can have one, and serves its calls; the one
// of an earlier power-on is stopped first.
func (a *boardActor) serveSideChannel() {
	a.stopSideChannel()
	sc, ok := a.backend.(SideChanneled)
	if !ok {
		return
	}
	ch, err := sc.OpenMultiNodeChannel()
	if err != nil {
		a.cfg.Logger.Warn("no MultiNode side channel; calls go through the console", "board", a.board.Name, "err", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &sideChannel{ch: ch, cancel: cancel, done: make(chan struct{})}
	a.sideMu.Lock()
	a.side = s
	a.sideMu.Unlock()
	book, node, sh, log := a.log, a.node, a.shell, a.cfg.Logger
	go func() {
		defer close(s.done)
		if err := sh.Serve(ctx, ch, func(line string) { book.Line(node, line) }); err != nil {
			log.Warn("MultiNode side channel", "board", a.board.Name, "err", err)
		}
	}()
}

// stopSideChannel ends the side channel's server and waits for it.
func (a *boardActor) stopSideChannel() {
	a.sideMu.Lock()
	s := a.side
	a.side = nil
	a.sideMu.Unlock()
	if s == nil {
		return
	}
	s.cancel()
	_ = s.ch.Close()
	t := time.NewTimer(releaseTimeout)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		a.cfg.Logger.Error("MultiNode side channel did not stop", "board", a.board.Name)
	}
}

// underTmp makes paths relative to $TROUPE_DIR relative to $TMPDIR.
func underTmp(files map[string][]byte) map[string][]byte {
	put := make(map[string][]byte, len(files))
	for n, data := range files {
		put[path.Join(testshell.TmpSubdir, n)] = data
	}
	return put
}
