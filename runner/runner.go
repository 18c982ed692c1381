// Package runner runs one job on a lab from start to results: it reserves
// the job's boards, builds the actor tree, waits for the end, and writes
// results.json, junit.xml and the logs.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/sim"
)

// Options tune a run.
type Options struct {
	Out    string             // results directory (created)
	Logger *slog.Logger       // nil: discard
	Events func(actors.Event) // phase changes; nil: none
	Clock  actors.Clock       // nil: the wall clock
}

// grace is how long past the job timeout Run waits for the actors to end
// the job before giving up on them.
const grace = time.Minute

// Run runs j on l (nil: the built-in sim lab) and writes its results to
// opts.Out. Canceling ctx cancels the job; its results are still written.
func Run(ctx context.Context, j *jobs.Job, l *lab.Lab, opts Options) (*report.Results, error) {
	if l == nil {
		l = lab.ForJob(j)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := l.Check(j); err != nil {
		return nil, err
	}
	boards, err := l.Assign(j, nil)
	if err != nil {
		return nil, fmt.Errorf("assign boards: %w", err)
	}
	work, err := os.MkdirTemp("", "troupe-"+j.Name+"-")
	if err != nil {
		return nil, fmt.Errorf("board sandboxes: %w", err)
	}
	defer os.RemoveAll(work)
	book, err := logbook.New(opts.Out, nil)
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	defer book.Close()

	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return opts.Logger.With("lib", "protoactor")
	}))
	defer system.Shutdown()
	run, err := actors.Start(system, actors.Config{
		Job:       j,
		Boards:    boards,
		Addresses: loopbackAddresses(l, boards),
		Open: func(b lab.Board) (actors.Backend, error) {
			return sim.New(sim.Options{Name: b.Name, Dir: filepath.Join(work, b.Name), Logger: opts.Logger})
		},
		Book:   book,
		Clock:  opts.Clock,
		Logger: opts.Logger,
		Events: opts.Events,
	})
	if err != nil {
		return nil, err
	}

	limit := time.NewTimer(j.Timeout + grace)
	defer limit.Stop()
	var r *report.Results
	canceled := ctx.Done()
	for r == nil {
		select {
		case r = <-run.Done():
		case <-canceled:
			run.Cancel(fmt.Sprintf("canceled: %v", context.Cause(ctx)))
			canceled = nil
		case <-limit.C:
			return nil, fmt.Errorf("job %s: actors did not end the job within %s of its timeout", j.Name, grace)
		}
	}
	if err := report.Write(opts.Out, r); err != nil {
		return r, fmt.Errorf("write results: %w", err)
	}
	return r, nil
}

// loopbackAddresses gives every sim node an address of its own in
// 127.0.0.0/8: 127.N.x.y with y.x counting the board's place in the lab, and
// N picked at random per run so that runs side by side rarely collide.
func loopbackAddresses(l *lab.Lab, boards map[string]lab.Board) map[string]string {
	index := map[string]int{}
	for i, b := range l.Boards {
		index[b.Name] = i
	}
	n := 2 + rand.IntN(250)
	addrs := map[string]string{}
	for node, b := range boards {
		i := index[b.Name]
		addrs[node] = fmt.Sprintf("127.%d.%d.%d", n, i/250, i%250+1)
	}
	return addrs
}

// IsInvalid tells whether err is about bad input (exit code 3).
func IsInvalid(err error) bool {
	var je jobs.Errors
	var u *lab.UnsatisfiableError
	return errors.As(err, &je) || errors.As(err, &u)
}
