// Package actors holds the actor tree that runs one job: a job actor owns a
// group actor, which supervises one node actor per node, each of which owns
// the board actor driving that node's board. See ARCHITECTURE.md.
package actors

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
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

// SpecBooter is a Booter with boot command templates and login settings
// of its own (u-boot boards): a boot action's spec picks one of its named
// command sets (LAVA's nfs, ramdisk ...), fills the placeholders its lab
// entry leaves open from the job's and role's context, and replaces its
// login settings where the action's login (LAVA's auto_login) sets them.
type SpecBooter interface {
	BootWith(ctx context.Context, con boot.Console, spec boot.Spec) error
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
	Open func(node string, b lab.Board) (Backend, error)
	Book *logbook.Book // where console output goes
	// Remote lists the nodes whose boards are on workers (remote.go).
	Remote map[string]RemoteBoard
	// LogLimit is the lab's log_limit (0: logbook.DefaultLimit), told to
	// the workers so that they send no more than the book keeps.
	LogLimit int64
	// BootLimit and DeployLimit are the lab's own limits (lab.Lab); zero:
	// jobs.DefaultBootTimeout and jobs.DefaultDeployTimeout.
	BootLimit, DeployLimit time.Duration
	Clock                  Clock        // nil: the wall clock
	Logger                 *slog.Logger // nil: discard
	// Events receives phase changes; it is called from actor goroutines
	// and must not block. Nil: none.
	Events func(Event)
}

// jobActor owns one job: its timeout, its group and its results.
type jobActor struct {
	cfg Config
	// report is called once, from the actor, with the results and the
	// boards that could not be verified off; it must not block.
	report  func(res *report.Results, stillOn []string)
	group   *actor.PID
	started time.Time
	stop    func() bool
	ending  bool
	crashed string // why the group actor panicked
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
		// The job's own timeout: never the boards' fault (the group
		// classes each node by the action it was in).
		a.end(ctx, report.StatusIncomplete, "", fmt.Sprintf("job timed out after %s", a.cfg.Job.Timeout))
	case *cancelJob:
		a.end(ctx, report.StatusCanceled, report.JobError, m.reason)
	case *groupDone:
		a.finish(ctx, m)
	case *loseNodes:
		ctx.Send(a.group, m)
	case *actor.Terminated:
		// System messages overtake user messages: look at the group's
		// end after what it sent before (its groupDone).
		ctx.Send(ctx.Self(), &groupGone{})
	case *groupGone:
		if a.crashed != "" {
			a.finish(ctx, &groupDone{status: report.StatusIncomplete, class: report.JobError,
				reason: "group actor crashed: " + a.crashed})
		}
	case *actor.Stopping:
		if a.stop != nil {
			a.stop()
		}
	}
}

// HandleFailure supervises the group actor stop-and-report: a group that
// panics is stopped (its nodes' boards powered off) and the job ends
// incomplete with the panic as its error, never re-run.
func (a *jobActor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason, _ interface{}) {
	if a.crashed == "" {
		a.crashed = fmt.Sprint(reason)
	}
	sup.StopChildren(child)
}

// groupGone is the job's own note that its group actor has terminated.
type groupGone struct{}

func (a *jobActor) end(ctx actor.Context, status, class, reason string) {
	if a.ending {
		return
	}
	a.ending = true
	ctx.Send(a.group, &endGroup{status: status, reason: reason, class: class})
}

func (a *jobActor) finish(ctx actor.Context, g *groupDone) {
	if a.report == nil {
		return
	}
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
	if len(a.cfg.Job.Secrets) > 0 {
		r.Mask(logbook.Masker(slices.Collect(maps.Values(a.cfg.Job.Secrets))).Replace)
	}
	a.report(r, g.stillOn)
	a.report = nil
	ctx.Stop(ctx.Self())
}
