package actors

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/scheduler"
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
}

// Submission is a job handed to the lab.
type Submission struct {
	// ID names the job in the lab; empty: Submit makes one up.
	ID     string
	Job    *jobs.Job
	Book   *logbook.Book
	Events func(Event) // nil: none
	// Waiting receives why the job waits, at every scheduling pass while
	// it does (at least once a second). Called from the lab actor; must not
	// block. Nil: none.
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
type Lab struct {
	system *actor.ActorSystem
	pid    *actor.PID
}

// StartLab spawns the lab actor in system.
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
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return newLabActor(cfg) }))
	return &Lab{system: system, pid: pid}
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
func (l *Lab) SetHealth(board string, h scheduler.Health) {
	l.system.Root.Send(l.pid, &setHealth{board: board, health: h})
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

// attemptDone is a job actor's final report to the lab.
type attemptDone struct {
	id  string
	res *report.Results
}

// labTick re-plans once a second while jobs wait.
type labTick struct{}

type queued struct {
	id       string
	sub      Submission
	job      scheduler.Job
	attempts []report.Attempt
}

type running struct {
	q      *queued
	pid    *actor.PID
	boards map[string]string // node → board
	since  time.Time
	check  string // the board, when this is a health check
	out    string // results directory of a health check
	book   *logbook.Book
}

type labActor struct {
	cfg      LabConfig
	boards   []scheduler.Board
	byName   map[string]lab.Board
	failures map[string]int // board → consecutive infrastructure errors
	queue    []*queued
	running  map[string]*running
	ticking  bool
	stop     func() bool

	checks    map[string]lab.HealthCheck // by device type
	jobsOn    map[string]int             // board → jobs since its last health check
	lastCheck map[string]time.Time
	checkSeq  int
}

func newLabActor(cfg LabConfig) *labActor {
	a := &labActor{cfg: cfg, byName: map[string]lab.Board{}, failures: map[string]int{}, running: map[string]*running{},
		checks: map[string]lab.HealthCheck{}, jobsOn: map[string]int{}, lastCheck: map[string]time.Time{}}
	for _, hc := range cfg.Lab.HealthChecks {
		a.checks[hc.DeviceType] = hc
	}
	for _, b := range cfg.Lab.Boards {
		a.byName[b.Name] = b
		h := scheduler.Good
		if _, ok := a.checks[b.DeviceType]; ok {
			h = scheduler.Unknown // checked before its first job
		}
		if b.Health != "" {
			h = scheduler.Health(b.Health)
		}
		a.boards = append(a.boards, scheduler.Board{Name: b.Name, DeviceType: b.DeviceType, Tags: b.Tags, Health: h})
	}
	return a
}

func (a *labActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *submitJob:
		q := &queued{id: m.id, sub: m.sub, job: schedJob(m.id, m.sub.Job, a.cfg.Clock.Now()), attempts: m.sub.Attempts}
		if err := a.unusable(q); err != nil {
			q.sub.Done(&report.Results{Job: report.Job{
				Name: q.sub.Job.Name, Status: report.StatusIncomplete, Class: report.JobError,
				Error: fmt.Sprintf("no boards in service for it: %v", err),
			}})
			return
		}
		a.queue = append(a.queue, q)
		a.plan(ctx)
	case *cancelQueued:
		a.cancel(ctx, m)
	case *attemptDone:
		a.attemptDone(ctx, m)
	case *setHealth:
		if m.health == scheduler.Good {
			a.failures[m.board] = 0
			a.jobsOn[m.board] = 0
			a.lastCheck[m.board] = a.cfg.Clock.Now()
		}
		a.setHealth(m.board, m.health)
		a.plan(ctx)
	case *labTick:
		a.ticking = false
		a.plan(ctx)
	case *actor.Stopping:
		if a.stop != nil {
			a.stop()
		}
	}
}

func schedJob(id string, j *jobs.Job, now time.Time) scheduler.Job {
	sj := scheduler.Job{ID: id, Name: j.Name, Priority: j.Priority, Submitted: now, Timeout: j.Timeout}
	for _, r := range j.Roles {
		sj.Roles = append(sj.Roles, scheduler.Role{Name: r.Name, DeviceType: r.DeviceType, Count: r.Count, Tags: r.Tags})
	}
	return sj
}

