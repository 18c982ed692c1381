package actors_test

// Test doubles and the harness shared by the actors tests: a fake Backend
// whose console is an io.Pipe pair played by a scripted "board" goroutine,
// a fake Clock whose timers the tests fire by hand, and a harness that
// builds the actor system, starts a job and checks for goroutine leaks.

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/sim"
)

// waitLimit bounds every wait of the tests.
const waitLimit = 3 * time.Second

// leakOptions are the goroutines goleak tolerates once a job has ended and
// its actor system is shut down. protoactor's dead-letter logging throttle
// (actor.NewThrottle, used by actor.NewDeadLetter) starts a goroutine that
// waits on a ticker for DeadLetterThrottleInterval (1 s by default) after
// the first dead letter of a period; messages sent to actors that already
// stopped (a late action result, a stale timer) are dead letters, so that
// goroutine may outlive the job by up to a second. ActorSystem.Shutdown does
// not stop it (it only closes a channel). Its name depends on inlining,
// hence both spellings. Nothing else of protoactor remains after a job.
var leakOptions = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottle.func1.1"),
}

// signal wakes up waiters whenever something they may be waiting for changed.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

func (s *signal) c() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *signal) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.ch)
	s.ch = make(chan struct{})
}

// waitFor waits until cond holds, re-checking it whenever sig fires, and
// fails the test after waitLimit.
func waitFor(t *testing.T, sig *signal, what string, cond func() bool) {
	t.Helper()
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	for {
		ch := sig.c() // before cond: no lost wake-up
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-limit.C:
			t.Fatalf("timed out after %s waiting for %s", waitLimit, what)
		}
	}
}

// ---------------------------------------------------------------- clock

// fakeClock records timers; tests fire them explicitly.
type fakeClock struct {
	sig *signal
	// onAfterFunc, if set, is called by AfterFunc first (it may panic, to
	// crash the calling actor).
	onAfterFunc func(d time.Duration)

	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	d       time.Duration
	f       func()
	stopped bool
	fired   bool
}

func newFakeClock(sig *signal) *fakeClock {
	return &fakeClock{sig: sig, now: time.Date(2024, 1, 8, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	if c.onAfterFunc != nil {
		c.onAfterFunc(d)
	}
	tm := &fakeTimer{d: d, f: f}
	c.mu.Lock()
	c.timers = append(c.timers, tm)
	c.mu.Unlock()
	c.sig.notify()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		pending := !tm.stopped && !tm.fired
		tm.stopped = true
		return pending
	}
}

// find returns the pending timers of duration d.
func (c *fakeClock) find(d time.Duration) []*fakeTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*fakeTimer
	for _, tm := range c.timers {
		if tm.d == d && !tm.stopped && !tm.fired {
			out = append(out, tm)
		}
	}
	return out
}

// fire runs tm's function as if it had expired, even if it was stopped
// (a timer can fire concurrently with Stop; the actors must cope).
func (c *fakeClock) fire(tm *fakeTimer) {
	c.mu.Lock()
	tm.fired = true
	c.now = c.now.Add(tm.d)
	c.mu.Unlock()
	tm.f()
}

// all returns a snapshot of every timer made so far.
func (c *fakeClock) all() []fakeTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]fakeTimer, len(c.timers))
	for i, tm := range c.timers {
		out[i] = *tm
	}
	return out
}

// ---------------------------------------------------------------- backend

// boardMode is how a fake board behaves on its console.
type boardMode int

const (
	boardNormal boardMode = iota // login prompt, shell answering end markers
	boardSilent                  // powers on but never prints anything
	boardDeaf                    // prints the login prompt, then never reads its console
)

// fakeTest scripts a test run on a fake board.
type fakeTest struct {
	output []string // lines printed before the end marker
	exit   int
	hang   bool // never ends
}

