// Package labstate holds the decisions of a lab as a pure state machine:
// the queue, each board's health, failure count, health-check cadence and
// reservation, and the jobs running. Step takes one Event and returns the
// Effects to apply, in order. It does no I/O, reads no clock (every event
// carries its time) and calls nothing back: the lab actor (package actors)
// feeds it events and carries out its effects.
//
// Placement itself is package scheduler's: Step calls scheduler.Plan and
// decides with scheduler.Never (the one feasibility rule) which jobs can
// never run.
package labstate

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/scheduler"
)

// Check is the health-check cadence of one device type: a board is checked
// while its health is unknown, and again after Every jobs on it or when its
// last check is older than Interval (0: never for that reason).
type Check struct {
	Every    int
	Interval time.Duration
	Timeout  time.Duration // of the check job, to predict when its board frees
}

// Config is the lab the machine decides for.
type Config struct {
	// Boards in lab order, with their initial health; "" means unknown
	// for device types with a Check, good otherwise.
	Boards   []scheduler.Board
	Checks   map[string]Check // by device type
	Retries  int              // reruns of a job ended by an infrastructure error
	BadAfter int              // consecutive infrastructure errors that take a board bad (≥ 1)
	// Workers: boards may join later (BoardsJoined). A job the boards
	// known now cannot serve waits, explained, instead of ending.
	Workers bool
}

// Event is something that happened to the lab.
type Event interface{ event() }

// Submit queues a job. Job.ID must be unique in the lab.
type Submit struct {
	Now      time.Time
	Job      scheduler.Job
	Attempts []report.Attempt // earlier attempts (a job re-queued after a restart)
	// Later leaves the planning to the next Plan event (asked for with
	// WantPlan) or any other event that plans: a burst of submissions is
	// planned once, not once per job.
	Later bool
}

// Cancel ends a queued or running job as canceled.
type Cancel struct {
	Now        time.Time
	ID, Reason string
}

// SetHealth sets a board's health by hand. A board set good starts with a
// clean failure count and a fresh check.
type SetHealth struct {
	Now    time.Time
	Board  string
	Health scheduler.Health
}

// Reserve holds a board for manual work by Owner until Until. A board
// reserved by someone else (and not expired) is refused.
type Reserve struct {
	Now          time.Time
	Board, Owner string
	Until        time.Time
}

// Release ends a board's reservation.
type Release struct {
	Now   time.Time
	Board string
}

// AttemptDone is the end of a job attempt or health check the machine
// started. StillOn lists its boards that could not be verified off.
type AttemptDone struct {
	Now     time.Time
	ID      string
	Results *report.Results
	StillOn []string
}

// CheckNotStarted says a health check the machine asked for could not be
// set up (its results directory, say).
type CheckNotStarted struct {
	Now time.Time
	ID  string
	Err string
}

// Tick is the timer the machine asked for with WantTick.
type Tick struct{ Now time.Time }

// Plan plans the submissions left for later, if no other event has since.
type Plan struct{ Now time.Time }

func (Submit) event()          {}
func (Cancel) event()          {}
func (SetHealth) event()       {}
func (Reserve) event()         {}
func (Release) event()         {}
func (AttemptDone) event()     {}
func (CheckNotStarted) event() {}
func (Tick) event()            {}
func (Plan) event()            {}

// Effect is something the lab actor must do.
type Effect interface{ effect() }

// StartJob starts an attempt of a queued job on the given boards.
type StartJob struct {
	ID     string
	Boards map[string]string // node → board
}

// StartCheck runs the health check of the board's device type on it, as
// job ID.
type StartCheck struct{ ID, Board string }

// StopJob cancels a running job; its AttemptDone follows.
type StopJob struct{ ID, Reason string }

// Done delivers a job's final results (after any retries), once.
type Done struct {
	ID      string
	Results *report.Results
}

// CheckDone is the end of a health check; its board's health is decided
// (see HealthChanged).
type CheckDone struct {
	ID, Board string
	Results   *report.Results
	Passed    bool
}

// Waiting tells a queued job why it waits: at its first plan, then at
// every Tick (once a second while it waits) and every plan of a rarer
// event (health, reservations, workers); not at every job's end.
type Waiting struct {
	ID      string
	Explain scheduler.Explanation
}

