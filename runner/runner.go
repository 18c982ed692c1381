// Package runner runs jobs on a lab from start to results: it checks that
// the lab can run them, hands them to the lab's scheduler (the lab actor),
// waits for the end, and writes results.json, junit.xml and the logs.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/hardware"
	"github.com/troupe-lab/troupe/hardware/tftp"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/scheduler"
	"github.com/troupe-lab/troupe/sim"
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
	work, err := os.MkdirTemp("", "troupe-")
	if err != nil {
		return nil, fmt.Errorf("board sandboxes: %w", err)
	}
	defer os.RemoveAll(work)

	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return opts.Logger.With("lib", "protoactor")
	}))
	defer system.Shutdown()
	hwOpts, stopTFTP, err := startTFTP(l, filepath.Join(work, "tftp"), opts.Logger)
	if err != nil {
		return nil, err
	}
	defer stopTFTP()
	open := opts.Open
	if open == nil {
		open = func(_ string, b lab.Board, dir string) (actors.Backend, error) {
			if b.Backend == lab.HardwareBackend {
				return hardware.Open(b, hwOpts)
			}
			return sim.New(sim.Options{Name: b.Name, Dir: dir, Logger: opts.Logger})
		}
	}
	labActor := actors.StartLab(system, actors.LabConfig{
		Lab: l,
		Open: func(node string, b lab.Board) (actors.Backend, error) {
			return open(node, b, filepath.Join(work, b.Name))
		},
		HealthChanged: opts.HealthChanged,
		Addresses:     loopbackAddresses(l),
		Clock:         opts.Clock,
		Logger:        opts.Logger,
		Retries:       l.Retries,
		BadAfter:      l.BadAfter,
		HealthOut:     filepath.Join(opts.Out, "health-checks"),
		Events:        opts.Events,
	})

	type result struct {
		i int
		r *report.Results
	}
	all := make(chan result, len(js)) // each job reports once: never blocks
	ids := make([]string, len(js))
	outs := make([]string, len(js))
	var limit time.Duration
	for i, j := range js {
		outs[i] = outDir(opts.Out, js, i)
		book, err := logbook.New(outs[i], nil)
		if err != nil {
			return nil, fmt.Errorf("logs of %s: %w", j.Name, err)
		}
		defer book.Close()
		sub := actors.Submission{Job: j, Book: book, Events: opts.Events,
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
	// Whatever still runs when the jobs are done (a health check) is
	// stopped with its boards powered off before the sandboxes go.
	defer func() {
		if err := labActor.Stop(); err != nil {
			opts.Logger.Error("stop lab", "err", err)
		}
	}()
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

// builtinLab has a sim board for every node of every job, so that all of
// them can run at once.
func builtinLab(js []*jobs.Job) *lab.Lab {
	l := &lab.Lab{File: "built-in", Retries: lab.DefaultRetries, BadAfter: lab.DefaultBadAfter}
	for _, j := range js {
		for _, b := range lab.ForJob(j).Boards {
			b.Name = fmt.Sprintf("sim-%d", len(l.Boards))
			l.Boards = append(l.Boards, b)
		}
	}
	return l
}

// loopbackAddresses gives every board an address of its own in
// 127.0.0.0/8: 127.N.x.y with y.x counting the board's place in the lab, and
// N picked at random per run so that runs side by side rarely collide.
func loopbackAddresses(l *lab.Lab) map[string]string {
	n := 2 + rand.IntN(250)
	addrs := map[string]string{}
	for i, b := range l.Boards {
		addrs[b.Name] = fmt.Sprintf("127.%d.%d.%d", n, i/250, i%250+1)
	}
	return addrs
}

// startTFTP starts the lab's TFTP server when a board deploys over TFTP,
// serving root.
func startTFTP(l *lab.Lab, root string, logger *slog.Logger) (hardware.Options, func(), error) {
	opts := hardware.Options{Logger: logger}
	needed := false
	for _, b := range l.Boards {
		needed = needed || (b.Hardware != nil && b.Hardware.Deploy.Method == "tftp")
	}
	if !needed {
		return opts, func() {}, nil
	}
	addr := l.TFTP.Address
	if addr == "" {
		addr = "0.0.0.0:69"
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return opts, nil, fmt.Errorf("tftp root: %w", err)
	}
	srv, err := tftp.Listen(addr, root, logger)
	if err != nil {
		return opts, nil, fmt.Errorf("tftp server of lab %s: %w", l.File, err)
	}
	opts.TFTPRoot, opts.ServerIP = root, l.TFTP.ServerIP
	if opts.ServerIP == "" {
		host, port, _ := net.SplitHostPort(srv.Addr())
		opts.ServerIP = host
		if port != "69" {
			opts.ServerIP = srv.Addr()
		}
	}
	return opts, func() { _ = srv.Close() }, nil
}

// IsInvalid tells whether err is about bad input (exit code 3).
func IsInvalid(err error) bool {
	var je jobs.Errors
	var u *lab.UnsatisfiableError
	return errors.As(err, &je) || errors.As(err, &u)
}