// fakeConfig scripts a fake backend.
type fakeConfig struct {
	deployErr    error
	deployFails  int  // the first deployFails deploys fail (with errBoom)
	deployHang   bool // Deploy blocks until its ctx ends
	onErr        error
	offPanic     bool
	slowBootOff  bool // the first Off (boot's power cycle) returns only once release has begun (closed the console)
	consolePanic bool
	mode         boardMode
	stale        string // printed on the console before anything else
	tests        map[string]fakeTest
}

// fakeBackend implements actors.Backend. Its console is an io.Pipe pair;
// a goroutine of its own plays the board on the other end.
type fakeBackend struct {
	name string
	cfg  fakeConfig
	sig  *signal

	hostR  *io.PipeReader // the harness reads the board's output here
	boardW *io.PipeWriter
	boardR *io.PipeReader // the board reads the harness's input here
	hostW  *io.PipeWriter

	poweredOn     chan struct{}
	onOnce        sync.Once
	conClosed     chan struct{}
	conCloseOnce  sync.Once
	deployStarted chan struct{}
	deployOnce    sync.Once
	boardOnce     sync.Once
	boardDone     chan struct{}
	// beforeClose, if set, is called first thing in Close.
	beforeClose func()
	// bootOutput is printed at power-on, before the login prompt.
	bootOutput string

	mu        sync.Mutex
	on        bool
	ops       []string
	logins    []string
	runs      []string          // test commands seen
	cmds      []string          // every command seen, in order
	files     map[string]string // files written through the console, by path
	onAtClose []bool            // power state at each Close
}

func newFakeBackend(name string, cfg fakeConfig, sig *signal) *fakeBackend {
	f := &fakeBackend{
		name: name, cfg: cfg, sig: sig,
		poweredOn:     make(chan struct{}),
		conClosed:     make(chan struct{}),
		deployStarted: make(chan struct{}),
		boardDone:     make(chan struct{}),
		files:         map[string]string{},
	}
	f.hostR, f.boardW = io.Pipe()
	f.boardR, f.hostW = io.Pipe()
	return f
}

var _ actors.Backend = (*fakeBackend)(nil)

func (f *fakeBackend) record(op string) {
	f.mu.Lock()
	f.ops = append(f.ops, op)
	f.mu.Unlock()
	f.sig.notify()
}

func (f *fakeBackend) opsSnapshot() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ops)
}

func (f *fakeBackend) count(op string) int {
	n := 0
	for _, o := range f.opsSnapshot() {
		if o == op {
			n++
		}
	}
	return n
}

func (f *fakeBackend) On(ctx context.Context) error {
	f.record("on")
	if f.cfg.onErr != nil {
		return f.cfg.onErr
	}
	f.mu.Lock()
	f.on = true
	f.mu.Unlock()
	f.onOnce.Do(func() { close(f.poweredOn) })
	return nil
}

func (f *fakeBackend) Off(ctx context.Context) error {
	f.record("off")
	if f.cfg.offPanic {
		panic("fake power switch exploded")
	}
	if f.cfg.slowBootOff && f.count("off") == 1 {
		// A slow power switch that ignores ctx, like many PDUs.
		limit := time.NewTimer(waitLimit)
		defer limit.Stop()
		for f.count("console-close") < 1 {
			ch := f.sig.c()
			if f.count("console-close") >= 1 {
				break
			}
			select {
			case <-ch:
			case <-limit.C:
				return errors.New("release never began")
			}
		}
	}
	f.mu.Lock()
	f.on = false
	f.mu.Unlock()
	return nil
}

func (f *fakeBackend) State(ctx context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.on, nil
}

func (f *fakeBackend) Deploy(ctx context.Context, image string) error {
	f.record("deploy " + image)
	f.deployOnce.Do(func() { close(f.deployStarted) })
	if f.cfg.deployHang {
		<-ctx.Done()
		return ctx.Err()
	}
	if f.count("deploy "+image) <= f.cfg.deployFails {
		return errBoom
	}
	return f.cfg.deployErr
}

