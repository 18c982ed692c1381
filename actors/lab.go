package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/labstate"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/scheduler"
	"github.com/troupe-lab/troupe/workers/images"
)

// LabConfig is a lab and how to run jobs on it.
type LabConfig struct {
	Lab  *lab.Lab
	Open func(node string, b lab.Board) (Backend, error)
	// Addresses are the boards' IP addresses (TROUPE_IP), by board name.
	Addresses map[string]string
	Clock     Clock
	Logger    *slog.Logger
	Retries   int // reruns of a job ended by an infrastructure error
	BadAfter  int // consecutive infrastructure errors that take a board bad (default 3)
	// HealthOut is where health-check runs write their results and logs,
	// one directory each. The checks themselves are the lab's.
	HealthOut string
	Events    func(Event) // phase changes of health checks; nil: none
	// HealthChanged is told every change of a board's health. Called from
	// the lab actor; must not block. Nil: none.
	HealthChanged func(board, health string)
	// ReservationChanged is told every new or ended (owner "")
	// reservation of a board. Called from the lab actor; must not block.
	// Nil: none.
	ReservationChanged func(board, owner string, until time.Time)
	// Fatal is told when the lab actor itself crashes, after its jobs are
	// stopped and their boards powered off. The lab is not restarted: its
	// queue is gone, so the process must not go on as if nothing happened.
	// Nil: log the error and exit the process with status 2.
	Fatal func(error)
	// Workers: boards may join from workers (Lab.BoardsJoined); a job the
	// boards known now cannot serve waits for them.
	Workers bool
	// Images names and reads the deploy images that workers' boards fetch
	// (nil: one with images.DefaultMaxBytes).
	Images *images.Source
}

// Submission is a job handed to the lab.
type Submission struct {
	// ID names the job in the lab; empty: Submit makes one up.
	ID     string
	Job    *jobs.Job
	Book   *logbook.Book
	Events func(Event) // nil: none
	// Waiting receives why the job waits, at its first scheduling pass and
	// at least once a second while it does (labstate.Waiting). Called from
	// the lab actor; must not block. Nil: none.
	Waiting func(scheduler.Explanation)
	// Done receives the final results (after any retries), once. Called
	// from the lab actor; must not block.
	Done func(*report.Results)
	// Started is told the boards (node → board) of every attempt that
	// starts. Called from the lab actor; must not block. Nil: none.
	Started func(boards map[string]string)
	// Attempts are earlier attempts of the job (a job re-queued after a
	// server restart): they count against the lab's retry budget.
	Attempts []report.Attempt
}

// Lab is the scheduler of one lab: it queues jobs, starts each when all its
// boards can be reserved at once, retries jobs ended by infrastructure
// errors on other boards, and takes boards that keep failing out of service.
// Its decisions are labstate's; the lab actor carries them out.
type Lab struct {
	system *actor.ActorSystem
	pid    *actor.PID
}

// StartLab spawns the lab actor in system. The lab actor is supervised
// stop-and-report: if it panics, its jobs are stopped (boards off) and
// cfg.Fatal is told; it is never restarted with a wiped queue.
func StartLab(system *actor.ActorSystem, cfg LabConfig) *Lab {
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.BadAfter <= 0 {
		cfg.BadAfter = 3
	}
	if cfg.Images == nil {
		cfg.Images = &images.Source{}
	}
	if cfg.Fatal == nil {
		logger := cfg.Logger
		cfg.Fatal = func(err error) {
			logger.Error("lab scheduler crashed", "err", err)
			fmt.Fprintf(os.Stderr, "troupe: %v\n", err)
			os.Exit(2)
		}
	}
	props := actor.PropsFromProducer(func() actor.Actor { return newLabActor(cfg) },
		actor.WithGuardian(&labGuardian{fatal: cfg.Fatal}))
	pid := system.Root.Spawn(props)
	return &Lab{system: system, pid: pid}
}

// labGuardian supervises the lab actor: stop, then report.
type labGuardian struct{ fatal func(error) }