// plan asks the scheduler what to do now and does it.
func (a *labActor) plan(ctx actor.Context) {
	now := a.cfg.Clock.Now()
	a.dueChecks(now)
	st := scheduler.State{Now: now, Boards: a.boards, Checked: map[string]bool{}}
	for t := range a.checks {
		st.Checked[t] = true
	}
	for _, q := range a.queue {
		st.Queue = append(st.Queue, q.job)
	}
	for id, r := range a.running {
		var bs []string
		for _, b := range r.boards {
			bs = append(bs, b)
		}
		st.Running = append(st.Running, scheduler.Running{JobID: id, Boards: bs, Started: r.since, Timeout: r.q.sub.Job.Timeout})
	}
	d := scheduler.Plan(st)
	for _, s := range d.Start {
		a.start(ctx, s, now)
	}
	for _, b := range d.HealthChecks {
		a.startCheck(ctx, b, now)
	}
	for _, q := range a.queue {
		if e, ok := d.Explain[q.id]; ok && q.sub.Waiting != nil {
			q.sub.Waiting(e)
		}
	}
	if len(a.queue) > 0 && !a.ticking {
		a.ticking = true
		self, root := ctx.Self(), ctx.ActorSystem().Root
		a.stop = a.cfg.Clock.AfterFunc(time.Second, func() { root.Send(self, &labTick{}) })
	}
}

func (a *labActor) start(ctx actor.Context, s scheduler.Start, now time.Time) {
	var q *queued
	for i, x := range a.queue {
		if x.id == s.JobID {
			q = x
			a.queue = append(a.queue[:i], a.queue[i+1:]...)
			break
		}
	}
	if q == nil {
		return
	}
	a.running[q.id] = a.spawn(ctx, q, s.Boards, now)
	if q.sub.Started != nil {
		q.sub.Started(s.Boards)
	}
}

// spawn starts a job actor for q on the given boards (node → board).
func (a *labActor) spawn(ctx actor.Context, q *queued, boards map[string]string, now time.Time) *running {
	cfg := Config{
		Job: q.sub.Job, Boards: map[string]lab.Board{}, Addresses: map[string]string{},
		Open: a.cfg.Open, Book: q.sub.Book, Clock: a.cfg.Clock, Logger: a.cfg.Logger,
		Events: q.sub.Events,
	}
	for node, b := range boards {
		cfg.Boards[node] = a.byName[b]
		cfg.Addresses[node] = a.cfg.Addresses[b]
	}
	if cfg.Events == nil {
		cfg.Events = func(Event) {}
	}
	self, root, id := ctx.Self(), ctx.ActorSystem().Root, q.id
	pid := ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &jobActor{cfg: cfg, report: func(r *report.Results) { root.Send(self, &attemptDone{id: id, res: r}) }}
	}))
	return &running{q: q, pid: pid, boards: boards, since: now}
}

// dueChecks marks for a new health check the boards whose check is due
// again: after every N jobs, or when it is older than the interval.
func (a *labActor) dueChecks(now time.Time) {
	for _, b := range a.boards {
		hc, ok := a.checks[b.DeviceType]
		if !ok || b.Health != scheduler.Good {
			continue
		}
		if (hc.Every > 0 && a.jobsOn[b.Name] >= hc.Every) ||
			(hc.Interval > 0 && now.Sub(a.lastCheck[b.Name]) >= hc.Interval) {
			a.setHealth(b.Name, scheduler.Unknown)
		}
	}
}

// startCheck runs the lab's health-check job of the board's type on it.
func (a *labActor) startCheck(ctx actor.Context, board string, now time.Time) {
	hc := a.checks[a.byName[board].DeviceType]
	a.checkSeq++
	out := filepath.Join(a.cfg.HealthOut, fmt.Sprintf("%s-%d", board, a.checkSeq))
	book, err := logbook.New(out, nil)
	if err != nil {
		a.cfg.Logger.Error("health check", "board", board, "err", err)
		a.setHealth(board, scheduler.Bad)
		return
	}
	q := &queued{id: fmt.Sprintf("health-check-%s-%d", board, a.checkSeq), sub: Submission{Job: hc.Job, Book: book, Events: a.cfg.Events}}
	nodes := hc.Job.Nodes()
	r := a.spawn(ctx, q, map[string]string{nodes[0].Name: board}, now)
	r.check, r.out, r.book = board, out, book
	a.running[q.id] = r
}

// checkDone takes a board into service if its health check passed, out of
// service if not.
func (a *labActor) checkDone(r *running, res *report.Results) {
	if err := report.Write(r.out, res); err != nil {
		a.cfg.Logger.Error("health check results", "board", r.check, "err", err)
	}
	_ = r.book.Close()
	h := scheduler.Good
	if res.ExitCode() != 0 {
		h = scheduler.Bad
		a.cfg.Logger.Warn("board failed its health check: taken out of service", "board", r.check, "error", res.Job.Error, "results", r.out)
	}
	a.setHealth(r.check, h)
	a.lastCheck[r.check] = a.cfg.Clock.Now()
	a.jobsOn[r.check] = 0
	if h == scheduler.Good {
		a.failures[r.check] = 0
	}
}