func (f *fakeBackend) Close() error {
	if f.beforeClose != nil {
		f.beforeClose()
	}
	f.mu.Lock()
	f.onAtClose = append(f.onAtClose, f.on)
	f.mu.Unlock()
	f.record("close")
	// The console may never have been asked for (Open then a crash):
	// make sure the board goroutine, if any, and the pipes end.
	f.closeConsole()
	return nil
}

func (f *fakeBackend) Console() io.ReadWriteCloser {
	f.record("console")
	if f.cfg.consolePanic {
		panic("fake console exploded")
	}
	f.boardOnce.Do(func() { go f.runBoard() })
	return fakeConsole{f}
}

func (f *fakeBackend) closeConsole() {
	f.conCloseOnce.Do(func() {
		_ = f.hostR.Close()
		_ = f.hostW.Close()
		close(f.conClosed)
	})
}

type fakeConsole struct{ f *fakeBackend }

func (c fakeConsole) Read(p []byte) (int, error) { return c.f.hostR.Read(p) }
func (c fakeConsole) Write(p []byte) (int, error) {
	if c.f.cfg.mode == boardDeaf {
		c.f.record("console-write")
	}
	return c.f.hostW.Write(p)
}
func (c fakeConsole) Close() error {
	c.f.record("console-close")
	c.f.closeConsole()
	return nil
}

var (
	// endRE finds the test shell's end-of-command marker, which ends the
	// text of every command it sends.
	endRE = regexp.MustCompile(`printf '<TROUPE_%s %s %s>\\n' END (\S+) "\$\?"\s*$`)
	// testRE finds the name of the test a command runs.
	testRE = regexp.MustCompile(`tests/([A-Za-z0-9_.-]+)/`)
	// fileRE finds a file written through the console: base64 in a here-document.
	fileRE = regexp.MustCompile(`(?s)base64 -d > "\$TROUPE_DIR"/'([^']+)' <<'TROUPE_EOF'\n(.*?)\nTROUPE_EOF\n`)
)

// isTestRun tells whether a command runs a test (rather than writing files
// or setting up the shell).
func isTestRun(cmd string) bool {
	return strings.Contains(cmd, "TROUPE_TEST_PID") && !strings.Contains(cmd, "base64 -d")
}

// runBoard plays the board: once powered on it prints a login prompt, reads
// the user name, prints a shell prompt and then answers every command that
// ends with the test shell's end marker.
func (f *fakeBackend) runBoard() {
	defer close(f.boardDone)
	defer f.boardW.Close()
	defer f.boardR.Close()
	write := func(s string) bool {
		_, err := f.boardW.Write([]byte(s))
		return err == nil
	}
	if f.cfg.stale != "" && !write(f.cfg.stale) {
		return
	}
	select {
	case <-f.poweredOn:
	case <-f.conClosed:
		return
	}
	switch f.cfg.mode {
	case boardSilent:
		<-f.conClosed
		return
	case boardDeaf:
		write("\r\nfake login: ")
		<-f.conClosed
		return
	}
	in := bufio.NewReader(f.boardR)
	if !write(f.bootOutput + "\r\nfake login: ") {
		return
	}
	user, err := in.ReadString('\n')
	if err != nil {
		return
	}
	f.mu.Lock()
	f.logins = append(f.logins, strings.TrimSpace(user))
	f.mu.Unlock()
	if !write("root@fake:~# ") {
		return
	}
	var cmd strings.Builder
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			return
		}
		cmd.WriteString(line)
		m := endRE.FindStringSubmatch(strings.TrimRight(line, "\n"))
		if m == nil {
			continue
		}
		text := cmd.String()
		cmd.Reset()
		f.mu.Lock()
		f.cmds = append(f.cmds, text)
		for _, w := range fileRE.FindAllStringSubmatch(text, -1) {
			b, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(w[2], "\n", ""))
			if err == nil {
				f.files[w[1]] = string(b)
			}
		}
		f.mu.Unlock()
		code := 0
		if r := testRE.FindStringSubmatch(text); r != nil && isTestRun(text) {
			f.mu.Lock()
			f.runs = append(f.runs, text)
			f.mu.Unlock()
			ft := f.cfg.tests[r[1]]
			for _, o := range ft.output {
				if !write(o + "\r\n") {
					return
				}
			}
			if ft.hang {
				f.record("test-hang " + r[1])
				<-f.conClosed
				return
			}
			code = ft.exit
		}
		if !write(fmt.Sprintf("<TROUPE_END %s %d>\r\n", m[1], code)) {
			return
		}
	}
}