func (g *labGuardian) HandleFailure(system *actor.ActorSystem, _ actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason, msg interface{}) {
	err := fmt.Errorf("lab scheduler crashed handling %T: %v", msg, reason)
	go func() {
		_ = system.Root.StopFuture(child).Wait()
		g.fatal(err)
	}()
}

// Submit queues a job and returns its ID (for Cancel): s.ID, or one made
// up that is unique in this lab.
func (l *Lab) Submit(s Submission) string {
	id := s.ID
	if id == "" {
		id = fmt.Sprintf("%s-%d", s.Job.Name, time.Now().UnixNano())
	}
	l.system.Root.Send(l.pid, &submitJob{id: id, sub: s})
	return id
}

// SetHealth sets a board's health by hand (an administrator taking it into
// or out of service). A board set good starts with a clean failure count.
// Queued jobs that can no longer run end at once, with the reason.
func (l *Lab) SetHealth(board string, h scheduler.Health) {
	l.system.Root.Send(l.pid, &setHealth{board: board, health: h})
}

// askTimeout bounds a request to the lab actor.
const askTimeout = 10 * time.Second

// Reserve holds a board for manual work by owner until until: no job or
// health check starts on it before then (a job running on it finishes).
// Queued jobs that need it wait, and say who holds it. It fails for an
// unknown board, an empty owner, a time not in the future, or a board
// reserved by someone else.
func (l *Lab) Reserve(board, owner string, until time.Time) error {
	return l.ask(&reserveBoard{board: board, owner: owner, until: until})
}

// Release ends a board's reservation (whoever holds it).
func (l *Lab) Release(board string) error {
	return l.ask(&releaseBoard{board: board})
}

func (l *Lab) ask(msg interface{}) error {
	res, err := l.system.Root.RequestFuture(l.pid, msg, askTimeout).Result()
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if e, ok := res.(error); ok {
		return e
	}
	return nil
}

// BoardStatus is one board of the lab now: health, reservation (ReservedBy
// "" when none), consecutive infrastructure errors and the job on it.
type BoardStatus = labstate.BoardStatus

// Boards reports the state of every board, in lab order.
func (l *Lab) Boards() ([]BoardStatus, error) {
	res, err := l.system.Root.RequestFuture(l.pid, &boardsQuery{}, askTimeout).Result()
	if err != nil {
		return nil, fmt.Errorf("lab boards: %w", err)
	}
	bs, _ := res.([]BoardStatus)
	return bs, nil
}

// Stop ends the lab: running jobs and health checks are stopped and their
// boards powered off before it returns (within protoactor's 10 s).
func (l *Lab) Stop() error {
	if err := l.system.Root.StopFuture(l.pid).Wait(); err != nil {
		return fmt.Errorf("stop lab: %w", err)
	}
	return nil
}

// Cancel ends a queued or running job as canceled; its boards are freed.
func (l *Lab) Cancel(id, reason string) {
	l.system.Root.Send(l.pid, &cancelQueued{id: id, reason: reason})
}

type submitJob struct {
	id  string
	sub Submission
}

type cancelQueued struct{ id, reason string }

type setHealth struct {
	board  string
	health scheduler.Health
}

type reserveBoard struct {
	board, owner string
	until        time.Time
}

type releaseBoard struct{ board string }

type boardsQuery struct{}

// attemptDone is a job actor's final report to the lab.
type attemptDone struct {
	id      string
	res     *report.Results
	stillOn []string // boards that could not be verified off
}

// jobGone is the lab's own note that a job actor terminated, queued behind
// what it sent before (its attemptDone).
type jobGone struct{ pid *actor.PID }

// labTick is the timer the state machine asked for.
type labTick struct{}

// labPlan is the lab's note to itself to plan the submissions that came
// in a burst: it is queued behind the messages already waiting.
type labPlan struct{}

