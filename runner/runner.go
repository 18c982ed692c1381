// Package runner runs jobs on a lab from start to results: it checks that
// the lab can run them, hands them to the lab's scheduler (the lab actor),
// waits for the end, and writes results.json, junit.xml and the logs.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/scheduler"
)

// Options tune a run.
type Options struct {
	// Out is the results directory of a single job; with several jobs,
	// each job's results go to Out/<job name>.
	Out    string
	Logger *slog.Logger       // nil: discard
	Events func(actors.Event) // phase changes; nil: none
	// Waiting is told why a job waits, about once a second while it does.
	Waiting func(job string, e scheduler.Explanation)
	Clock   actors.Clock // nil: the wall clock
	// Open makes the backend of a node's board, given a sandbox directory
	// of its own. Nil: a simulated board.
	Open func(node string, b lab.Board, dir string) (actors.Backend, error)
	// HealthChanged is told every change of a board's health. Nil: none.
	HealthChanged func(board, health string)
	// Lines is told each console line of a job as it is logged, from a
	// goroutine of the job's own; a caller slower than the log misses
	// the rest of it. Nil: none.
	Lines func(job string, e logbook.Entry)
	// ReservationChanged is told every new or ended (owner "")
	// reservation of a board. Nil: none.
	ReservationChanged func(board, owner string, until time.Time)
}

// grace is how long past the job timeout Run waits for the actors to end
// the job before giving up on them.
const grace = time.Minute

// Run runs j on l (nil: the built-in sim lab) and writes its results to
// opts.Out. Canceling ctx cancels the job; its results are still written.
func Run(ctx context.Context, j *jobs.Job, l *lab.Lab, opts Options) (*report.Results, error) {
	rs, err := RunMany(ctx, []*jobs.Job{j}, l, opts)
	if len(rs) == 1 {
		return rs[0], err
	}
	return nil, err
}

// RunMany runs every job through the scheduler of one lab (nil: a built-in
// sim lab with the boards all of them need at once). Results come back in
// the order of js; a nil entry is a job whose results could not be had.
func RunMany(ctx context.Context, js []*jobs.Job, l *lab.Lab, opts Options) ([]*report.Results, error) {
	if l == nil {
		l = builtinLab(js)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var bad []error
	for _, j := range js {
		if err := l.Check(j); err != nil {
			bad = append(bad, err)
		}
	}
	if err := errors.Join(bad...); err != nil {
		return nil, err
	}
	// The logs are opened before the lab starts: a results directory that
	// cannot be written ends the run before any board is powered on.
	outs := make([]string, len(js))
	books := make([]*logbook.Book, 0, len(js))
	closeBooks := func() {
		for _, b := range books {
			b.Close()
		}
	}
	// The forwarding of lines to opts.Lines ends when the books close.
	var lines sync.WaitGroup
	defer lines.Wait()
	for i, j := range js {
		outs[i] = outDir(opts.Out, js, i)
		book, err := logbook.New(outs[i], nil)
		if err != nil {
			closeBooks()
			return nil, fmt.Errorf("logs of %s: %w", j.Name, err)
		}
		book.SetLimit(l.LogLimit)
		book.Mask(slices.Collect(maps.Values(j.Secrets)))
		books = append(books, book)
		if opts.Lines != nil {
			_, ch, _ := book.Subscribe(1, 4096)
			name := j.Name
			lines.Go(func() {
				for e := range ch {
					opts.Lines(name, e)
				}
			})
		}
	}
	labActor, err := StartService(l, ServiceOptions{Options: opts, Out: filepath.Join(opts.Out, "health-checks")})
	if err != nil {
		closeBooks()
		return nil, err
	}
	// However the run ends, whatever still runs (a job past the deadline, a
	// health check) is stopped with its boards powered off before the
	// sandboxes go, and only then are the logs closed.
	defer func() {
		if err := labActor.Close(); err != nil {
			opts.Logger.Error("stop lab", "err", err)
		}
		closeBooks()
	}()

	type result struct {
		i int
		r *report.Results
	}
	all := make(chan result, len(js)) // each job reports once: never blocks
	ids := make([]string, len(js))
	var limit time.Duration
	for i, j := range js {
		sub := actors.Submission{Job: j, Book: books[i], Events: opts.Events,
			Done: func(r *report.Results) { all <- result{i, r} }}
		if opts.Waiting != nil {
			name := j.Name
			sub.Waiting = func(e scheduler.Explanation) { opts.Waiting(name, e) }
		}
		ids[i] = labActor.Submit(sub)
		limit += j.Timeout * time.Duration(1+l.Retries)
	}

	for _, hc := range l.HealthChecks {
		limit += hc.Job.Timeout * time.Duration(len(l.Boards))
	}
	// At worst the jobs (and health checks) run one after another, each up
	// to its timeout per attempt; past that (and a grace) the actors have
	// failed us.
	deadline := time.NewTimer(limit + grace)
	defer deadline.Stop()
	rs := make([]*report.Results, len(js))
	canceled := ctx.Done()
	var errs []error
	for left := len(js); left > 0; {
		select {
		case x := <-all:
			rs[x.i] = x.r
			left--
			if err := report.Write(outs[x.i], x.r); err != nil {
				errs = append(errs, fmt.Errorf("write results of %s: %w", js[x.i].Name, err))
			}
		case <-canceled:
			for _, id := range ids {
				labActor.Cancel(id, fmt.Sprintf("canceled: %v", context.Cause(ctx)))
			}
			canceled = nil
		case <-deadline.C:
			return rs, errors.Join(append(errs, errors.New("the actors did not end the jobs within their timeouts"))...)
		}
	}
	return rs, errors.Join(errs...)
}

// outDir is where job i's results go: out itself for a single job, else
// out/<job name> (with -2, -3 ... for jobs of the same name).
func outDir(out string, js []*jobs.Job, i int) string {
	if len(js) == 1 {
		return out
	}
	n := 1
	for _, j := range js[:i] {
		if j.Name == js[i].Name {
			n++
		}
	}
	name := js[i].Name
	if n > 1 {
		name = fmt.Sprintf("%s-%d", name, n)
	}
	return filepath.Join(out, name)
}

// IsInvalid tells whether err is about bad input (exit code 3).
func IsInvalid(err error) bool {
	var je jobs.Errors
	var u *lab.UnsatisfiableError
	return errors.As(err, &je) || errors.As(err, &u)
}
