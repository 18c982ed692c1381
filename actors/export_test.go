package actors

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/report"
)

// Start runs one job outside a lab, for the tests of the actor tree.
var Start = start

// Run is a job in progress.
type Run struct {
	system *actor.ActorSystem
	pid    *actor.PID
	done   chan *report.Results
}

// start spawns the actor tree of cfg.Job in system and starts running it.
func start(system *actor.ActorSystem, cfg Config) (*Run, error) {
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
		return &jobActor{cfg: cfg, report: func(res *report.Results, _ []string) { r.done <- res }}
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