// labRun is a job or health check the lab actor runs.
type labRun struct {
	pid   *actor.PID
	check string // the board, when this is a health check
	out   string // results directory of a health check
	book  *logbook.Book
	// reported is set once its attemptDone is in: its actor's end is
	// then expected.
	reported bool
}

// labActor carries out the decisions of the lab's state machine: it spawns
// job actors, calls the submitters' callbacks, writes health-check results
// and arms the timer.
type labActor struct {
	cfg     LabConfig
	m       *labstate.Machine
	byName  map[string]lab.Board
	checks  map[string]lab.HealthCheck // by device type
	subs    map[string]*Submission     // queued and running jobs, by ID
	runs    map[string]*labRun         // by job ID
	byPID   map[string]string          // job actor PID id → job ID
	crashed map[string]string          // job actor PID id → why it panicked
	stop    func() bool
	refused error // of the last reserve or release
	// Workers (labworkers.go): worker → its link, board → its worker.
	links       map[string]*workerLink
	boardWorker map[string]string
}

func newLabActor(cfg LabConfig) *labActor {
	a := &labActor{cfg: cfg, byName: map[string]lab.Board{}, checks: map[string]lab.HealthCheck{},
		subs: map[string]*Submission{}, runs: map[string]*labRun{}, byPID: map[string]string{}, crashed: map[string]string{}}
	mc := labstate.Config{Checks: map[string]labstate.Check{}, Retries: cfg.Retries, BadAfter: cfg.BadAfter, Workers: cfg.Workers}
	for _, hc := range cfg.Lab.HealthChecks {
		a.checks[hc.DeviceType] = hc
		mc.Checks[hc.DeviceType] = labstate.Check{Every: hc.Every, Interval: hc.Interval, Timeout: hc.Job.Timeout}
	}
	for _, b := range cfg.Lab.Boards {
		a.byName[b.Name] = b
		mc.Boards = append(mc.Boards, scheduler.Board{Name: b.Name, DeviceType: b.DeviceType, Tags: b.Tags, Health: scheduler.Health(b.Health)})
	}
	a.m = labstate.New(mc)
	return a
}

func (a *labActor) Receive(ctx actor.Context) {
	now := a.cfg.Clock.Now()
	switch m := ctx.Message().(type) {
	case *submitJob:
		sub := m.sub
		a.subs[m.id] = &sub
		a.step(ctx, labstate.Submit{Now: now, Job: lab.SchedulerJob(m.id, sub.Job, now), Attempts: sub.Attempts, Later: true})
	case *cancelQueued:
		a.step(ctx, labstate.Cancel{Now: now, ID: m.id, Reason: m.reason})
	case *setHealth:
		a.step(ctx, labstate.SetHealth{Now: now, Board: m.board, Health: m.health})
	case *reserveBoard:
		a.refused = nil
		a.step(ctx, labstate.Reserve{Now: now, Board: m.board, Owner: m.owner, Until: m.until})
		ctx.Respond(a.refused)
	case *releaseBoard:
		a.refused = nil
		a.step(ctx, labstate.Release{Now: now, Board: m.board})
		ctx.Respond(a.refused)
	case *boardsQuery:
		ctx.Respond(a.m.Boards(now))
	case *workerOf:
		a.workerOf(ctx, m)
	case *attemptDone:
		if r := a.runs[m.id]; r != nil {
			r.reported = true
		}
		a.step(ctx, labstate.AttemptDone{Now: now, ID: m.id, Results: m.res, StillOn: m.stillOn})
	case *actor.Terminated:
		ctx.Send(ctx.Self(), &jobGone{pid: m.Who})
	case *jobGone:
		a.jobGone(ctx, m.pid, now)
	case *labTick:
		a.step(ctx, labstate.Tick{Now: now})
	case *boardsJoined:
		a.boardsJoined(ctx, m)
	case *workerLost:
		a.workerLost(ctx, m)
	case *labPlan:
		a.step(ctx, labstate.Plan{Now: now})
	case *actor.Stopping:
		if a.stop != nil {
			a.stop()
		}
	}
}