// checkReleased asserts that the board was released exactly once, last:
// powered off (wantOff counts every Off: one per boot power cycle plus the
// release), console closed, backend closed while off, nothing after.
func checkReleased(t *testing.T, f *fakeBackend, wantOff int) {
	t.Helper()
	ops := f.opsSnapshot()
	require.NotEmpty(t, ops, f.name)
	assert.Equal(t, "close", ops[len(ops)-1], "ops of %s: %q", f.name, ops)
	assert.Equal(t, 1, f.count("close"), "ops of %s: %q", f.name, ops)
	assert.Equal(t, wantOff, f.count("off"), "ops of %s: %q", f.name, ops)
	if f.count("console") > 0 {
		assert.Equal(t, 1, f.count("console-close"), "ops of %s: %q", f.name, ops)
		select {
		case <-f.boardDone: // the board goroutine ends once its console is closed
		case <-time.After(waitLimit):
			t.Errorf("board goroutine of %s did not end", f.name)
		}
	}
	f.mu.Lock()
	onAtClose := slices.Clone(f.onAtClose)
	f.mu.Unlock()
	assert.Equal(t, []bool{false}, onAtClose, "%s must be powered off when it is closed; ops: %q", f.name, ops)
}

// ---------------------------------------------------------------- harness

// eventLog collects the Events of a job.
type eventLog struct {
	sig *signal
	mu  sync.Mutex
	evs []actors.Event
}

func (l *eventLog) add(e actors.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
	l.sig.notify()
}

func (l *eventLog) all() []actors.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.evs)
}

// phases returns the phases of node, in order.
func (l *eventLog) phases(node string) []string {
	var out []string
	for _, e := range l.all() {
		if e.Node == node {
			out = append(out, e.Phase)
		}
	}
	return out
}

func (l *eventLog) has(node, phase string) bool {
	return slices.Contains(l.phases(node), phase)
}

// harness runs one job in an actor system of its own.
type harness struct {
	t      *testing.T
	sig    *signal
	job    *jobs.Job
	boards map[string]lab.Board // node → board
	system *actor.ActorSystem
	book   *logbook.Book
	logs   string // the book's directory: logs/<node>.log are the raw consoles
	clock  *fakeClock
	events *eventLog
	cfg    actors.Config
	run    *actors.Run

	// syncRelease makes a fake backend's Close wait (bounded) until the
	// group has emitted its node's final status. Without it, a node whose
	// board is released in microseconds hits the group's Terminated/nodeDone
	// ordering bug (see TestBugTerminatedOvertakesNodeDone) and loses its
	// error. Set before start.
	syncRelease bool

	mu    sync.Mutex
	fakes map[string]*fakeBackend // node → its backend
	fcfg  map[string]fakeConfig   // node → its script
}