// HealthChanged is a change of a board's health, and why.
type HealthChanged struct {
	Board  string
	Health scheduler.Health
	Reason string
}

// ReservationChanged is a new or ended reservation (Owner "": ended).
type ReservationChanged struct {
	Board, Owner string
	Until        time.Time
}

// Refused answers a Reserve or Release that cannot be done.
type Refused struct{ Err error }

// WantTick asks for a Tick after the given time (at most one is pending).
type WantTick struct{ After time.Duration }

// WantPlan asks for a Plan event once the events already waiting have
// been stepped (at most one is pending).
type WantPlan struct{}

func (StartJob) effect()           {}
func (StartCheck) effect()         {}
func (StopJob) effect()            {}
func (Done) effect()               {}
func (CheckDone) effect()          {}
func (Waiting) effect()            {}
func (HealthChanged) effect()      {}
func (ReservationChanged) effect() {}
func (Refused) effect()            {}
func (WantTick) effect()           {}
func (WantPlan) effect()           {}

// tickEvery is how often queued jobs are re-planned (and told why they wait).
const tickEvery = time.Second

type queued struct {
	job       scheduler.Job
	attempts  []report.Attempt
	explained bool // told why it waits at least once
}

type running struct {
	q       *queued // nil for a health check
	check   string  // the board of a health check
	boards  []string
	lost    []string // boards lost with their worker (WorkerLost)
	since   time.Time
	timeout time.Duration
}

// Machine is the state of one lab.
type Machine struct {
	cfg       Config
	boards    []scheduler.Board
	index     map[string]int
	failures  map[string]int // board → consecutive infrastructure errors
	jobsOn    map[string]int // board → jobs since its last check
	lastCheck map[string]time.Time
	queue     []*queued
	running   map[string]*running
	feasible  *scheduler.Feasibility // for the boards' current health; nil: make one
	offline   map[string]bool        // boards of a lost worker
	checkSeq  int
	ticking   bool
	unplanned bool // a Submit left its planning for later
	planAsked bool // WantPlan emitted, its Plan not yet in
	// explainAll: the plan explains every waiting job. Plans of the
	// frequent events (a submission, a job's end) explain only the jobs
	// never explained yet, so that they cost what placing the queue
	// costs, not explaining all of it; a Tick explains them all.
	explainAll bool
	out        []Effect
}