// HandleFailure supervises the job actors stop-and-report: a job actor
// that panics is stopped (its boards powered off) and its job ends
// incomplete with the panic as its error; it is never restarted.
func (a *labActor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason, _ interface{}) {
	a.crashed[child.Id] = fmt.Sprint(reason)
	sup.StopChildren(child)
}

// jobGone ends the job of a job actor that stopped without reporting.
func (a *labActor) jobGone(ctx actor.Context, pid *actor.PID, now time.Time) {
	id, ok := a.byPID[pid.Id]
	if !ok {
		return
	}
	delete(a.byPID, pid.Id)
	why := a.crashed[pid.Id]
	delete(a.crashed, pid.Id)
	if r := a.runs[id]; r == nil || r.pid.Id != pid.Id || r.reported {
		return
	}
	if why == "" {
		why = "stopped without reporting"
	}
	a.cfg.Logger.Error("job actor crashed", "job", id, "reason", why)
	res := &report.Results{Job: report.Job{Name: id, Status: report.StatusIncomplete, Class: report.JobError,
		Error: fmt.Sprintf("job actor crashed: %s", why)}}
	if sub := a.subs[id]; sub != nil {
		res.Job.Name = sub.Job.Name
	}
	a.step(ctx, labstate.AttemptDone{Now: now, ID: id, Results: res})
}

// step feeds an event to the state machine and carries out its effects.
func (a *labActor) step(ctx actor.Context, ev labstate.Event) {
	for _, e := range a.m.Step(ev) {
		a.apply(ctx, e)
	}
}

func (a *labActor) apply(ctx actor.Context, e labstate.Effect) {
	switch e := e.(type) {
	case labstate.StartJob:
		a.startJob(ctx, e)
	case labstate.StartCheck:
		a.startCheck(ctx, e)
	case labstate.StopJob:
		if r := a.runs[e.ID]; r != nil {
			ctx.Send(r.pid, &cancelJob{reason: e.Reason})
		}
	case labstate.Done:
		delete(a.runs, e.ID)
		sub := a.subs[e.ID]
		delete(a.subs, e.ID)
		if sub != nil {
			a.call(ctx, e.ID, "Done", func() { sub.Done(e.Results) })
		}
	case labstate.CheckDone:
		a.checkDone(e)
	case labstate.Waiting:
		if sub := a.subs[e.ID]; sub != nil && sub.Waiting != nil {
			a.call(ctx, e.ID, "Waiting", func() { sub.Waiting(e.Explain) })
		}
	case labstate.HealthChanged:
		a.cfg.Logger.Info("board health", "board", e.Board, "health", e.Health, "reason", e.Reason)
		if e.Health == scheduler.Bad {
			a.cfg.Logger.Warn("board taken out of service", "board", e.Board, "reason", e.Reason)
		}
		if a.cfg.HealthChanged != nil {
			a.call(ctx, "", "HealthChanged", func() { a.cfg.HealthChanged(e.Board, string(e.Health)) })
		}
	case labstate.ReservationChanged:
		a.cfg.Logger.Info("board reservation", "board", e.Board, "owner", e.Owner, "until", e.Until)
		if a.cfg.ReservationChanged != nil {
			a.call(ctx, "", "ReservationChanged", func() { a.cfg.ReservationChanged(e.Board, e.Owner, e.Until) })
		}
	case labstate.Refused:
		a.refused = e.Err
	case labstate.LoseNodes:
		if r := a.runs[e.ID]; r != nil {
			ctx.Send(r.pid, &loseNodes{boards: e.Boards, reason: e.Reason})
		}
	case labstate.ConnectionChanged:
		a.cfg.Logger.Info("board connection", "board", e.Board, "worker", e.Worker, "offline", e.Offline)
	case labstate.WantPlan:
		ctx.Send(ctx.Self(), &labPlan{})
	case labstate.WantTick:
		self, root := ctx.Self(), ctx.ActorSystem().Root
		a.stop = a.cfg.Clock.AfterFunc(e.After, func() { root.Send(self, &labTick{}) })
	}
}