func (a *labActor) cancel(ctx actor.Context, m *cancelQueued) {
	if r, ok := a.running[m.id]; ok {
		ctx.Send(r.pid, &cancelJob{reason: m.reason})
		return
	}
	for i, q := range a.queue {
		if q.id == m.id {
			a.queue = append(a.queue[:i], a.queue[i+1:]...)
			q.sub.Done(&report.Results{Job: report.Job{
				Name: q.sub.Job.Name, Status: report.StatusCanceled, Class: report.JobError,
				Error: m.reason + " (while queued)", Attempts: q.attempts,
			}})
			a.plan(ctx)
			return
		}
	}
}

// attemptDone frees the job's boards, keeps the boards' health, and
// either retries the job on other boards or delivers its results.
func (a *labActor) attemptDone(ctx actor.Context, m *attemptDone) {
	r, ok := a.running[m.id]
	if !ok {
		return
	}
	delete(a.running, m.id)
	res := m.res
	if r.check != "" {
		a.checkDone(r, res)
		a.dropHopeless()
		a.plan(ctx)
		return
	}
	for _, b := range r.boards {
		a.jobsOn[b]++
	}
	var failed []string
	for _, n := range res.Nodes {
		switch {
		case n.Class == report.Infrastructure:
			failed = append(failed, n.Board)
			a.failures[n.Board]++
			if a.failures[n.Board] >= a.cfg.BadAfter {
				a.setHealth(n.Board, scheduler.Bad)
				a.cfg.Logger.Warn("board taken out of service", "board", n.Board, "consecutive_infrastructure_errors", a.failures[n.Board])
			}
		case n.Status == report.StatusComplete:
			a.failures[n.Board] = 0
		}
	}
	q := r.q
	if res.Job.Class == report.Infrastructure && len(q.attempts) < a.cfg.Retries {
		var boards []string
		for _, n := range res.Nodes {
			boards = append(boards, n.Board)
		}
		retry := *q // a copy: q may be referenced by the explanation callbacks
		retry.attempts = append(slices.Clone(q.attempts), report.Attempt{Boards: boards, Error: res.Job.Error})
		retry.job.Avoid = append(slices.Clone(q.job.Avoid), failed...)
		if err := a.unusable(&retry); err == nil {
			a.queue = append(a.queue, &retry)
			a.plan(ctx)
			return
		}
		a.cfg.Logger.Info("no retry: no other boards", "job", q.id)
	}
	res.Job.Attempts = q.attempts
	q.sub.Done(res)
	a.dropHopeless()
	a.plan(ctx)
}

// dropHopeless ends the queued jobs that boards taken out of service have
// left without enough boards, instead of letting them wait forever.
func (a *labActor) dropHopeless() {
	keep := a.queue[:0]
	for _, q := range a.queue {
		err := a.unusable(q)
		if err == nil {
			keep = append(keep, q)
			continue
		}
		q.sub.Done(&report.Results{Job: report.Job{
			Name: q.sub.Job.Name, Status: report.StatusIncomplete, Class: report.Infrastructure,
			Error: fmt.Sprintf("no boards left in service for it: %v", err), Attempts: q.attempts,
		}})
	}
	a.queue = keep
}

// unusable tells why q can never run on the boards in service that it does
// not avoid, or nil if it can.
func (a *labActor) unusable(q *queued) error {
	avoid := map[string]bool{}
	for _, b := range q.job.Avoid {
		avoid[b] = true
	}
	usable := &lab.Lab{File: a.cfg.Lab.File}
	for _, b := range a.boards {
		// Boards in maintenance come back: jobs wait for them.
		if !avoid[b.Name] && (b.Health == scheduler.Good || b.Health == scheduler.Unknown || b.Health == scheduler.Maintenance) {
			usable.Boards = append(usable.Boards, a.byName[b.Name])
		}
	}
	return usable.Check(q.sub.Job)
}

func (a *labActor) setHealth(board string, h scheduler.Health) {
	for i := range a.boards {
		if a.boards[i].Name == board && a.boards[i].Health != h {
			a.boards[i].Health = h
			if a.cfg.HealthChanged != nil {
				a.cfg.HealthChanged(board, string(h))
			}
		}
	}
}