// newHarness parses jobTOML (as file, for image paths) and prepares a run
// with fake backends and a fake clock; tests may change h.cfg before start.
// At the end of the test the actor system is shut down and goroutine leaks
// are checked.
func newHarness(t *testing.T, file, jobTOML string) *harness {
	t.Helper()
	// Registered first, so it runs last: after Shutdown and book.Close.
	t.Cleanup(func() { goleak.VerifyNone(t, leakOptions...) })
	j, err := jobs.Parse(file, []byte(jobTOML))
	require.NoError(t, err)
	boards := map[string]lab.Board{} // lab.ForJob has a board per node, in node order
	for i, n := range j.Nodes() {
		boards[n.Name] = lab.ForJob(j).Boards[i]
	}
	logs := t.TempDir()
	book, err := logbook.New(logs, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = book.Close() })
	discard := slog.New(slog.DiscardHandler)
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return discard.With("lib", "protoactor")
	}))
	t.Cleanup(system.Shutdown)

	sig := newSignal()
	h := &harness{
		t: t, sig: sig, job: j, boards: boards, system: system, book: book, logs: logs,
		clock:       newFakeClock(sig),
		events:      &eventLog{sig: sig},
		fakes:       map[string]*fakeBackend{},
		fcfg:        map[string]fakeConfig{},
		syncRelease: true,
	}
	h.cfg = actors.Config{
		Job:    j,
		Boards: boards,
		Open:   h.openFake,
		Book:   book,
		Clock:  h.clock,
		Logger: discard,
		Events: h.events.add,
	}
	return h
}

// nodeOf returns the node a board is assigned to.
func (h *harness) nodeOf(b lab.Board) string {
	for n, nb := range h.boards {
		if nb.Name == b.Name {
			return n
		}
	}
	h.t.Errorf("board %s is not assigned", b.Name)
	return ""
}

func (h *harness) openFake(_ string, b lab.Board) (actors.Backend, error) {
	node := h.nodeOf(b)
	h.mu.Lock()
	f := newFakeBackend(b.Name, h.fcfg[node], h.sig)
	if h.syncRelease {
		f.beforeClose = func() { h.waitFinal(node) }
	}
	h.fakes[node] = f
	h.mu.Unlock()
	h.sig.notify()
	return f, nil
}

// isFinal tells whether an event phase is a node's final status.
func isFinal(phase string) bool {
	return phase == report.StatusComplete || phase == report.StatusIncomplete || phase == report.StatusCanceled
}

// waitFinal waits, at most waitLimit, until node's final status was
// emitted. It runs in actor goroutines: it cannot fail the test.
func (h *harness) waitFinal(node string) { h.waitPhase(node, isFinal) }

// waitPhase waits, at most waitLimit, until node emitted a phase for which
// match holds. It cannot fail the test: for use in actor goroutines.
func (h *harness) waitPhase(node string, match func(phase string) bool) {
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	for {
		ch := h.sig.c()
		if slices.ContainsFunc(h.events.phases(node), match) {
			return
		}
		select {
		case <-ch:
		case <-limit.C:
			return
		}
	}
}

// pending waits until exactly one timer of duration d is pending and
// returns it: tests first let the other nodes finish, so that it is the
// timer of the node they are interested in.
func (h *harness) pending(d time.Duration) *fakeTimer {
	h.t.Helper()
	var got []*fakeTimer
	waitFor(h.t, h.sig, fmt.Sprintf("exactly one pending timer of %s", d), func() bool {
		got = h.clock.find(d)
		return len(got) == 1
	})
	return got[0]
}

// script sets how the fake backend of node behaves.
func (h *harness) script(node string, c fakeConfig) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fcfg[node] = c
}

// fake returns node's fake backend once it has been opened.
func (h *harness) fake(node string) *fakeBackend {
	h.t.Helper()
	var f *fakeBackend
	waitFor(h.t, h.sig, "backend of "+node, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		f = h.fakes[node]
		return f != nil
	})
	return f
}

func (h *harness) start() {
	h.t.Helper()
	run, err := actors.Start(h.system, h.cfg)
	require.NoError(h.t, err)
	h.run = run
}