// call runs a submitter's callback. One that panics ends its job (if it is
// still queued or running) with the panic as the reason; the lab goes on.
func (a *labActor) call(ctx actor.Context, id, what string, f func()) {
	reason := func() (reason string) {
		defer func() {
			if r := recover(); r != nil {
				reason = fmt.Sprintf("%s callback panicked: %v", what, r)
			}
		}()
		f()
		return ""
	}()
	if reason == "" {
		return
	}
	a.cfg.Logger.Error("callback panicked", "job", id, "callback", what, "reason", reason)
	if _, ok := a.subs[id]; ok && what != "Done" {
		a.step(ctx, labstate.Cancel{Now: a.cfg.Clock.Now(), ID: id, Reason: reason})
	}
}

func (a *labActor) startJob(ctx actor.Context, s labstate.StartJob) {
	sub := a.subs[s.ID]
	a.spawn(ctx, s.ID, sub, s.Boards)
	if sub.Started != nil {
		a.call(ctx, s.ID, "Started", func() { sub.Started(s.Boards) })
	}
}

// spawn starts a job actor for sub on the given boards (node → board).
func (a *labActor) spawn(ctx actor.Context, id string, sub *Submission, boards map[string]string) *labRun {
	cfg := Config{
		Job: sub.Job, Boards: map[string]lab.Board{}, Addresses: map[string]string{},
		Open: a.cfg.Open, Book: sub.Book, Clock: a.cfg.Clock, Logger: a.cfg.Logger,
		Events: sub.Events, BootLimit: a.cfg.Lab.BootLimit, DeployLimit: a.cfg.Lab.DeployLimit,
		LogLimit: a.cfg.Lab.LogLimit,
	}
	a.remote(&cfg, boards)
	for node, b := range boards {
		cfg.Boards[node] = a.byName[b]
		cfg.Addresses[node] = a.cfg.Addresses[b]
	}
	if cfg.Events == nil {
		cfg.Events = func(Event) {}
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	pid := ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &jobActor{cfg: cfg, report: func(r *report.Results, stillOn []string) {
			root.Send(self, &attemptDone{id: id, res: r, stillOn: stillOn})
		}}
	}))
	r := &labRun{pid: pid}
	a.runs[id] = r
	a.byPID[pid.Id] = id
	return r
}

// startCheck runs the lab's health-check job of the board's type on it.
func (a *labActor) startCheck(ctx actor.Context, s labstate.StartCheck) {
	hc := a.checks[a.byName[s.Board].DeviceType]
	out := filepath.Join(a.cfg.HealthOut, strings.TrimPrefix(s.ID, "health-check-"))
	book, err := logbook.New(out, nil)
	if err != nil {
		a.cfg.Logger.Error("health check", "board", s.Board, "err", err)
		a.step(ctx, labstate.CheckNotStarted{Now: a.cfg.Clock.Now(), ID: s.ID, Err: err.Error()})
		return
	}
	sub := &Submission{Job: hc.Job, Book: book, Events: a.cfg.Events}
	nodes := hc.Job.Nodes()
	r := a.spawn(ctx, s.ID, sub, map[string]string{nodes[0].Name: s.Board})
	r.check, r.out, r.book = s.Board, out, book
}

// checkDone keeps a health check's results; the machine has decided the
// board's health.
func (a *labActor) checkDone(e labstate.CheckDone) {
	r := a.runs[e.ID]
	delete(a.runs, e.ID)
	if r == nil {
		return
	}
	if err := errors.Join(report.Write(r.out, e.Results), r.book.Close()); err != nil {
		a.cfg.Logger.Error("health check results", "board", e.Board, "err", err)
	}
	if !e.Passed {
		a.cfg.Logger.Warn("board failed its health check: taken out of service", "board", e.Board, "error", e.Results.Job.Error, "results", r.out)
	}
}