// New makes the machine of a lab. A good board of a checked device type
// with an Interval is checked at the first plan.
func New(cfg Config) *Machine {
	if cfg.BadAfter < 1 {
		cfg.BadAfter = 1
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	m := &Machine{cfg: cfg, index: map[string]int{}, failures: map[string]int{}, jobsOn: map[string]int{},
		lastCheck: map[string]time.Time{}, running: map[string]*running{}, offline: map[string]bool{}}
	for _, b := range cfg.Boards {
		m.addBoard(b)
	}
	return m
}

func (m *Machine) addBoard(b scheduler.Board) {
	if b.Health == "" {
		b.Health = scheduler.Good
		if _, ok := m.cfg.Checks[b.DeviceType]; ok {
			b.Health = scheduler.Unknown // checked before its first job
		}
	}
	m.index[b.Name] = len(m.boards)
	m.boards = append(m.boards, b)
	m.feasible = nil
}

// Step applies one event and returns what to do, in order.
func (m *Machine) Step(ev Event) []Effect {
	m.out = nil
	switch ev.(type) {
	case Submit, Plan, AttemptDone: // the frequent events
		m.explainAll = false
	default:
		m.explainAll = true
	}
	switch e := ev.(type) {
	case Submit:
		m.submit(e)
	case Cancel:
		m.cancel(e)
	case SetHealth:
		if _, ok := m.index[e.Board]; !ok {
			break
		}
		if e.Health == scheduler.Good {
			m.failures[e.Board], m.jobsOn[e.Board], m.lastCheck[e.Board] = 0, 0, e.Now
		}
		m.setHealth(e.Board, e.Health, "set by hand")
		m.dropHopeless()
		m.plan(e.Now)
	case Reserve:
		m.reserve(e)
	case Release:
		i, ok := m.index[e.Board]
		if !ok {
			m.emit(Refused{Err: fmt.Errorf("release %s: no such board", e.Board)})
			break
		}
		if m.boards[i].ReservedBy != "" {
			m.boards[i].ReservedBy, m.boards[i].ReservedUntil = "", time.Time{}
			m.emit(ReservationChanged{Board: e.Board})
		}
		m.plan(e.Now)
	case AttemptDone:
		m.attemptDone(e)
	case CheckNotStarted:
		if r, ok := m.running[e.ID]; ok && r.check != "" {
			delete(m.running, e.ID)
			m.setHealth(r.check, scheduler.Bad, "health check could not start: "+e.Err)
			m.dropHopeless()
		}
		m.plan(e.Now)
	case Tick:
		m.ticking = false
		m.plan(e.Now)
	case BoardsJoined:
		m.boardsJoined(e)
	case WorkerLost:
		m.workerLost(e)
	case Plan:
		m.planAsked = false
		if m.unplanned {
			m.plan(e.Now)
		}
	}
	out := m.out
	m.out = nil
	return out
}

func (m *Machine) emit(e Effect) { m.out = append(m.out, e) }

// BoardStatus is one board as the machine sees it.
type BoardStatus struct {
	scheduler.Board
	Failures int    // consecutive infrastructure errors
	Job      string // the job or health check running on it, or ""
	Offline  bool   // its worker is lost
}

// Boards is the state of every board at now, in lab order; a reservation
// that has ended by now is not shown.
func (m *Machine) Boards(now time.Time) []BoardStatus {
	out := make([]BoardStatus, len(m.boards))
	for i, b := range m.boards {
		if !b.Reserved(now) {
			b.ReservedBy, b.ReservedUntil = "", time.Time{}
		}
		out[i] = BoardStatus{Board: b, Failures: m.failures[b.Name], Offline: m.offline[b.Name]}
	}
	for id, r := range m.running {
		for _, b := range r.boards {
			out[m.index[b]].Job = id
		}
	}
	return out
}

// Queued lists the IDs of the queued jobs, in submission order.
func (m *Machine) Queued() []string {
	ids := make([]string, len(m.queue))
	for i, q := range m.queue {
		ids[i] = q.job.ID
	}
	return ids
}

func (m *Machine) submit(e Submit) {
	q := &queued{job: e.Job, attempts: e.Attempts}
	if q.job.Submitted.IsZero() {
		q.job.Submitted = e.Now
	}
	if err := m.never(q.job); err != nil && !m.cfg.Workers {
		m.emit(Done{ID: q.job.ID, Results: &report.Results{Job: report.Job{
			Name: q.job.Name, Status: report.StatusIncomplete, Class: report.JobError,
			Error: fmt.Sprintf("no boards in service for it: %v", err), Attempts: q.attempts,
		}}})
		if !e.Later {
			m.plan(e.Now)
		}
		return
	}
	m.queue = append(m.queue, q)
	if !e.Later {
		m.plan(e.Now)
		return
	}
	m.unplanned = true
	if !m.planAsked {
		m.planAsked = true
		m.emit(WantPlan{})
	}
}

func (m *Machine) cancel(e Cancel) {
	if r, ok := m.running[e.ID]; ok && r.q != nil {
		m.emit(StopJob{ID: e.ID, Reason: e.Reason})
		return
	}
	for i, q := range m.queue {
		if q.job.ID == e.ID {
			m.queue = slices.Delete(m.queue, i, i+1)
			m.emit(Done{ID: e.ID, Results: &report.Results{Job: report.Job{
				Name: q.job.Name, Status: report.StatusCanceled, Class: report.JobError,
				Error: e.Reason + " (while queued)", Attempts: q.attempts,
			}}})
			m.plan(e.Now)
			return
		}
	}
}

func (m *Machine) reserve(e Reserve) {
	i, ok := m.index[e.Board]
	switch {
	case !ok:
		m.emit(Refused{Err: fmt.Errorf("reserve %s: no such board", e.Board)})
		return
	case e.Owner == "":
		m.emit(Refused{Err: fmt.Errorf("reserve %s: no owner", e.Board)})
		return
	case !e.Until.After(e.Now):
		m.emit(Refused{Err: fmt.Errorf("reserve %s: the reservation would end at once", e.Board)})
		return
	}
	b := &m.boards[i]
	if b.Reserved(e.Now) && b.ReservedBy != e.Owner {
		m.emit(Refused{Err: fmt.Errorf("reserve %s: reserved by %s until %s", e.Board, b.ReservedBy, b.ReservedUntil.UTC().Format(time.RFC3339))})
		return
	}
	b.ReservedBy, b.ReservedUntil = e.Owner, e.Until
	m.emit(ReservationChanged{Board: e.Board, Owner: e.Owner, Until: e.Until})
	m.plan(e.Now)
}

// attemptDone frees the boards, keeps their health, and retries the job on
// other boards or delivers its results.
func (m *Machine) attemptDone(e AttemptDone) {
	r, ok := m.running[e.ID]
	if !ok {
		return
	}
	delete(m.running, e.ID)
	res := e.Results
	for _, b := range e.StillOn {
		m.failures[b]++
		m.setHealth(b, scheduler.Bad, "could not be verified off after "+e.ID)
	}
	if r.check != "" && slices.Contains(r.lost, r.check) {
		// The check's worker was lost: the board is neither good nor bad.
		m.emit(CheckDone{ID: e.ID, Board: r.check, Results: e.Results})
		m.plan(e.Now)
		return
	}
	if r.check != "" {
		m.checkDone(e, r)
		m.dropHopeless()
		m.plan(e.Now)
		return
	}
	for _, b := range r.boards {
		m.jobsOn[b]++
	}
	var failed []string
	for _, n := range res.Nodes {
		switch {
		case slices.Contains(r.lost, n.Board):
			failed = append(failed, n.Board) // its worker's loss counts against no board
		case n.Class == report.Infrastructure:
			failed = append(failed, n.Board)
			m.failures[n.Board]++
			if m.failures[n.Board] >= m.cfg.BadAfter {
				m.setHealth(n.Board, scheduler.Bad, fmt.Sprintf("%d consecutive infrastructure errors", m.failures[n.Board]))
			}
		case n.Status == report.StatusComplete && !slices.Contains(e.StillOn, n.Board):
			m.failures[n.Board] = 0
		}
	}
	q := r.q
	if res.Job.Class == report.Infrastructure && len(q.attempts) < m.cfg.Retries {
		var boards []string
		for _, n := range res.Nodes {
			boards = append(boards, n.Board)
		}
		retry := &queued{job: q.job, attempts: append(slices.Clone(q.attempts), report.Attempt{Boards: boards, Error: res.Job.Error})}
		retry.job.Avoid = append(slices.Clone(q.job.Avoid), failed...)
		retry.job.Avoid = append(retry.job.Avoid, e.StillOn...)
		if m.never(retry.job) == nil {
			m.queue = append(m.queue, retry)
			m.dropHopeless()
			m.plan(e.Now)
			return
		}
	}
	res.Job.Attempts = q.attempts
	m.emit(Done{ID: e.ID, Results: res})
	m.dropHopeless()
	m.plan(e.Now)
}

// checkDone takes the board into service if its check passed, out if not.
func (m *Machine) checkDone(e AttemptDone, r *running) {
	passed := e.Results.ExitCode() == 0 && !slices.Contains(e.StillOn, r.check)
	m.emit(CheckDone{ID: e.ID, Board: r.check, Results: e.Results, Passed: passed})
	m.lastCheck[r.check], m.jobsOn[r.check] = e.Now, 0
	if passed {
		m.failures[r.check] = 0
		m.setHealth(r.check, scheduler.Good, "passed its health check")
		return
	}
	m.setHealth(r.check, scheduler.Bad, "failed its health check: "+e.Results.Job.Error)
}

// dropHopeless ends the queued jobs that can never run any more (boards
// taken out of service), instead of letting them wait forever.
func (m *Machine) dropHopeless() {
	keep := m.queue[:0]
	for _, q := range m.queue {
		err := m.never(q.job)
		if err == nil || m.cfg.Workers {
			keep = append(keep, q)
			continue
		}
		m.emit(Done{ID: q.job.ID, Results: &report.Results{Job: report.Job{
			Name: q.job.Name, Status: report.StatusIncomplete, Class: report.Infrastructure,
			Error: fmt.Sprintf("no boards left in service for it: %v", err), Attempts: q.attempts,
		}}})
	}
	clear(m.queue[len(keep):])
	m.queue = keep
}

func (m *Machine) never(j scheduler.Job) error {
	if m.feasible == nil {
		m.feasible = scheduler.NewFeasibility(m.boards)
	}
	return m.feasible.Never(j)
}

func (m *Machine) setHealth(board string, h scheduler.Health, reason string) {
	i, ok := m.index[board]
	if !ok || m.boards[i].Health == h {
		return
	}
	m.boards[i].Health = h
	m.feasible = nil
	m.emit(HealthChanged{Board: board, Health: h, Reason: reason})
}

// plan asks the scheduler what to do now.
func (m *Machine) plan(now time.Time) {
	m.unplanned = false
	m.dueChecks(now)
	st := scheduler.State{Now: now, Boards: m.planView(now), Checked: map[string]bool{}}
	for t := range m.cfg.Checks {
		st.Checked[t] = true
	}
	st.Queue = make([]scheduler.Job, 0, len(m.queue))
	for _, q := range m.queue {
		st.Queue = append(st.Queue, q.job)
	}
	if !m.explainAll {
		fresh := map[string]bool{}
		for _, q := range m.queue {
			if !q.explained {
				fresh[q.job.ID] = true
			}
		}
		st.Explain = func(id string) bool { return fresh[id] }
	}
	for id, r := range m.running {
		st.Running = append(st.Running, scheduler.Running{JobID: id, Boards: r.boards, Started: r.since, Timeout: r.timeout})
	}
	slices.SortFunc(st.Running, func(a, b scheduler.Running) int { return strings.Compare(a.JobID, b.JobID) })
	d := scheduler.Plan(st)
	for _, s := range d.Start {
		i := slices.IndexFunc(m.queue, func(q *queued) bool { return q.job.ID == s.JobID })
		if i < 0 {
			continue
		}
		q := m.queue[i]
		m.queue = slices.Delete(m.queue, i, i+1)
		r := &running{q: q, since: now, timeout: q.job.Timeout}
		for _, b := range s.Boards {
			r.boards = append(r.boards, b)
		}
		slices.Sort(r.boards)
		m.running[s.JobID] = r
		m.emit(StartJob{ID: s.JobID, Boards: s.Boards})
	}
	for _, b := range d.HealthChecks {
		m.checkSeq++
		id := fmt.Sprintf("health-check-%s-%d", b, m.checkSeq)
		dt := m.boards[m.index[b]].DeviceType
		m.running[id] = &running{check: b, boards: []string{b}, since: now, timeout: m.cfg.Checks[dt].Timeout}
		m.emit(StartCheck{ID: id, Board: b})
	}
	for _, q := range m.queue {
		if e, ok := d.Explain[q.job.ID]; ok {
			q.explained = true
			m.emit(Waiting{ID: q.job.ID, Explain: e})
		}
	}
	if len(m.queue) > 0 && !m.ticking {
		m.ticking = true
		m.emit(WantTick{After: tickEvery})
	}
}

// dueChecks marks for a new health check the good boards whose check is
// due again: after every N jobs, or when it is older than the interval.
func (m *Machine) dueChecks(now time.Time) {
	for _, b := range m.boards {
		hc, ok := m.cfg.Checks[b.DeviceType]
		if !ok || b.Health != scheduler.Good {
			continue
		}
		if hc.Every > 0 && m.jobsOn[b.Name] >= hc.Every {
			m.setHealth(b.Name, scheduler.Unknown, fmt.Sprintf("health check due after %d jobs", m.jobsOn[b.Name]))
		} else if hc.Interval > 0 && now.Sub(m.lastCheck[b.Name]) >= hc.Interval {
			m.setHealth(b.Name, scheduler.Unknown, "health check due: last one older than "+hc.Interval.String())
		}
	}
}
