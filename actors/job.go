// Package actors holds the actor tree that runs one job: a job actor owns a
// group actor, which supervises one node actor per node, each of which owns
// the board actor driving that node's board. See ARCHITECTURE.md.
package actors

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/boot"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
)

// Backend is one board as its board actor drives it: a power switch, a
// console byte stream and a way to put software on it.
type Backend interface {
	boot.Power
	Console() io.ReadWriteCloser
	Deploy(ctx context.Context, image string) error
	Close() error
}

// Booter is a backend with a boot method of its own (u-boot, custom
// prompts); others boot with boot.Boot and the default prompts.
type Booter interface {
	Boot(ctx context.Context, con boot.Console) error
}

// Event is a phase change of a node, for progress output.
type Event struct {
	Time   time.Time
	Job    string
	Node   string
	Board  string
	Phase  string // an action ("deploy", "boot", "test 'serve'") or a final status
	Detail string // the error of a failed node
}

// Config is everything a job run needs.
type Config struct {
	Job    *jobs.Job
	Boards map[string]lab.Board // node name → its board, reserved for this job
	// Addresses are the nodes' IP addresses (TROUPE_IP), by node name.
	Addresses map[string]string
	// Open makes the backend of a node's board; called by the node's actor.
	Open   func(node string, b lab.Board) (Backend, error)
	Book   *logbook.Book // where console output goes
	Clock  Clock         // nil: the wall clock
	Logger *slog.Logger  // nil: discard
	// Events receives phase changes; it is called from actor goroutines
	// and must not block. Nil: none.
	Events func(Event)
}

// Run is a job in progress.
type Run struct {
	system *actor.ActorSystem
	pid    *actor.PID
	done   chan *report.Results
}

// Start spawns the actor tree of cfg.Job in system and starts running it.
func Start(system *actor.ActorSystem, cfg Config) (*Run, error) {
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Events == nil {
		cfg.Events = func(Event) {}
	}
	for _, n := range cfg.Job.Nodes() {
		if _, ok := cfg.Boards[n.Name]; !ok {
			return nil, fmt.Errorf("start job %s: no board for node %s", cfg.Job.Name, n.Name)
		}
	}
	r := &Run{system: system, done: make(chan *report.Results, 1)}
	props := actor.PropsFromProducer(func() actor.Actor {
		return &jobActor{cfg: cfg, report: func(res *report.Results) { r.done <- res }}
	})
	pid, err := system.Root.SpawnNamed(props, "job-"+cfg.Job.Name+"-"+fmt.Sprint(time.Now().UnixNano()))
	if err != nil {
		return nil, fmt.Errorf("start job %s: %w", cfg.Job.Name, err)
	}
	r.pid = pid
	return r, nil
}

// Cancel ends the job as canceled; boards are powered off and released.
func (r *Run) Cancel(reason string) {
	r.system.Root.Send(r.pid, &cancelJob{reason: reason})
}

// Done delivers the results once every board of the job is off.
func (r *Run) Done() <-chan *report.Results { return r.done }

// jobActor owns one job: its timeout, its group and its results.
type jobActor struct {
	cfg     Config
	report  func(*report.Results) // called once, from the actor; must not block
	group   *actor.PID
	started time.Time
	stop    func() bool
	ending  bool
}

func (a *jobActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.started = a.cfg.Clock.Now()
		a.group = ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
			return newGroupActor(a.cfg)
		}))
		if t := a.cfg.Job.Timeout; t > 0 {
			self, root := ctx.Self(), ctx.ActorSystem().Root
			a.stop = a.cfg.Clock.AfterFunc(t, func() { root.Send(self, &jobTimeout{}) })
		}
	case *jobTimeout:
		a.end(ctx, report.StatusIncomplete, "", fmt.Sprintf("job timed out after %s", a.cfg.Job.Timeout))
	case *cancelJob:
		a.end(ctx, report.StatusCanceled, report.JobError, m.reason)
	case *groupDone:
		a.finish(ctx, m)
	case *actor.Stopping:
		if a.stop != nil {
			a.stop()
		}
	}
}

func (a *jobActor) end(ctx actor.Context, status, class, reason string) {
	if a.ending {
		return
	}
	a.ending = true
	ctx.Send(a.group, &endGroup{status: status, reason: reason, class: class})
}

func (a *jobActor) finish(ctx actor.Context, g *groupDone) {
	if a.stop != nil {
		a.stop()
	}
	r := &report.Results{
		Job: report.Job{
			Name:      a.cfg.Job.Name,
			Status:    g.status,
			Error:     g.reason,
			Class:     g.class,
			DurationS: a.cfg.Clock.Now().Sub(a.started).Seconds(),
		},
		Nodes: g.nodes,
		Tests: g.tests,
	}
	a.report(r)
	ctx.Stop(ctx.Self())
}