// wait returns the results of the job, failing after limit.
func (h *harness) wait(limit time.Duration) *report.Results {
	h.t.Helper()
	select {
	case r := <-h.run.Done():
		require.NotNil(h.t, r)
		return r
	case <-time.After(limit):
		h.t.Fatalf("job did not end within %s", limit)
		return nil
	}
}

// waitEvent waits until node has reported phase.
func (h *harness) waitEvent(node, phase string) {
	h.t.Helper()
	waitFor(h.t, h.sig, fmt.Sprintf("event %s %q", node, phase), func() bool {
		return h.events.has(node, phase)
	})
}

// waitOp waits until node's backend has recorded op (its "boot" event
// comes before the boot's power cycle).
func (h *harness) waitOp(node, op string) {
	h.t.Helper()
	f := h.fake(node)
	waitFor(h.t, h.sig, fmt.Sprintf("op %s %q", node, op), func() bool { return f.count(op) > 0 })
}

// byNode indexes the node results.
func byNode(r *report.Results) map[string]report.Node {
	m := map[string]report.Node{}
	for _, n := range r.Nodes {
		m[n.Name] = n
	}
	return m
}

// countingBackend wraps a real backend and records the release calls.
type countingBackend struct {
	actors.Backend
	beforeClose func()
	beforeOff   func() // called first thing in Off, if set (before the board is opened)

	mu   sync.Mutex
	ops  []string
	onAt []bool // was the board on when Close was called
}

func (c *countingBackend) Off(ctx context.Context) error {
	if c.beforeOff != nil {
		c.beforeOff()
	}
	c.mu.Lock()
	c.ops = append(c.ops, "off")
	c.mu.Unlock()
	return c.Backend.Off(ctx)
}

func (c *countingBackend) Close() error {
	if c.beforeClose != nil {
		c.beforeClose()
	}
	on, err := c.Backend.State(context.Background())
	c.mu.Lock()
	c.ops = append(c.ops, "close")
	c.onAt = append(c.onAt, on && err == nil)
	c.mu.Unlock()
	return c.Backend.Close()
}

// OpenMultiNodeChannel gives the wrapped board's side channel: the actors
// under test serve MultiNode calls as they do for a sim board in a lab.
func (c *countingBackend) OpenMultiNodeChannel() (io.ReadWriteCloser, error) {
	sc, ok := c.Backend.(actors.SideChanneled)
	if !ok {
		return nil, errors.New("no side channel")
	}
	return sc.OpenMultiNodeChannel()
}

// EchoOff says what the wrapped sim board says of its shell's terminal,
// as the board itself does in a lab.
func (c *countingBackend) EchoOff() bool {
	e, ok := c.Backend.(actors.EchoOffShell)
	return ok && e.EchoOff()
}

func (c *countingBackend) snapshot() ([]string, []bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ops), slices.Clone(c.onAt)
}

// openSim makes the Open of h use real simulated boards, each wrapped to
// count its release calls; the returned function gives node's backend.
func (h *harness) openSim() func(node string) *countingBackend {
	dir := h.t.TempDir()
	var mu sync.Mutex
	opened := map[string]*countingBackend{}
	h.cfg.Open = func(_ string, b lab.Board) (actors.Backend, error) {
		sb, err := sim.New(sim.Options{Name: b.Name, Dir: filepath.Join(dir, b.Name), BootDelay: 5 * time.Millisecond, Unsandboxed: true}) // the actors under test, not the sandbox (sim tests it): no namespace set-up in the 3 s budgets
		if err != nil {
			return nil, err
		}
		node := h.nodeOf(b)
		cb := &countingBackend{Backend: sb}
		if h.syncRelease {
			cb.beforeClose = func() { h.waitFinal(node) }
		}
		mu.Lock()
		opened[node] = cb
		mu.Unlock()
		return cb, nil
	}
	return func(node string) *countingBackend {
		mu.Lock()
		defer mu.Unlock()
		return opened[node]
	}
}

var errBoom = errors.New("boom")
